// The doctor's appointments: today, upcoming and earlier, with patient names, live from the
// doctor's appointment feed (new bookings highlighted); cancelled and moved ones leave today
// and upcoming for a collapsed "Changes" list (a move reads "moved to <its new time>"); cancel
// before the start, complete or no-show after it.

import { get, put } from '../../api.js';
import { personName, statusLabel } from '../../labels.js';
import { addToCalendar } from '../feed.js';
import { announce, clearFieldErrors, field, formatDay, formatLongDay, formatTime, formatWhen, h, keepFocus, localDate, messageBox, plain, showFieldErrors, syncLiveActions } from '../../ui.js';

function fromApi(item) {
  return {
    id: item.id,
    start: new Date(item.scheduled_datetime),
    end: new Date(item.end_datetime),
    status: item.status,
    patientName: personName(item.patient),
    outsideHours: Boolean(item.outside_hours),
    lateCancel: item.late_cancel,
    reason: item.cancel_reason,
    rescheduledFromId: item.rescheduled_from_id,
    isNew: false,
    change: null,
  };
}

function when(item, long = false) {
  const end = item.end ? `–${formatTime(item.end)}` : '';
  return long ? `${formatDay(item.start)}, ${formatTime(item.start)}${end}` : `${formatTime(item.start)}${end}`;
}

