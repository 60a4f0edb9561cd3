// The patient's booking calendar: specialization -> doctor -> a week of slots in the patient's
// own time zone, live from the doctor's slot events. A free slot is held while the patient
// confirms (with a countdown), then booked; or it becomes the new time of an appointment
// being rescheduled.

import { get } from '../api.js';
import {
  addDays,
  announce,
  countdown,
  formatDay,
  formatLongDay,
  formatTime,
  formatWhen,
  h,
  instantKey,
  isoUtc,
  localDate,
  messageBox,
  parseLocalDate,
  plain,
  syncLiveActions,
  weekStart,
  zoneLabel,
  present,
  keepFocus,
} from '../ui.js';

const LABEL = {
  free: 'Free',
  held: 'Held',
  booked: 'Booked',
  yours: 'Your appointment',
  'your-hold': 'Held for you',
  current: 'Your current time',
};
const EXPLAIN = {
  held: 'Another patient is holding this time while they confirm. It becomes free again if they do not book it.',
  booked: 'This time is already booked. Please pick a free time.',
  yours: 'You have already booked this time. You can see it under My appointments.',
  current: 'This is the time you are moving away from. Please pick a free time.',
};

const rangeFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function doctorName(doctor) {
  return doctor ? `Dr ${doctor.first_name} ${doctor.last_name}` : '';
}

