// The doctor's dashboard: today's and upcoming appointments with patient names, live from the
// doctor's appointment feed (new bookings highlighted, cancellations marked), complete and
// no-show; and the working-hours editor (weekly hours with breaks, slot length, days off).

import { get, put } from '../api.js';
import {
  announce,
  clearFieldErrors,
  field,
  formatDay,
  formatLongDay,
  formatTime,
  formatWhen,
  h,
  localDate,
  messageBox,
  plain,
  showFieldErrors,
  syncLiveActions,
  present,
  keepFocus,
} from '../ui.js';

const STATUS = {
  scheduled: 'Scheduled',
  completed: 'Completed',
  cancelled: 'Cancelled',
  no_show: 'No-show',
};
const DAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];
const DAY_NAMES = {
  monday: 'Monday',
  tuesday: 'Tuesday',
  wednesday: 'Wednesday',
  thursday: 'Thursday',
  friday: 'Friday',
  saturday: 'Saturday',
  sunday: 'Sunday',
};

function fromApi(item) {
  return {
    id: item.id,
    start: new Date(item.scheduled_datetime),
    end: new Date(item.end_datetime),
    status: item.status,
    patientName: `${item.patient.first_name} ${item.patient.last_name}`,
    outsideHours: Boolean(item.outside_hours),
    lateCancel: item.late_cancel,
    reason: item.cancel_reason,
    isNew: false,
    change: null,
  };
}

