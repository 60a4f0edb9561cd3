// The patient's appointments: upcoming and past; cancel (the hub's cutoff rule decides) and
// reschedule (pick a new time in the booking calendar). Live from the patient's feed.

import { get, put } from '../api.js';
import { doctorName, statusLabel } from '../labels.js';
import { announce, formatLongDay, formatTime, h, localDate, messageBox, plain, syncLiveActions, weekStart, present, keepFocus } from '../ui.js';
import { defineView, flashNote } from '../view.js';
import { addToCalendar, feedCard } from './feed.js';
import { preferencesCard } from './notify.js';
import { verifyNote } from './email.js';
import { waitlistSection } from './waitlist.js';

export const mount = defineView((view, ctx, life) => {
  const { live, session: me } = ctx;
  let items = [];
  const message = messageBox('mine-message');
  const upcoming = h('ul', { class: 'appointments', id: 'upcoming', 'aria-labelledby': 'upcoming-title' });
  const past = h('ul', { class: 'appointments', id: 'past', 'aria-labelledby': 'past-title' });
  view.append(...present(
    h('h1', { tabindex: '-1' }, 'My appointments'),
    flashNote(ctx),
    verifyNote(ctx, life),
    message.element,
    waitlistSection(ctx, life, { onBooked: () => load() }),
    h('section', { class: 'card' }, h('h2', { id: 'upcoming-title' }, 'Upcoming'), upcoming),
    h('section', { class: 'card' }, h('h2', { id: 'past-title' }, 'Past and cancelled'), past),
    feedCard({ owner: 'patients', id: me.id }),
    preferencesCard(`/patients/${me.id}`, life),
    h('p', {}, h('a', { href: '#/book' }, 'Book another appointment')),
  ));

  function when(item) {
    const start = new Date(item.scheduled_datetime);
    return `${formatLongDay(start)}, ${formatTime(start)}–${formatTime(new Date(item.end_datetime))}`;
  }

  function row(item) {
    const isUpcoming = item.status === 'scheduled' && new Date(item.end_datetime) > new Date();
    const feedback = messageBox(`appt-${item.id}-message`);
    const doctor = doctorName(item.doctor);
    const li = h(
      'li',
      { class: `appt status-${item.status}`, dataset: { appointmentId: String(item.id), status: item.status } },
      h('p', { class: 'appt-when' }, when(item)),
      h('p', { class: 'appt-who' }, doctor),
      h(
        'p',
        { class: 'appt-status' },
        h('span', { class: `badge status-${item.status}` }, statusLabel(item.status)),
        item.late_cancel ? h('span', { class: 'badge' }, 'Late cancellation') : null,
        item.cancel_reason ? h('span', { class: 'muted' }, ` Reason: ${item.cancel_reason}`) : null,
      ),
    );
    if (isUpcoming) {
      const actions = h('div', { class: 'actions' });
      const reschedule = h(
        'a',
        {
          class: 'button secondary',
          dataset: { key: `reschedule-${item.id}` },
          href: `#/book?doctor=${item.doctor_id}&reschedule=${item.id}&week=${localDate(weekStart(new Date(item.scheduled_datetime)))}`,
          'aria-label': `Reschedule the appointment on ${when(item)}`,
        },
        'Reschedule',
      );
      const cancel = h(
        'button',
        {
          type: 'button',
          class: 'danger cancel',
          dataset: { needsLive: '', key: `cancel-${item.id}` },
          'aria-label': `Cancel the appointment on ${when(item)}`,
          onclick: () => ask(),
        },
        'Cancel',
      );
      actions.append(reschedule, cancel, addToCalendar(item.id, when(item)));
      li.append(actions, feedback.element);

      function ask() {
        feedback.clear();
        const reason = h('input', { type: 'text', maxlength: '500', id: `reason-${item.id}` });
        const yes = h(
          'button',
          { type: 'button', class: 'danger confirm-cancel', dataset: { needsLive: '' }, onclick: () => doCancel(reason.value) },
          'Yes, cancel it',
        );
        const no = h(
          'button',
          {
            type: 'button',
            class: 'secondary',
            onclick: () => {
              confirmBox.replaceWith(actions);
              cancel.focus();
            },
          },
          'Keep it',
        );
        const confirmBox = h(
          'div',
          { class: 'confirm-box', role: 'group', 'aria-label': 'Confirm cancellation' },
          h('p', {}, `Cancel your appointment with ${doctor} on ${when(item)}?`),
          h('div', { class: 'field' }, h('label', { for: reason.id }, 'Reason (optional)'), reason),
          h('div', { class: 'actions' }, yes, no),
        );
        actions.replaceWith(confirmBox);
        syncLiveActions(confirmBox, live.isLive);
        yes.focus();

        async function doCancel(text) {
          yes.disabled = true;
          yes.textContent = 'Cancelling…';
          try {
            await put(`/appointments/${item.id}/cancel`, text.trim() ? { reason: text.trim() } : {});
            announce(`Your appointment on ${when(item)} is cancelled.`);
            message.success(`Cancelled your appointment on ${when(item)}.`);
            await load();
            const heading = view.querySelector('#upcoming-title');
            if (heading) heading.setAttribute('tabindex', '-1');
            if (heading) heading.focus();
          } catch (error) {
            confirmBox.replaceWith(actions);
            feedback.error(plain(error));
            cancel.focus();
          }
        }
      }
    }
    return li;
  }

  function render() {
    keepFocus(view, draw);
  }

  function draw() {
    const now = new Date();
    const soon = items
      .filter((i) => i.status === 'scheduled' && new Date(i.end_datetime) > now)
      .sort((a, b) => new Date(a.scheduled_datetime) - new Date(b.scheduled_datetime));
    const rest = items
      .filter((i) => !soon.includes(i))
      .sort((a, b) => new Date(b.scheduled_datetime) - new Date(a.scheduled_datetime));
    upcoming.replaceChildren(...(soon.length ? soon.map(row) : [h('li', { class: 'empty' }, 'No upcoming appointments.')]));
    past.replaceChildren(...(rest.length ? rest.map(row) : [h('li', { class: 'empty' }, 'Nothing here yet.')]));
    syncLiveActions(view, live.isLive);
  }

  async function load() {
    try {
      const list = await get(`/appointments/patient/${me.id}`);
      if (life.disposed) return;
      items = list;
      render();
    } catch (error) {
      if (!life.disposed) message.error(`Your appointments could not be loaded. ${plain(error)}`);
    }
  }

  life.listen(live, 'appointment', (event) => {
    if (event.patient_id === me.id) load();
  });
  life.listen(live, 'ready', ({ resumed }) => {
    if (resumed) load();
  });
  upcoming.append(h('li', { class: 'empty' }, 'Loading…'));
  load();
});