export function mount(view, ctx) {
  const { live, session: me, params } = ctx;
  const number = (text) => (/^\d+$/.test(text || '') ? Number(text) : null);
  const state = {
    specs: [],
    specId: number(params.get('spec')),
    doctors: [],
    doctorId: number(params.get('doctor')),
    doctor: null,
    week: weekStart(parseLocalDate(params.get('week')) || new Date()),
    slots: new Map(), // instant key -> {start, end, state}
    timezone: null,
    loaded: false,
    mine: new Map(), // instant key -> appointment id, this doctor's active appointments of mine
    upcoming: null, // my next appointment with this doctor (for the one-per-patient hint)
    hold: null, // {id, key, start, end, expiresAt, idempotency, direct}
    pendingKey: null, // a slot whose hold or booking is in flight
    result: null, // {text} after a booking or a move
    reschedule: null, // the appointment being moved
    rescheduleId: number(params.get('reschedule')),
  };
  let disposed = false;
  let timer = null;
  const subscriptions = [];
  const buttons = new Map(); // instant key -> slot button

  // ---- the page ------------------------------------------------------------------------
  const title = h('h1', { tabindex: '-1' }, state.rescheduleId ? 'Reschedule an appointment' : 'Book an appointment');
  const message = messageBox('page-message'); // loading problems
  const notice = messageBox('book-message'); // what happened to a slot the patient picked
  const banner = h('div', { class: 'banner', hidden: true });
  const specGroup = h('div', { class: 'choices', role: 'group', 'aria-labelledby': 'spec-title' });
  const doctorGroup = h('div', { class: 'choices doctors', role: 'group', 'aria-labelledby': 'doctor-title' });
  const calendar = h('div', { class: 'calendar-body' });
  const panel = h('section', {
    id: 'hold-panel',
    class: 'hold-panel',
    'aria-labelledby': 'hold-title',
    hidden: true,
  });
  view.append(...present(
    title,
    h('p', { class: 'zone-note', id: 'zone-note' }, 'Times are shown in your time zone: ', h('strong', {}, zoneLabel()), '.'),
    ctx.flash ? h('p', { class: 'message info', role: 'status' }, ctx.flash) : null,
    banner,
    message.element,
    h(
      'div',
      { class: 'book-layout' },
      h(
        'div',
        { class: 'pickers' },
        h('section', { class: 'card' }, h('h2', { id: 'spec-title' }, '1. Choose a specialization'), specGroup),
        h('section', { class: 'card' }, h('h2', { id: 'doctor-title' }, '2. Choose a doctor'), doctorGroup),
      ),
      h(
        'section',
        { class: 'card calendar', 'aria-labelledby': 'calendar-title' },
        h('h2', { id: 'calendar-title' }, '3. Choose a time'),
        calendar,
      ),
      panel,
    ),
  ));

  function remember() {
    ctx.remember('book', {
      spec: state.specId,
      doctor: state.doctorId,
      week: state.doctorId ? localDate(state.week) : null,
      reschedule: state.reschedule ? state.reschedule.id : null,
    });
  }

  // ---- specializations and doctors -------------------------------------------------------
  function choice(key, label, pressed, onclick, extra) {
    return h(
      'button',
      { type: 'button', class: 'choice', 'aria-pressed': pressed ? 'true' : 'false', onclick, dataset: { key } },
      h('span', { class: 'choice-label' }, label),
      extra ? h('span', { class: 'choice-extra' }, extra) : null,
    );
  }

  function renderSpecs() {
    keepFocus(specGroup, drawSpecs);
  }

  function drawSpecs() {
    if (!state.specs.length) {
      specGroup.replaceChildren(h('p', { class: 'muted' }, 'Loading specializations…'));
      return;
    }
    specGroup.replaceChildren(
      ...state.specs.map((spec) =>
        choice(`spec-${spec.id}`, spec.name, spec.id === state.specId, () => chooseSpec(spec.id)),
      ),
    );
  }

  function renderDoctors() {
    keepFocus(doctorGroup, drawDoctors);
  }

  function drawDoctors() {
    if (!state.specId) {
      doctorGroup.replaceChildren(h('p', { class: 'muted' }, 'Choose a specialization first.'));
      return;
    }
    if (state.doctors === null) {
      doctorGroup.replaceChildren(h('p', { class: 'muted' }, 'Loading doctors…'));
      return;
    }
    if (!state.doctors.length) {
      doctorGroup.replaceChildren(h('p', { class: 'muted' }, 'No doctors offer this specialization yet.'));
      return;
    }
    doctorGroup.replaceChildren(
      ...state.doctors.map((doctor) =>
        choice(`doctor-${doctor.id}`, doctorName(doctor), doctor.id === state.doctorId, () => chooseDoctor(doctor.id), doctor.address),
      ),
    );
  }

  async function loadSpecs() {
    try {
      state.specs = await get('/specializations/', { auth: false });
    } catch (error) {
      if (!disposed) message.error(`The specializations could not be loaded. ${plain(error)}`);
      return;
    }
    if (disposed) return;
    renderSpecs();
    if (state.specId) await loadDoctors();
  }

  async function loadDoctors() {
    state.doctors = null;
    renderDoctors();
    let doctors;
    try {
      doctors = await get(`/doctors/?specialization_id=${state.specId}`, { auth: false });
    } catch (error) {
      if (!disposed) message.error(`The doctors could not be loaded. ${plain(error)}`);
      state.doctors = [];
      return;
    }
    if (disposed) return;
    state.doctors = doctors;
    renderDoctors();
    if (state.doctorId && doctors.some((d) => d.id === state.doctorId)) {
      startWatching();
    } else {
      state.doctorId = null;
      renderCalendar();
    }
  }

  function chooseSpec(id) {
    if (id === state.specId) return;
    message.clear();
    state.notice = null;
    leaveDoctor();
    state.specId = id;
    state.doctorId = null;
    renderSpecs();
    renderCalendar();
    remember();
    loadDoctors();
  }

  function chooseDoctor(id) {
    if (id === state.doctorId) return;
    message.clear();
    state.notice = null;
    leaveDoctor();
    state.doctorId = id;
    renderDoctors();
    startWatching();
    announce(`${doctorName(state.doctors.find((d) => d.id === id))} selected. Loading times.`);
  }

  function leaveDoctor() {
    if (state.hold) release({ quiet: true });
    if (state.doctorId) live.unwatch(state.doctorId);
    if (state.reschedule && state.doctorId) stopRescheduling({ quiet: true });
    state.slots = new Map();
    state.loaded = false;
    state.result = null;
    state.mine = new Map();
    state.upcoming = null;
  }

  // ---- watching a week -------------------------------------------------------------------
  function startWatching() {
    state.doctor = (state.doctors || []).find((d) => d.id === state.doctorId) || state.doctor;
    state.slots = new Map();
    state.loaded = false;
    const from = isoUtc(state.week);
    const to = isoUtc(addDays(state.week, 7));
    live.watch(state.doctorId, from, to);
    remember();
    renderCalendar();
    loadMine();
  }

  function changeWeek(days) {
    state.week = weekStart(addDays(state.week, days));
    if (state.doctorId) startWatching();
    const label = view.querySelector('#week-label');
    announce(`Showing ${label ? label.textContent : 'another week'}.`);
  }

  async function loadMine() {
    if (!state.doctorId) return;
    const doctorId = state.doctorId;
    let list;
    try {
      list = await get(`/appointments/patient/${me.id}`);
    } catch {
      return;
    }
    if (disposed || doctorId !== state.doctorId) return;
    state.mine = new Map();
    state.upcoming = null;
    const now = Date.now();
    for (const item of list) {
      if (item.doctor_id !== doctorId || item.status !== 'scheduled') continue;
      state.mine.set(instantKey(item.scheduled_datetime), item.id);
      if (new Date(item.scheduled_datetime).getTime() > now && !state.upcoming) state.upcoming = item;
    }
    for (const key of buttons.keys()) paint(key);
    renderHint();
  }

  // ---- slots ---------------------------------------------------------------------------
  function kindOf(key) {
    const slot = state.slots.get(key);
    if (!slot) return null;
    if (state.reschedule && instantKey(state.reschedule.scheduled_datetime) === key && slot.state === 'booked') {
      return 'current';
    }
    if (slot.state === 'booked') return state.mine.has(key) || state.pendingKey === key ? 'yours' : 'booked';
    if (slot.state === 'held') {
      if ((state.hold && state.hold.key === key) || state.pendingKey === key) return 'your-hold';
      return 'held';
    }
    if (state.hold && state.hold.direct && state.hold.key === key) return 'your-hold';
    return 'free';
  }

  function paint(key) {
    const button = buttons.get(key);
    const slot = state.slots.get(key);
    if (!button || !slot) return;
    const kind = kindOf(key);
    button.dataset.state = kind;
    button.querySelector('.slot-state').textContent = LABEL[kind];
    // Never `disabled`: a slot that cannot be taken stays focusable and says why when pressed.
    if ((kind === 'free' || kind === 'your-hold') && live.isLive) button.removeAttribute('aria-disabled');
    else button.setAttribute('aria-disabled', 'true');
  }

  function slotButton(key, slot) {
    const button = h(
      'button',
      { type: 'button', class: 'slot', dataset: { start: key }, onclick: () => pick(key) },
      h('span', { class: 'visually-hidden' }, `${formatDay(slot.start)}, `),
      h('span', { class: 'slot-time' }, formatTime(slot.start)),
      h('span', { class: 'visually-hidden' }, ` until ${formatTime(slot.end)}, `),
      h('span', { class: 'slot-state' }),
    );
    buttons.set(key, button);
    paint(key);
    return button;
  }

  function renderHint() {
    const hint = view.querySelector('#one-per-patient');
    if (!hint) return;
    const upcoming = state.upcoming;
    if (!upcoming || state.reschedule) {
      hint.hidden = true;
      return;
    }
    hint.hidden = false;
    hint.replaceChildren(
      `You already have an appointment with this doctor on ${formatWhen(new Date(upcoming.scheduled_datetime))}. `,
      h(
        'a',
        { href: `#/book?doctor=${upcoming.doctor_id}&spec=${state.specId || ''}&reschedule=${upcoming.id}&week=${localDate(weekStart(new Date(upcoming.scheduled_datetime)))}` },
        'Reschedule it',
      ),
      ' instead of booking another.',
    );
  }

  function renderCalendar() {
    keepFocus(calendar, drawCalendar);
  }

  function drawCalendar() {
    buttons.clear();
    if (!state.doctorId) {
      calendar.replaceChildren(h('p', { class: 'muted' }, 'Choose a doctor to see their free times.'));
      renderPanel();
      return;
    }
    const doctor = state.doctor;
    const weekEnd = addDays(state.week, 6);
    const thisWeek = weekStart(new Date());
    const previous = h('button', { type: 'button', id: 'prev-week', class: 'secondary', onclick: () => changeWeek(-7) }, '← Previous week');
    previous.disabled = state.week <= thisWeek;
    const info = h(
      'p',
      { class: 'doctor-info' },
      doctor ? h('strong', {}, doctorName(doctor)) : null,
      doctor && doctor.specialization ? ` · ${doctor.specialization.name}` : '',
      doctor && doctor.address ? ` · ${doctor.address}` : '',
      state.timezone ? h('span', { class: 'muted' }, ` · works in ${state.timezone}`) : null,
    );
    const nav = h(
      'div',
      { class: 'week-nav' },
      previous,
      h('p', { id: 'week-label', class: 'week-label' }, rangeFormat.formatRange(state.week, weekEnd)),
      h('button', { type: 'button', id: 'next-week', class: 'secondary', onclick: () => changeWeek(7) }, 'Next week →'),
    );
    const legend = h(
      'ul',
      { class: 'legend', 'aria-label': 'What the labels mean' },
      h('li', { dataset: { state: 'free' } }, h('span', { class: 'swatch' }), 'Free: you can pick it'),
      h('li', { dataset: { state: 'held' } }, h('span', { class: 'swatch' }), 'Held: someone is confirming'),
      h('li', { dataset: { state: 'booked' } }, h('span', { class: 'swatch' }), 'Booked'),
      h('li', { dataset: { state: 'yours' } }, h('span', { class: 'swatch' }), 'Yours'),
    );
    const hint = h('p', { id: 'one-per-patient', class: 'message info', hidden: true });
    let body;
    if (!state.loaded) {
      body = h('p', { class: 'muted', role: 'status' }, live.isLive ? 'Loading times…' : 'Waiting for the connection…');
    } else {
      const byDay = new Map();
      for (let i = 0; i < 7; i += 1) byDay.set(localDate(addDays(state.week, i)), []);
      for (const [key, slot] of state.slots) {
        const day = localDate(slot.start);
        if (byDay.has(day)) byDay.get(day).push([key, slot]);
      }
      const today = localDate(new Date());
      let offered = 0;
      body = h(
        'div',
        { class: 'week' },
        [...byDay.entries()].map(([day, items]) => {
          const date = parseLocalDate(day);
          const headingId = `day-${day}`;
          items.sort((a, b) => a[1].start - b[1].start);
          offered += items.length;
          return h(
            'section',
            { class: `day${day === today ? ' today' : ''}`, 'aria-labelledby': headingId },
            h(
              'h3',
              { id: headingId },
              h('span', { class: 'visually-hidden' }, `${formatLongDay(date)}`),
              h('span', { 'aria-hidden': 'true' }, formatDay(date)),
              day === today ? h('span', { class: 'badge' }, 'Today') : null,
            ),
            items.length
              ? h('ul', { class: 'slot-list' }, items.map(([key, slot]) => h('li', {}, slotButton(key, slot))))
              : h('p', { class: 'none' }, 'No times'),
          );
        }),
      );
      if (!offered) {
        body = h('div', {}, body, h('p', { class: 'message info' }, 'No times are offered this week. Try the next week.'));
      }
    }
    calendar.replaceChildren(info, nav, legend, hint, body);
    renderHint();
    renderPanel();
  }

  function onSnapshot(snapshot) {
    if (snapshot.doctor_id !== state.doctorId) return;
    state.timezone = snapshot.timezone;
    state.slots = new Map();
    for (const slot of snapshot.slots) {
      const key = instantKey(slot.start);
      state.slots.set(key, { start: new Date(slot.start), end: new Date(slot.end), state: slot.state });
      if (slot.patient_id === me.id && slot.appointment_id) state.mine.set(key, slot.appointment_id);
    }
    state.loaded = true;
    const held = state.hold && state.slots.get(state.hold.key);
    if (held && !state.hold.direct && held.state !== 'held' && state.pendingKey !== state.hold.key) {
      dropHold('Your hold has ended. The time may have been taken.');
    }
    renderCalendar();
  }

  function onSlot(event) {
    if (event.doctor_id !== state.doctorId) return;
    const key = instantKey(event.start);
    const slot = state.slots.get(key);
    if (!slot) return;
    const before = kindOf(key);
    slot.state = event.state;
    if (event.state === 'free' && state.mine.has(key) && state.pendingKey !== key) state.mine.delete(key);
    if (state.hold && state.hold.key === key && !state.hold.direct && event.state !== 'held' && state.pendingKey !== key) {
      dropHold(
        event.state === 'free'
          ? 'Your hold on this time has ended. Pick it again if it is still free.'
          : 'This time has just been taken.',
      );
    }
    paint(key);
    const after = kindOf(key);
    const own = state.pendingKey === key || (state.hold && state.hold.key === key);
    if (before !== after && !own && after !== 'yours') {
      announce(`${formatWhen(slot.start)} is now ${LABEL[after].toLowerCase()}.`);
    }
  }

  function onAppointment(event) {
    if (event.doctor_id !== state.doctorId) return;
    const key = instantKey(event.start);
    if (event.status === 'scheduled') {
      state.mine.set(key, event.appointment_id);
      if (event.previous_id) {
        for (const [k, id] of state.mine) if (id === event.previous_id) state.mine.delete(k);
      }
    } else {
      for (const [k, id] of state.mine) if (id === event.appointment_id) state.mine.delete(k);
    }
    for (const k of buttons.keys()) paint(k);
    loadMine();
  }

  // ---- holding and booking ----------------------------------------------------------------
  async function pick(key) {
    const kind = kindOf(key);
    if (kind === 'your-hold') {
      const confirm = panel.querySelector('.confirm');
      if (confirm) confirm.focus();
      return;
    }
    if (kind !== 'free') {
      notify('error', EXPLAIN[kind] || 'This time cannot be picked.');
      return;
    }
    if (!live.isLive) {
      notify('error', plain({ code: 'offline' }));
      return;
    }
    if (state.pendingKey) return;
    state.notice = null;
    state.result = null;
    if (state.hold) await release({ quiet: true });
    const slot = state.slots.get(key);
    state.pendingKey = key;
    paint(key);
    try {
      const reply = await live.send({ type: 'hold', doctor_id: state.doctorId, start: isoUtc(slot.start) });
      if (disposed) return;
      state.hold = {
        id: reply.hold_id,
        key,
        start: slot.start,
        end: slot.end,
        expiresAt: reply.expires_at ? new Date(reply.expires_at) : null,
        idempotency: randomKey(),
        direct: false,
      };
      announce(
        `${formatWhen(slot.start)} is held for you${reply.expires_at ? ` for ${countdown(state.hold.expiresAt - Date.now())} minutes` : ''}. Confirm to book it.`,
      );
    } catch (error) {
      if (disposed) return;
      if (error.code === 'holds_unavailable') {
        state.hold = { id: null, key, start: slot.start, end: slot.end, expiresAt: null, idempotency: randomKey(), direct: true };
        state.notice = { kind: 'info', text: plain(error) };
      } else {
        state.notice = { kind: 'error', text: plain(error) };
      }
    } finally {
      state.pendingKey = null;
      paint(key);
    }
    renderPanel();
    const confirm = panel.querySelector('.confirm');
    if (confirm && state.hold) confirm.focus();
  }

  async function confirm() {
    const hold = state.hold;
    if (!hold || state.pendingKey) return;
    state.notice = null;
    state.pendingKey = hold.key;
    renderPanel();
    const moving = state.reschedule;
    try {
      let reply;
      if (moving) {
        const command = { type: 'reschedule', appointment_id: moving.id };
        if (hold.direct) command.start = isoUtc(hold.start);
        else command.hold_id = hold.id;
        reply = await live.send(command);
      } else {
        const command = { type: 'book', idempotency_key: hold.idempotency };
        if (hold.direct) Object.assign(command, { doctor_id: state.doctorId, start: isoUtc(hold.start) });
        else command.hold_id = hold.id;
        reply = await live.send(command);
      }
      if (disposed) return;
      const appointment = reply.appointment;
      state.hold = null;
      state.mine.set(instantKey(appointment.scheduled_datetime), appointment.id);
      if (moving) {
        for (const [k, id] of state.mine) if (id === moving.id) state.mine.delete(k);
        state.reschedule = null;
        renderBanner();
        remember();
      }
      const when = `${formatWhen(new Date(appointment.scheduled_datetime))}–${formatTime(new Date(appointment.end_datetime))}`;
      state.result = {
        text: moving
          ? `Moved. Your appointment with ${doctorName(state.doctor)} is now on ${when}.`
          : `Booked. You have an appointment with ${doctorName(state.doctor)} on ${when}.`,
      };
      announce(state.result.text);
      loadMine();
    } catch (error) {
      if (disposed) return;
      if (error.code === 'hold_expired' || error.code === 'slot_taken') {
        state.hold = null;
      }
      state.notice = { kind: 'error', text: plain(error) };
    } finally {
      state.pendingKey = null;
    }
    if (buttons.has(hold.key)) paint(hold.key);
    renderPanel();
    const focus = panel.querySelector('.after-book, .confirm');
    if (focus) focus.focus();
  }

  async function release({ quiet = false } = {}) {
    const hold = state.hold;
    if (!hold) return;
    state.hold = null;
    renderPanel();
    if (buttons.has(hold.key)) paint(hold.key);
    if (hold.direct || !hold.id) return;
    try {
      await live.send({ type: 'release', hold_id: hold.id });
      if (!quiet && !disposed) announce(`You let go of ${formatWhen(hold.start)}.`);
    } catch {
      // Gone already (it lapsed) or offline: it lapses by itself at its expiry.
    }
  }

  function dropHold(text) {
    state.hold = null;
    notify('error', text);
  }

  function notify(kind, text) {
    state.notice = { kind, text };
    renderPanel();
  }

  function tick() {
    const hold = state.hold;
    const out = panel.querySelector('.countdown');
    if (!hold || !hold.expiresAt || !out) return;
    const left = hold.expiresAt.getTime() - Date.now();
    out.textContent = countdown(left);
    if (left <= 0 && state.pendingKey !== hold.key) {
      dropHold('Your hold ran out. Pick the time again if it is still free.');
      if (buttons.has(hold.key)) paint(hold.key);
    } else if (left <= 30000 && !hold.warned) {
      hold.warned = true;
      announce('30 seconds left to confirm.');
    }
  }

  function renderPanel() {
    clearInterval(timer);
    timer = null;
    const hold = state.hold;
    if (state.notice) notice[state.notice.kind](state.notice.text);
    else notice.clear();
    if (!hold && !state.result && !state.notice) {
      panel.hidden = true;
      panel.replaceChildren();
      return;
    }
    panel.hidden = false;
    if (!hold && !state.result) {
      panel.replaceChildren(...present(
        h('h2', { id: 'hold-title' }, 'Message'),
        notice.element,
        h(
          'div',
          { class: 'actions' },
          h(
            'button',
            {
              type: 'button',
              class: 'secondary dismiss',
              onclick: () => {
                state.notice = null;
                renderPanel();
              },
            },
            'OK',
          ),
        ),
      ));
      return;
    }
    if (!hold) {
      panel.replaceChildren(...present(
        h('h2', { id: 'hold-title' }, 'Done'),
        state.notice ? notice.element : null,
        h('p', { class: 'message success', role: 'status' }, state.result.text),
        h(
          'div',
          { class: 'actions' },
          h('a', { href: '#/mine', class: 'button after-book' }, 'See my appointments'),
          h(
            'button',
            {
              type: 'button',
              class: 'secondary',
              onclick: () => {
                state.result = null;
                renderPanel();
              },
            },
            'Close',
          ),
        ),
      ));
      return;
    }
    const busy = state.pendingKey === hold.key;
    const moving = state.reschedule;
    const confirmButton = h(
      'button',
      { type: 'button', class: 'confirm', onclick: confirm, dataset: { needsLive: '', blocked: busy ? '1' : '0' } },
      busy ? 'Confirming…' : moving ? 'Move my appointment here' : 'Confirm booking',
    );
    const cancelButton = h(
      'button',
      { type: 'button', class: 'secondary release', onclick: () => release(), dataset: { needsLive: '', blocked: busy ? '1' : '0' } },
      'Cancel',
    );
    panel.replaceChildren(...present(
      h('h2', { id: 'hold-title' }, moving ? 'Your new time' : 'Your selection'),
      state.notice ? notice.element : null,
      h(
        'p',
        { class: 'hold-when' },
        h('strong', {}, `${formatLongDay(hold.start)}, ${formatTime(hold.start)}–${formatTime(hold.end)}`),
        ` with ${doctorName(state.doctor)}`,
      ),
      hold.expiresAt
        ? h(
            'p',
            { class: 'hold-timer' },
            'Held for you for ',
            h('span', { class: 'countdown', role: 'timer', 'aria-live': 'off' }, countdown(hold.expiresAt - Date.now())),
            ' (minutes:seconds). Confirm before it runs out.',
          )
        : h('p', { class: 'hold-timer' }, 'This time is not held for you: confirm quickly, someone else may book it first.'),
      h('div', { class: 'actions' }, confirmButton, cancelButton),
    ));
    syncLiveActions(panel, live.isLive);
    if (hold.expiresAt) timer = setInterval(tick, 500);
  }

  // ---- rescheduling ------------------------------------------------------------------------
  function renderBanner() {
    const moving = state.reschedule;
    title.textContent = moving ? 'Reschedule an appointment' : 'Book an appointment';
    if (!moving) {
      banner.hidden = true;
      banner.replaceChildren();
      return;
    }
    banner.hidden = false;
    banner.replaceChildren(
      h(
        'p',
        {},
        'You are moving your appointment of ',
        h('strong', {}, formatWhen(new Date(moving.scheduled_datetime))),
        ` with Dr ${moving.doctor.first_name} ${moving.doctor.last_name}. Pick a free time below, then confirm. Until then your appointment stays as it is.`,
      ),
      h('button', { type: 'button', class: 'secondary', onclick: () => stopRescheduling() }, 'Stop rescheduling'),
    );
    renderHint();
  }

  function stopRescheduling({ quiet = false } = {}) {
    state.reschedule = null;
    renderBanner();
    remember();
    for (const key of buttons.keys()) paint(key);
    renderPanel();
    if (!quiet) announce('Rescheduling stopped. Your appointment is unchanged.');
  }

  async function prepareReschedule() {
    let list;
    try {
      list = await get(`/appointments/patient/${me.id}`);
    } catch (error) {
      if (!disposed) message.error(plain(error));
      return;
    }
    if (disposed) return;
    const moving = list.find((item) => item.id === state.rescheduleId);
    if (!moving || moving.status !== 'scheduled') {
      message.error('That appointment can no longer be rescheduled.');
      state.rescheduleId = null;
      return;
    }
    state.reschedule = moving;
    state.rescheduleId = null;
    state.doctorId = moving.doctor_id;
    if (!params.get('week')) state.week = weekStart(new Date(moving.scheduled_datetime));
    try {
      const doctor = await get(`/doctors/${moving.doctor_id}`, { auth: false });
      state.specId = doctor.specialization.id;
      state.doctor = doctor;
    } catch {
      // the pickers still work
    }
    renderBanner();
  }

  // ---- wiring ------------------------------------------------------------------------------
  subscriptions.push(
    live.on('snapshot', onSnapshot),
    live.on('slot', onSlot),
    live.on('appointment', onAppointment),
    live.on('watch-error', ({ doctorId, error }) => {
      if (doctorId === state.doctorId) message.error(`The times could not be loaded. ${plain(error)}`);
    }),
    live.on('ready', ({ resumed }) => {
      if (resumed) loadMine();
      if (!state.loaded) renderCalendar();
    }),
    live.on('leaving', () => {
      if (state.hold) release({ quiet: true });
    }),
    live.on('state', ({ state: now }) => {
      for (const key of buttons.keys()) paint(key);
      if (now !== 'live' && !state.loaded && state.doctorId) renderCalendar();
    }),
  );
  renderSpecs();
  renderDoctors();
  renderCalendar();
  (async () => {
    if (state.rescheduleId) await prepareReschedule();
    if (!disposed) await loadSpecs();
  })();

  return () => {
    disposed = true;
    clearInterval(timer);
    if (state.hold) release({ quiet: true });
    if (state.doctorId) live.unwatch(state.doctorId);
    for (const off of subscriptions) off();
  };
}