export function mount(view, ctx) {
  const { live, session: me } = ctx;
  let disposed = false;
  const subscriptions = [];
  const items = new Map(); // appointment id -> item
  let refreshTimer = null;
  let slotMinutes = 60;

  const message = messageBox('dashboard-message');
  const notice = h('div', { id: 'notice', class: 'notice', role: 'status', hidden: true });
  const today = h('ul', { class: 'appointments', id: 'today', 'aria-labelledby': 'today-title' });
  const later = h('ul', { class: 'appointments', id: 'later', 'aria-labelledby': 'later-title' });
  const earlier = h('ul', { class: 'appointments', id: 'earlier', 'aria-labelledby': 'earlier-title' });
  const hoursCard = h('section', { class: 'card', id: 'hours', 'aria-labelledby': 'hours-title' });
  view.append(...present(
    h('h1', { tabindex: '-1' }, `${me.name}: dashboard`),
    ctx.flash ? h('p', { class: 'message info', role: 'status' }, ctx.flash) : null,
    h('p', { class: 'muted' }, 'Times are shown in your time zone. ', h('a', { href: '#hours', onclick: skipToHours }, 'Edit working hours')),
    notice,
    message.element,
    h(
      'div',
      { class: 'dashboard-layout' },
      h(
        'section',
        { class: 'card', 'aria-labelledby': 'appointments-title' },
        h('h2', { id: 'appointments-title' }, 'Appointments'),
        h('h3', { id: 'today-title' }, `Today, ${formatLongDay(new Date())}`),
        today,
        h('h3', { id: 'later-title' }, 'Upcoming'),
        later,
        h('details', { class: 'earlier' }, h('summary', {}, h('span', { id: 'earlier-title' }, 'Earlier appointments')), earlier),
      ),
      hoursCard,
    ),
  ));

  function skipToHours(event) {
    event.preventDefault();
    const heading = document.getElementById('hours-title');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus();
    }
  }

  // ---- appointments ------------------------------------------------------------------------
  function when(item, long = false) {
    const end = item.end ? `–${formatTime(item.end)}` : '';
    return long ? `${formatDay(item.start)}, ${formatTime(item.start)}${end}` : `${formatTime(item.start)}${end}`;
  }

  function row(item, showDay) {
    const feedback = messageBox(`doc-appt-${item.id}-message`);
    const classes = ['appt', `status-${item.status}`];
    if (item.isNew) classes.push('is-new');
    if (item.change === 'cancelled' || item.change === 'moved') classes.push('is-cancelled');
    const li = h(
      'li',
      { class: classes.join(' '), dataset: { appointmentId: String(item.id), status: item.status } },
      h('p', { class: 'appt-when' }, when(item, showDay)),
      h('p', { class: 'appt-who' }, h('span', { class: 'appt-patient' }, item.patientName)),
      h(
        'p',
        { class: 'appt-status' },
        h('span', { class: `badge status-${item.status}` }, STATUS[item.status] || item.status),
        item.isNew ? h('span', { class: 'badge new' }, item.change === 'rescheduled' ? 'New: rescheduled' : 'New') : null,
        item.change === 'cancelled' ? h('span', { class: 'badge warn' }, 'Just cancelled') : null,
        item.change === 'moved' ? h('span', { class: 'badge warn' }, 'Moved to another time') : null,
        item.lateCancel ? h('span', { class: 'badge' }, 'Late cancellation') : null,
        item.outsideHours ? h('span', { class: 'badge warn' }, 'Outside your current hours') : null,
      ),
    );
    if (item.status === 'scheduled') {
      const started = item.start <= new Date();
      const action = (label, className, path, done) =>
        h(
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
      const actions = h('div', { class: 'actions' });
      if (started) {
        actions.append(
          action('Complete', 'complete', 'complete', 'completed'),
          action('No-show', 'secondary no-show', 'no-show', 'marked as a no-show'),
        );
      } else {
        actions.append(action('Cancel', 'danger cancel', 'cancel', 'cancelled'));
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
    const forToday = all.filter((i) => localDate(i.start) === todayKey);
    const upcoming = all.filter((i) => localDate(i.start) > todayKey);
    const before = all.filter((i) => localDate(i.start) < todayKey).reverse();
    const fill = (list, entries, showDay, empty) =>
      list.replaceChildren(...(entries.length ? entries.map((i) => row(i, showDay)) : [h('li', { class: 'empty' }, empty)]));
    fill(today, forToday, false, 'No appointments today.');
    fill(later, upcoming, true, 'No upcoming appointments.');
    fill(earlier, before, true, 'None.');
    syncLiveActions(view, live.isLive);
  }

  async function load() {
    try {
      const list = await get(`/appointments/doctor/${me.id}`);
      if (disposed) return;
      const flags = new Map([...items.values()].map((i) => [i.id, { isNew: i.isNew, change: i.change }]));
      items.clear();
      for (const entry of list) {
        const item = fromApi(entry);
        Object.assign(item, flags.get(item.id) || {});
        items.set(item.id, item);
      }
      render();
    } catch (error) {
      if (!disposed) message.error(`The appointments could not be loaded. ${plain(error)}`);
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
        end: new Date(start.getTime() + slotMinutes * 60000),
        status: event.status,
        patientName: event.patient_name,
        outsideHours: false,
        lateCancel: false,
        reason: null,
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
    } else if (event.event === 'completed') {
      item.isNew = false;
    } else if (event.event === 'no_show') {
      item.isNew = false;
    }
    render();
    refreshSoon();
  }

  // ---- working hours -----------------------------------------------------------------------
  let doc = null;
  const hoursMessage = messageBox('hours-message');

  function intervalsEditor(list, path, dayLabel) {
    const wrap = h('div', { class: 'intervals' });
    function draw(focusLast = false) {
      const rows = list.map((interval, index) => {
        const from = h('input', {
          type: 'time',
          value: interval.start,
          'aria-label': `${dayLabel}, interval ${index + 1}, from`,
          oninput: (e) => {
            interval.start = e.target.value;
          },
        });
        const to = h('input', {
          type: 'time',
          value: interval.end,
          'aria-label': `${dayLabel}, interval ${index + 1}, until`,
          oninput: (e) => {
            interval.end = e.target.value;
          },
        });
        return h(
          'li',
          { class: 'interval', dataset: { field: `${path}.${index}` } },
          h('span', { class: 'interval-inputs' }, h('span', { 'aria-hidden': 'true' }, 'From '), from, h('span', { 'aria-hidden': 'true' }, ' until '), to),
          h(
            'button',
            {
              type: 'button',
              class: 'link-button remove',
              'aria-label': `Remove ${dayLabel} interval ${index + 1}`,
              onclick: () => {
                list.splice(index, 1);
                draw();
                add.focus();
              },
            },
            'Remove',
          ),
        );
      });
      const add = h(
        'button',
        {
          type: 'button',
          class: 'secondary small add',
          'aria-label': `Add hours on ${dayLabel}`,
          onclick: () => {
            const last = list[list.length - 1];
            list.push(last ? { start: last.end === '00:00' ? '18:00' : last.end, end: '23:00' } : { start: '09:00', end: '17:00' });
            draw(true);
          },
        },
        list.length ? 'Add hours (after a break)' : 'Add hours',
      );
      wrap.replaceChildren(
        list.length ? h('ul', { class: 'interval-list' }, rows) : h('p', { class: 'day-off' }, 'Day off'),
        add,
      );
      if (focusLast) {
        const inputs = wrap.querySelectorAll('input');
        if (inputs.length >= 2) inputs[inputs.length - 2].focus();
      }
    }
    draw();
    return wrap;
  }

  function numberInput(value, attrs, onValue) {
    return h('input', {
      type: 'number',
      inputmode: 'numeric',
      value: String(value),
      ...attrs,
      oninput: (e) => onValue(e.target.value),
    });
  }

  function asNumber(text) {
    return /^-?\d+$/.test(String(text).trim()) ? Number(text) : text;
  }

  function renderHours() {
    if (!doc) return;
    const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    const zoneList = h('datalist', { id: 'zones' }, zones.map((z) => h('option', { value: z })));
    const weekly = DAYS.map((day) =>
      h(
        'fieldset',
        { class: 'day-hours', dataset: { field: `weekly.${day}` } },
        h('legend', {}, DAY_NAMES[day]),
        intervalsEditor(doc.weekly[day], `weekly.${day}`, DAY_NAMES[day]),
      ),
    );
    const overrides = h('ul', { class: 'override-list' });
    function drawOverrides(focusNew = false) {
      overrides.replaceChildren(
        ...doc.overrides.map((override, index) => {
          const from = h('input', {
            type: 'date',
            value: override.from || '',
            oninput: (e) => {
              override.from = e.target.value;
            },
          });
          const to = h('input', {
            type: 'date',
            value: override.to && override.to !== override.from ? override.to : '',
            oninput: (e) => {
              override.to = e.target.value || null;
            },
          });
          return h(
            'li',
            { class: 'override', dataset: { field: `overrides.${index}` } },
            h(
              'div',
              { class: 'grid-2' },
              field('From', from, { name: `overrides.${index}.from` }),
              field('Until (optional, inclusive)', to, { name: `overrides.${index}.to` }),
            ),
            h(
              'div',
              { dataset: { field: `overrides.${index}.intervals` } },
              h('p', { class: 'hint' }, 'No hours means a day off. Add hours for different hours on those dates.'),
              intervalsEditor(override.intervals, `overrides.${index}.intervals`, `Dates ${index + 1}`),
            ),
            h(
              'button',
              {
                type: 'button',
                class: 'link-button remove',
                onclick: () => {
                  doc.overrides.splice(index, 1);
                  drawOverrides();
                  addOff.focus();
                },
              },
              `Remove dates ${index + 1}`,
            ),
          );
        }),
      );
      if (!doc.overrides.length) overrides.append(h('li', { class: 'empty' }, 'No days off planned.'));
      if (focusNew) {
        const inputs = overrides.querySelectorAll('li.override:last-child input[type="date"]');
        if (inputs.length) inputs[0].focus();
      }
    }
    const addOff = h(
      'button',
      {
        type: 'button',
        class: 'secondary small',
        onclick: () => {
          doc.overrides.push({ from: localDate(new Date()), to: null, intervals: [] });
          drawOverrides(true);
        },
      },
      'Add days off',
    );
    drawOverrides();
    const tz = h('input', {
      type: 'text',
      list: 'zones',
      value: doc.timezone,
      autocomplete: 'off',
      spellcheck: 'false',
      oninput: (e) => {
        doc.timezone = e.target.value.trim();
      },
    });
    const policy = doc.policy;
    const cutoff = numberInput(policy.cancel_cutoff_minutes, { min: '0', step: '15' }, (v) => {
      policy.cancel_cutoff_minutes = asNumber(v);
    });
    const grace = numberInput(policy.no_show_grace_minutes, { min: '0' }, (v) => {
      policy.no_show_grace_minutes = asNumber(v);
    });
    const lateOk = h('input', {
      type: 'checkbox',
      checked: policy.allow_late_cancel,
      onchange: (e) => {
        policy.allow_late_cancel = e.target.checked;
      },
    });
    const onePer = h('input', {
      type: 'checkbox',
      checked: policy.one_per_patient,
      onchange: (e) => {
        policy.one_per_patient = e.target.checked;
      },
    });
    const save = h('button', { type: 'submit', dataset: { needsLive: '' } }, 'Save working hours');
    const form = h(
      'form',
      { class: 'form hours-form', novalidate: true, 'aria-labelledby': 'hours-title' },
      zoneList,
      h(
        'div',
        { class: 'grid-2' },
        field('Time zone', tz, { name: 'timezone', hint: 'Where you work, e.g. Europe/Berlin' }),
        field(
          'Slot length (minutes)',
          numberInput(doc.slot_minutes, { min: '5', max: '240', step: '5' }, (v) => {
            doc.slot_minutes = asNumber(v);
          }),
          { name: 'slot_minutes', hint: '5 to 240' },
        ),
        field(
          'Pause between slots (minutes)',
          numberInput(doc.buffer_minutes, { min: '0', max: '240' }, (v) => {
            doc.buffer_minutes = asNumber(v);
          }),
          { name: 'buffer_minutes' },
        ),
        field(
          'Minimum notice (minutes)',
          numberInput(doc.notice_minutes, { min: '0' }, (v) => {
            doc.notice_minutes = asNumber(v);
          }),
          { name: 'notice_minutes' },
        ),
        field(
          'Bookable up to (days ahead)',
          numberInput(doc.horizon_days, { min: '1', max: '730' }, (v) => {
            doc.horizon_days = asNumber(v);
          }),
          { name: 'horizon_days' },
        ),
      ),
      h(
        'fieldset',
        { class: 'weekly', dataset: { field: 'weekly' } },
        h('legend', {}, 'Weekly hours'),
        h('p', { class: 'hint' }, 'Two or more intervals on a day leave a break between them. A day without hours is a day off. "00:00" as an end means midnight.'),
        h('div', { class: 'week-hours' }, weekly),
      ),
      h('fieldset', { class: 'overrides', dataset: { field: 'overrides' } }, h('legend', {}, 'Days off and special dates'), overrides, addOff),
      h(
        'fieldset',
        { class: 'policy', dataset: { field: 'policy' } },
        h('legend', {}, 'Booking rules'),
        h(
          'div',
          { class: 'grid-2' },
          field('Patients may cancel until (minutes before the start)', cutoff, {
            name: 'policy.cancel_cutoff_minutes',
            hint: '1440 minutes is 24 hours',
          }),
          field('No-show can be marked after (minutes)', grace, { name: 'policy.no_show_grace_minutes' }),
        ),
        h('div', { class: 'field check', dataset: { field: 'policy.allow_late_cancel' } }, h('label', {}, lateOk, ' Allow late cancellations (recorded as late)')),
        h('div', { class: 'field check', dataset: { field: 'policy.one_per_patient' } }, h('label', {}, onePer, ' One upcoming appointment per patient')),
      ),
      hoursMessage.element,
      h('div', { class: 'actions' }, save),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      hoursMessage.clear();
      save.disabled = true;
      save.textContent = 'Saving…';
      const body = {
        ...doc,
        overrides: doc.overrides.map((o) => ({ from: o.from, to: o.to || null, intervals: o.intervals })),
      };
      try {
        const saved = await put(`/doctors/${me.id}/availability`, body);
        setDoc(saved);
        renderHours();
        const fresh = document.getElementById('hours-message');
        hoursMessage.success('Working hours saved. New bookings follow them; existing appointments stay as they are.');
        if (fresh) fresh.focus();
        announce('Working hours saved.');
        refreshSoon();
      } catch (error) {
        if (error.fields && error.fields.length) {
          const unplaced = showFieldErrors(form, error.fields);
          const count = error.fields.length;
          hoursMessage.error(
            [`The hours were not saved: ${count === 1 ? 'one problem needs' : `${count} problems need`} fixing (marked below).`, ...unplaced].join(' '),
          );
        } else {
          hoursMessage.error(`The hours were not saved. ${plain(error)}`);
        }
      } finally {
        save.textContent = 'Save working hours';
        save.disabled = false;
      }
    });
    hoursCard.replaceChildren(
      h('h2', { id: 'hours-title' }, 'Working hours'),
      h('p', { class: 'muted' }, 'Changing your hours never moves or cancels an appointment.'),
      form,
    );
    hoursMessage.element.setAttribute('tabindex', '-1');
    syncLiveActions(hoursCard, live.isLive);
  }

  function setDoc(saved) {
    doc = structuredClone(saved);
    for (const day of DAYS) doc.weekly[day] = doc.weekly[day] || [];
    doc.overrides = (doc.overrides || []).map((o) => ({ ...o, intervals: o.intervals || [] }));
    slotMinutes = doc.slot_minutes;
  }

  async function loadHours() {
    hoursCard.replaceChildren(h('h2', { id: 'hours-title' }, 'Working hours'), h('p', { class: 'muted' }, 'Loading…'));
    try {
      const saved = await get(`/doctors/${me.id}/availability`);
      if (disposed) return;
      setDoc(saved);
      renderHours();
    } catch (error) {
      if (!disposed) hoursCard.append(h('p', { class: 'message error', role: 'alert' }, `Your hours could not be loaded. ${plain(error)}`));
    }
  }

  subscriptions.push(
    live.on('appointment', onAppointment),
    live.on('ready', ({ resumed }) => {
      if (resumed) load();
    }),
  );
  today.append(h('li', { class: 'empty' }, 'Loading…'));
  load();
  loadHours();
  return () => {
    disposed = true;
    clearTimeout(refreshTimer);
    for (const off of subscriptions) off();
  };
}