/** The appointments card; `view` is the whole page (focus and paused actions are kept there). */
export function appointmentList(view, { live, me, life, slotMinutes }) {
  const items = new Map(); // appointment id -> item
  let refreshTimer = null;
  life.defer(() => clearTimeout(refreshTimer));
  const message = messageBox('dashboard-message');
  const notice = h('div', { id: 'notice', class: 'notice', role: 'status', hidden: true });
  const today = h('ul', { class: 'appointments', id: 'today', 'aria-labelledby': 'today-title' });
  const later = h('ul', { class: 'appointments', id: 'later', 'aria-labelledby': 'later-title' });
  const earlier = h('ul', { class: 'appointments', id: 'earlier', 'aria-labelledby': 'earlier-title' });
  const changes = h('ul', { class: 'appointments', id: 'changes', 'aria-labelledby': 'changes-title' });
  const changesCount = h('span', { class: 'count' });
  const card = h(
    'section',
    { class: 'card', 'aria-labelledby': 'appointments-title' },
    h('h2', { id: 'appointments-title' }, 'Appointments'),
    h('h3', { id: 'today-title' }, `Today, ${formatLongDay(new Date())}`),
    today,
    h('h3', { id: 'later-title' }, 'Upcoming'),
    later,
    h('details', { class: 'earlier changes' }, h('summary', {}, h('span', { id: 'changes-title' }, 'Changes: cancelled and moved'), ' ', changesCount), changes),
    h('details', { class: 'earlier' }, h('summary', {}, h('span', { id: 'earlier-title' }, 'Earlier appointments')), earlier),
  );

  function action(item, feedback, label, className, path, done) {
    return h(
      'button',
      {
        type: 'button',
        class: className,
        dataset: { needsLive: '', key: `${path}-${item.id}` },
        'aria-label': `${label}: ${item.patientName}, ${when(item, true)}`,
        onclick: async (event) => {
          const button = event.currentTarget;
          button.disabled = true;
          feedback.clear();
          try {
            const updated = await put(`/appointments/${item.id}/${path}`, path === 'cancel' ? {} : undefined);
            Object.assign(item, fromApi(updated), { isNew: false, change: null });
            announce(`${item.patientName}, ${when(item, true)}: ${done}.`);
            render();
          } catch (error) {
            feedback.error(plain(error));
            button.disabled = false;
          }
        },
      },
      label,
    );
  }

  // Cancelling is two steps: the reason the patient is told (required), then the confirmation.
  function cancelButton(item, feedback, actions) {
    const label = `Cancel: ${item.patientName}, ${when(item, true)}`;
    const open = h('button', { type: 'button', class: 'danger cancel', dataset: { needsLive: '' }, 'aria-label': label }, 'Cancel');
    open.addEventListener('click', () => {
      const reason = h('input', { type: 'text', name: 'reason', maxlength: '500', autocomplete: 'off', required: true });
      const form = h('form', { class: 'form inline-form cancel-form', novalidate: true },
        field('Reason the patient is told', reason),
        h('div', { class: 'actions' },
          h('button', { type: 'submit', class: 'danger', dataset: { needsLive: '' } }, 'Cancel the appointment'),
          h('button', { type: 'button', class: 'secondary', onclick: () => render() }, 'Keep it')));
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        clearFieldErrors(form);
        feedback.clear();
        if (!reason.value.trim()) {
          showFieldErrors(form, [{ field: 'reason', message: 'Tell the patient why' }]);
          return;
        }
        try {
          const updated = await put(`/appointments/${item.id}/cancel`, { reason: reason.value.trim() });
          Object.assign(item, fromApi(updated), { isNew: false, change: null });
          announce(`${item.patientName}, ${when(item, true)}: cancelled.`);
          render();
        } catch (error) {
          if (error.fields && error.fields.length) showFieldErrors(form, error.fields);
          else feedback.error(plain(error));
        }
      });
      actions.replaceChildren(form);
      reason.focus();
    });
    return open;
  }

  // The appointment a reschedule made of this one (it names this one as rescheduled from).
  function successor(item) {
    for (const other of items.values()) if (other.rescheduledFromId === item.id) return other;
    return null;
  }

  function row(item, showDay) {
    const next = item.status === 'cancelled' ? successor(item) : null;
    const moved = Boolean(next) || item.change === 'moved';
    const feedback = messageBox(`doc-appt-${item.id}-message`);
    const classes = ['appt', `status-${item.status}`];
    if (item.isNew) classes.push('is-new');
    if (item.change === 'cancelled' || item.change === 'moved') classes.push('is-cancelled');
    if (moved) classes.push('is-moved');
    const li = h(
      'li',
      { class: classes.join(' '), dataset: { appointmentId: String(item.id), status: item.status } },
      h('p', { class: 'appt-when' }, when(item, showDay)),
      h('p', { class: 'appt-who' }, h('span', { class: 'appt-patient' }, item.patientName)),
      h(
        'p',
        { class: 'appt-status' },
        h('span', { class: `badge status-${item.status}` }, moved ? 'Moved' : statusLabel(item.status)),
        moved ? h('span', { class: 'appt-moved' }, next ? `moved to ${formatWhen(next.start)}` : 'moved to another time') : null,
        item.isNew ? h('span', { class: 'badge new' }, item.change === 'rescheduled' ? 'New: rescheduled' : 'New') : null,
        item.change === 'cancelled' ? h('span', { class: 'badge warn' }, 'Just cancelled') : null,
        item.lateCancel ? h('span', { class: 'badge' }, 'Late cancellation') : null,
        item.outsideHours ? h('span', { class: 'badge warn' }, 'Outside your current hours') : null,
      ),
      item.status === 'cancelled' && !moved && item.reason ? h('p', { class: 'muted appt-reason' }, `Reason: ${item.reason}`) : null,
    );
    if (item.status === 'scheduled') {
      const actions = h('div', { class: 'actions' });
      if (item.start <= new Date()) {
        actions.append(
          action(item, feedback, 'Complete', 'complete', 'complete', 'completed'),
          action(item, feedback, 'No-show', 'secondary no-show', 'no-show', 'marked as a no-show'),
        );
      } else {
        actions.append(cancelButton(item, feedback, actions), addToCalendar(item.id, when(item, true)));
      }
      li.append(actions, feedback.element);
    }
    return li;
  }

  function render() {
    keepFocus(view, draw);
  }

  function draw() {
    const todayKey = localDate(new Date());
    const all = [...items.values()].sort((a, b) => a.start - b.start || a.id - b.id);
    const gone = (i) => i.status === 'cancelled'; // cancelled, or moved away by a reschedule
    const forToday = all.filter((i) => localDate(i.start) === todayKey && !gone(i));
    const upcoming = all.filter((i) => localDate(i.start) > todayKey && !gone(i));
    const changed = all.filter((i) => localDate(i.start) >= todayKey && gone(i));
    const before = all.filter((i) => localDate(i.start) < todayKey).reverse();
    const fill = (list, entries, showDay, empty) =>
      list.replaceChildren(...(entries.length ? entries.map((i) => row(i, showDay)) : [h('li', { class: 'empty' }, empty)]));
    fill(today, forToday, false, 'No appointments today.');
    fill(later, upcoming, true, 'No upcoming appointments.');
    fill(changes, changed, true, 'No cancelled or moved appointments.');
    changesCount.textContent = `(${changed.length})`;
    fill(earlier, before, true, 'None.');
    syncLiveActions(view, live.isLive);
  }

  async function load() {
    try {
      const list = await get(`/appointments/doctor/${me.id}`);
      if (life.disposed) return;
      const flags = new Map([...items.values()].map((i) => [i.id, { isNew: i.isNew, change: i.change }]));
      items.clear();
      for (const entry of list) {
        const item = fromApi(entry);
        Object.assign(item, flags.get(item.id) || {});
        items.set(item.id, item);
      }
      render();
    } catch (error) {
      if (!life.disposed) message.error(`The appointments could not be loaded. ${plain(error)}`);
    }
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(load, 400);
  }

  function say(text) {
    notice.hidden = false;
    notice.textContent = text;
    announce(text);
  }

  function onAppointment(event) {
    if (event.doctor_id !== me.id) return;
    const start = new Date(event.start);
    let item = items.get(event.appointment_id);
    if (!item) {
      item = {
        id: event.appointment_id,
        start,
        end: new Date(start.getTime() + slotMinutes() * 60000),
        status: event.status,
        patientName: event.patient_name,
        outsideHours: false,
        lateCancel: false,
        reason: null,
        rescheduledFromId: event.previous_id || null,
        isNew: false,
        change: null,
      };
      items.set(item.id, item);
    }
    item.status = event.status;
    const whenText = `${formatWhen(start)}`;
    if (event.event === 'booked') {
      item.isNew = true;
      say(`New booking: ${event.patient_name} on ${whenText}.`);
    } else if (event.event === 'rescheduled') {
      item.isNew = true;
      item.change = 'rescheduled';
      const old = event.previous_id ? items.get(event.previous_id) : null;
      if (old) {
        old.status = 'cancelled';
        old.change = 'moved';
        old.isNew = false;
      }
      say(`Rescheduled: ${event.patient_name} moved ${old ? `from ${formatWhen(old.start)} ` : ''}to ${whenText}.`);
    } else if (event.event === 'cancelled') {
      item.change = 'cancelled';
      item.isNew = false;
      item.lateCancel = Boolean(event.late);
      say(`Cancelled: ${event.patient_name} on ${whenText}${event.late ? ' (late cancellation)' : ''}.`);
    } else if (event.event === 'completed' || event.event === 'no_show') {
      item.isNew = false;
    }
    render();
    refreshSoon();
  }

  life.listen(live, 'appointment', onAppointment);
  life.listen(live, 'ready', ({ resumed }) => {
    if (resumed) load();
  });
  today.append(h('li', { class: 'empty' }, 'Loading…'));
  load();
  return { card, notice, message, refreshSoon };
}
