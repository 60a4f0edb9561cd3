// The clinic's day, for the front desk and admins: every doctor's appointments of one date
// (each doctor's own local date, times in their zone), filtered by specialization. Move an
// appointment to another free time, cancel one with the reason the patient is told, or (the
// desk) book with a doctor on the front desk's page. Live: the page watches each shown
// doctor's slots for that date and reads the day again, shortly after any change.

import { get, put } from '../api.js';
import { doctorName, personName, statusLabel } from '../labels.js';
import { announce, clearFieldErrors, field, formatLongDay, h, keepFocus, localDate, messageBox, parseLocalDate, plain, present, showFieldErrors, syncLiveActions } from '../ui.js';
import { defineView, flashNote } from '../view.js';

const MAX_WATCHED = 20; // doctors per connection (hub/ws/watches.py)
const REFRESH_MS = 150; // a burst of changes is read once
const POLL_MS = 30000; // the doctors past the watched ones

function timeIn(zone) {
  try {
    return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', timeZone: zone });
  } catch {
    return new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  }
}

function whenIn(zone) {
  try {
    return new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit', timeZone: zone });
  } catch {
    return new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  }
}

const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

export const mount = defineView((view, ctx, life) => {
  const { live, session: me, params } = ctx;
  const desk = me.role === 'staff';
  const state = {
    date: parseLocalDate(params.get('date')) ? params.get('date') : localDate(new Date()),
    spec: /^\d+$/.test(params.get('spec') || '') ? params.get('spec') : '',
    days: [],
    watched: new Set(),
    watchedDate: null,
    changesOpen: new Set(), // doctors whose cancelled and moved appointments are shown
    failed: false, // the last read failed: its message shows
    open: null, // {id, kind: 'move' | 'cancel', element, feedback}: the form open, kept across redraws
  };
  let refreshTimer = null;
  let pollTimer = null;
  let serial = 0;
  life.defer(() => {
    clearTimeout(refreshTimer);
    clearInterval(pollTimer);
    for (const id of state.watched) live.unwatch(id);
  });

  const message = messageBox('day-message');
  const dateInput = h('input', { type: 'date', name: 'date', value: state.date, required: true });
  const specSelect = h('select', { name: 'specialization_id' }, h('option', { value: '' }, 'All specializations'));
  const shift = (days) => {
    const next = parseLocalDate(dateInput.value) || new Date();
    next.setDate(next.getDate() + days);
    dateInput.value = localDate(next);
    choose();
  };
  const filters = h(
    'form',
    { class: 'form inline-form day-filters', novalidate: true, 'aria-label': 'Date and specialization' },
    field('Day', dateInput),
    field('Specialization', specSelect),
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', id: 'day-prev', onclick: () => shift(-1) }, '← Previous day'),
      h('button', { type: 'button', class: 'secondary', id: 'day-today', onclick: () => { dateInput.value = localDate(new Date()); choose(); } }, 'Today'),
      h('button', { type: 'button', class: 'secondary', id: 'day-next', onclick: () => shift(1) }, 'Next day →'),
    ),
  );
  const heading = h('h2', { id: 'day-title', class: 'day-title' });
  const note = h('p', { class: 'muted', id: 'day-note' });
  const board = h('div', { class: 'clinic-day', id: 'clinic-day', 'aria-live': 'off' });
  view.append(...present(
    h('h1', { tabindex: '-1' }, "Clinic's day"),
    flashNote(ctx),
    h('section', { class: 'card' }, filters),
    message.element,
    heading,
    note,
    board,
  ));

  filters.addEventListener('submit', (event) => {
    event.preventDefault();
    choose();
  });
  dateInput.addEventListener('change', () => choose());
  specSelect.addEventListener('change', () => choose());

  function choose() {
    clearFieldErrors(filters);
    if (!parseLocalDate(dateInput.value)) {
      showFieldErrors(filters, [{ field: 'date', message: 'Pick a day' }]);
      return;
    }
    state.date = dateInput.value;
    state.spec = specSelect.value;
    state.open = null;
    ctx.remember('day', { date: state.date, spec: state.spec || null });
    load();
  }

  async function loadSpecs() {
    try {
      const specs = await get('/specializations/', { auth: false });
      if (life.disposed) return;
      specSelect.append(...specs.map((s) => h('option', { value: String(s.id) }, s.name)));
      specSelect.value = state.spec;
      if (specSelect.value !== state.spec) state.spec = '';
    } catch {
      // the day still shows every doctor
    }
  }

  async function load() {
    const asked = ++serial;
    const query = new URLSearchParams({ date: state.date });
    if (state.spec) query.set('specialization_id', state.spec);
    let days;
    try {
      days = await get(`/appointments/day?${query}`);
    } catch (error) {
      if (life.disposed || asked !== serial) return;
      if (error.fields && error.fields.length) showFieldErrors(filters, error.fields);
      else message.error(`The day could not be loaded. ${plain(error)}`);
      state.failed = true;
      return;
    }
    if (life.disposed || asked !== serial) return;
    if (state.failed) message.clear(); // what a move or a cancel said stays
    state.failed = false;
    state.days = days;
    watch();
    render();
  }

  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(load, REFRESH_MS);
  }

  // Each shown doctor's slots of the day, up to what one connection may watch; the rest are
  // read again now and then.
  function watch() {
    const wanted = new Set(state.days.slice(0, MAX_WATCHED).map((d) => d.doctor.id));
    const again = state.watchedDate !== state.date;
    for (const id of state.watched) if (!wanted.has(id)) live.unwatch(id);
    for (const id of wanted) if (again || !state.watched.has(id)) live.watch(id, state.date, state.date);
    state.watched = wanted;
    state.watchedDate = state.date;
    clearInterval(pollTimer);
    pollTimer = state.days.length > MAX_WATCHED ? setInterval(load, POLL_MS) : null;
  }

  function render() {
    keepFocus(view, draw);
  }

  function draw() {
    const date = parseLocalDate(state.date);
    heading.textContent = date ? formatLongDay(date) : state.date;
    const total = state.days.reduce((n, d) => n + d.appointments.filter((a) => a.status !== 'cancelled').length, 0);
    const zones = new Set(state.days.map((d) => d.timezone));
    note.replaceChildren(
      `${state.days.length} ${state.days.length === 1 ? 'doctor' : 'doctors'}, ${total} ${total === 1 ? 'appointment' : 'appointments'}. `,
      zones.size === 1 && zones.has(browserZone) ? '' : 'Times are in each doctor’s time zone. ',
      state.days.length > MAX_WATCHED ? `Live updates cover the first ${MAX_WATCHED} doctors; the others refresh every half minute.` : '',
    );
    board.replaceChildren(
      ...(state.days.length
        ? state.days.map(doctorColumn)
        : [h('p', { class: 'muted' }, 'No doctors match.')]),
    );
    syncLiveActions(view, live.isLive);
  }

  function doctorColumn(day) {
    const { doctor } = day;
    const time = timeIn(day.timezone);
    const active = day.appointments.filter((a) => a.status !== 'cancelled');
    const gone = day.appointments.filter((a) => a.status === 'cancelled');
    const titleId = `doctor-${doctor.id}-title`;
    const book = desk
      ? h('a', {
          class: 'button secondary book',
          href: `#/desk?doctor=${doctor.id}&date=${state.date}`,
          'aria-label': `Book with ${doctorName(doctor)} on ${state.date}`,
          dataset: { key: `book-${doctor.id}` },
        }, 'Book')
      : null;
    return h(
      'section',
      { class: 'doctor-day', 'aria-labelledby': titleId, dataset: { doctorId: String(doctor.id) } },
      h(
        'header',
        { class: 'doctor-day-head' },
        h(
          'div',
          { class: 'doctor-day-who' },
          h('h3', { id: titleId }, doctorName(doctor)),
          h('p', { class: 'muted doctor-day-spec' }, doctor.specialization.name, day.timezone !== browserZone ? ` · ${day.timezone}` : ''),
        ),
        book,
      ),
      h(
        'ul',
        { class: 'appointments day-list' },
        active.length ? active.map((a) => appointmentRow(a, day, time)) : h('li', { class: 'empty' }, 'No appointments.'),
      ),
      gone.length
        ? h(
            'details',
            {
              class: 'earlier day-changes',
              open: state.changesOpen.has(doctor.id), // a redraw keeps it as the user left it
              ontoggle: (event) => {
                if (event.currentTarget.open) state.changesOpen.add(doctor.id);
                else state.changesOpen.delete(doctor.id);
              },
            },
            h('summary', {}, `Cancelled and moved (${gone.length})`),
            h('ul', { class: 'appointments' }, gone.map((a) => appointmentRow(a, day, time))),
          )
        : null,
    );
  }

  function appointmentRow(item, day, time) {
    const start = new Date(item.start);
    const end = new Date(item.end);
    const who = personName(item.patient);
    const span = `${time.format(start)}–${time.format(end)}`;
    const label = `${who}, ${span}`;
    const li = h(
      'li',
      { class: `appt status-${item.status}`, dataset: { appointmentId: String(item.id), status: item.status } },
      h('p', { class: 'appt-when' }, span),
      h('p', { class: 'appt-who' }, h('span', { class: 'appt-patient' }, who)),
      h('p', { class: 'appt-phone' }, h('a', { href: `tel:${item.patient.phone.replace(/[^+0-9]/g, '')}`, 'aria-label': `Call ${who}: ${item.patient.phone}` }, item.patient.phone)),
      h(
        'p',
        { class: 'appt-status' },
        h('span', { class: `badge status-${item.status}` }, item.moved_to ? 'Moved' : statusLabel(item.status)),
        item.visit_type ? h('span', { class: 'badge' }, item.visit_type) : null,
        item.moved_to ? h('span', { class: 'appt-moved' }, `moved to ${whenIn(day.timezone).format(new Date(item.moved_to))}`) : null,
      ),
      item.reason ? h('p', { class: 'muted appt-reason' }, `Reason for the visit: ${item.reason}`) : null,
      item.status === 'cancelled' && item.cancel_reason && !item.moved_to
        ? h('p', { class: 'muted' }, `Cancelled: ${item.cancel_reason}`)
        : null,
    );
    if (item.status !== 'scheduled' || start <= new Date()) return li;
    const open = state.open && state.open.id === item.id ? state.open : null;
    const feedback = (open && open.feedback) || messageBox(`day-appt-${item.id}-message`);
    const actions = h('div', { class: 'actions' });
    if (open) {
      // Built once: a live redraw keeps what was typed and the free times shown.
      if (!open.element) {
        open.feedback = feedback;
        open.element = open.kind === 'move' ? moveForm(item, day, time, feedback) : cancelForm(item, feedback, label);
      }
      actions.append(open.element);
    } else {
      actions.append(
        h('button', { type: 'button', class: 'secondary move', dataset: { needsLive: '', key: `move-${item.id}` }, 'aria-label': `Move: ${label}`, onclick: () => openForm(item, 'move') }, 'Move'),
        h('button', { type: 'button', class: 'danger cancel', dataset: { needsLive: '', key: `cancel-${item.id}` }, 'aria-label': `Cancel: ${label}`, onclick: () => openForm(item, 'cancel') }, 'Cancel'),
      );
    }
    li.append(actions, feedback.element);
    return li;
  }

  function openForm(item, kind) {
    const before = state.open;
    state.open = kind ? { id: item.id, kind, element: null, feedback: null } : null;
    draw();
    const row = board.querySelector(`[data-appointment-id="${item.id}"]`);
    if (!row) return;
    const target = kind ? row.querySelector('form input') : row.querySelector(`[data-key="${before ? before.kind : 'move'}-${item.id}"]`);
    if (target) target.focus();
  }

  // Cancelling is two steps: the reason the patient is told, then the confirmation.
  function cancelForm(item, feedback, label) {
    const reason = h('input', { type: 'text', name: 'reason', maxlength: '500', autocomplete: 'off', required: true });
    const form = h(
      'form',
      { class: 'form inline-form cancel-form', novalidate: true, 'aria-label': `Cancel: ${label}` },
      field('Reason the patient is told', reason),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit', class: 'danger', dataset: { needsLive: '' } }, 'Cancel the appointment'),
        h('button', { type: 'button', class: 'secondary', onclick: () => openForm(item, null) }, 'Keep it'),
      ),
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      feedback.clear();
      if (!reason.value.trim()) {
        showFieldErrors(form, [{ field: 'reason', message: 'Tell the patient why' }]);
        return;
      }
      try {
        await put(`/appointments/${item.id}/cancel`, { reason: reason.value.trim() });
        if (life.disposed) return;
        announce(`${label}: cancelled.`);
        state.open = null;
        await load();
      } catch (error) {
        if (error.fields && error.fields.length) showFieldErrors(form, error.fields);
        else feedback.error(plain(error));
      }
    });
    return form;
  }

  // Moving: the doctor's free times on a day (their local date), one button each.
  function moveForm(item, day, time, feedback) {
    const on = h('input', { type: 'date', name: 'date', value: state.date, required: true });
    const times = h('div', { class: 'desk-times day-times' });
    const form = h(
      'form',
      { class: 'form inline-form move-form', novalidate: true, 'aria-label': `Move: ${personName(item.patient)}` },
      field('New day', on),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit' }, 'Show free times'),
        h('button', { type: 'button', class: 'secondary', onclick: () => openForm(item, null) }, 'Keep it'),
      ),
      times,
    );
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      feedback.clear();
      if (!parseLocalDate(on.value)) {
        showFieldErrors(form, [{ field: 'date', message: 'Pick a day' }]);
        return;
      }
      try {
        const free = await get(`/appointments/doctor/${day.doctor.id}/available-slots?date=${on.value}`);
        if (life.disposed) return;
        times.replaceChildren(
          ...(free.slots.length
            ? free.slots.map((start) =>
                h('button', { type: 'button', class: 'secondary', dataset: { needsLive: '' }, onclick: () => moveTo(start) }, time.format(new Date(start))))
            : [h('p', { class: 'muted' }, 'No free time that day.')]),
        );
        syncLiveActions(times, live.isLive);
      } catch (error) {
        if (error.fields && error.fields.length) showFieldErrors(form, error.fields);
        else feedback.error(plain(error));
      }
    });

    async function moveTo(start) {
      try {
        const moved = await put(`/appointments/${item.id}/reschedule`, { scheduled_datetime: start });
        if (life.disposed) return;
        const text = `${personName(item.patient)} moved to ${whenIn(day.timezone).format(new Date(moved.scheduled_datetime))}.`;
        announce(text);
        state.open = null;
        message.success(text);
        await load();
      } catch (error) {
        feedback.error(plain(error));
      }
    }
    return form;
  }

  life.listen(live, 'slot', (event) => {
    if (state.watched.has(event.doctor_id)) refreshSoon();
  });
  // A watch starts after the day was read: what changed in between shows only in the
  // watch's snapshot, so the day is read once more when a snapshot answers (a burst of
  // them, one per doctor, is one read; the read that follows starts no new watch).
  life.listen(live, 'snapshot', (snapshot) => {
    if (state.watched.has(snapshot.doctor_id)) refreshSoon();
  });
  life.listen(live, 'ready', ({ resumed }) => {
    if (resumed) refreshSoon();
  });
  life.listen(live, 'state', () => syncLiveActions(view, live.isLive));

  board.append(h('p', { class: 'muted' }, 'Loading…'));
  (async () => {
    await loadSpecs();
    if (!life.disposed) load();
  })();
});
