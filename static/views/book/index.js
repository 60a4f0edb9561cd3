// The patient's booking calendar: specialization -> doctor -> a week of slots in the patient's
// own time zone, live from the doctor's slot events. A free slot is held while the patient
// confirms (with a countdown), then booked; or it becomes the new time of an appointment
// being rescheduled. Here: the page's state, layout and wiring; its parts (pickers.js,
// calendar.js, panel.js, reschedule.js) share the one `page` and call each other through it.

import { get } from '../../api.js';
import { addDays, h, instantKey, isoUtc, localDate, messageBox, parseLocalDate, plain, present, weekStart, zoneLabel } from '../../ui.js';
import { defineView, flashNote } from '../../view.js';
import { weekCalendar } from './calendar.js';
import { holdPanel } from './panel.js';
import { pickers } from './pickers.js';
import { rescheduling } from './reschedule.js';
import { joinCard } from '../waitlist.js';
import { verifyNote } from '../email.js';

export const mount = defineView((view, ctx, life) => {
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
    policy: null, // the doctor's booking rules (cancel cutoff, one per patient), shown before a hold
    hold: null, // {id, key, start, end, expiresAt, idempotency, direct}
    pendingKey: null, // a slot whose hold or booking is in flight
    result: null, // {text} after a booking or a move
    reschedule: null, // the appointment being moved
    rescheduleId: number(params.get('reschedule')),
  };
  const page = {
    view,
    live,
    me,
    params,
    life,
    state,
    title: h('h1', { tabindex: '-1' }, state.rescheduleId ? 'Reschedule an appointment' : 'Book an appointment'),
    message: messageBox('page-message'), // loading problems
    notice: messageBox('book-message'), // what happened to a slot the patient picked
    remember,
    leaveDoctor,
    startWatching,
    loadMine,
  };
  page.pickers = pickers(page);
  page.calendar = weekCalendar(page);
  page.panel = holdPanel(page);
  page.reschedule = rescheduling(page);
  page.waitlist = joinCard(page);

  view.append(...present(
    page.title,
    h('p', { class: 'zone-note', id: 'zone-note' }, 'Times are shown in your time zone: ', h('strong', {}, zoneLabel()), '.'),
    flashNote(ctx),
    page.reschedule.banner,
    page.message.element,
    h(
      'div',
      { class: 'book-layout' },
      h(
        'div',
        { class: 'pickers' },
        page.pickers.picked,
        h('section', { class: 'card' }, h('h2', { id: 'spec-title' }, '1. Choose a specialization'), page.pickers.specs),
        h('section', { class: 'card' }, h('h2', { id: 'doctor-title' }, '2. Choose a doctor'), page.pickers.doctors),
      ),
      h(
        'section',
        { class: 'card calendar', 'aria-labelledby': 'calendar-title' },
        h('h2', { id: 'calendar-title' }, '3. Choose a time'),
        page.calendar.element,
      ),
      page.panel.element,
      page.waitlist.element,
    ),
    verifyNote(ctx, life), // below: on a phone the calendar comes up first
  ));

  function remember() {
    ctx.remember('book', {
      spec: state.specId,
      doctor: state.doctorId,
      week: state.doctorId ? localDate(state.week) : null,
      reschedule: state.reschedule ? state.reschedule.id : null,
    });
  }

  function leaveDoctor() {
    if (state.hold) page.panel.release({ quiet: true });
    if (state.doctorId) live.unwatch(state.doctorId);
    if (state.reschedule && state.doctorId) page.reschedule.stop({ quiet: true });
    state.slots = new Map();
    state.loaded = false;
    state.result = null;
    state.mine = new Map();
    state.upcoming = null;
    state.policy = null;
    page.waitlist.element.hidden = true;
  }

  function startWatching() {
    state.doctor = (state.doctors || []).find((d) => d.id === state.doctorId) || state.doctor;
    state.slots = new Map();
    state.loaded = false;
    live.watch(state.doctorId, isoUtc(state.week), isoUtc(addDays(state.week, 7)));
    remember();
    page.calendar.render();
    page.waitlist.render();
    page.pickers.renderDoctors(); // collapses the pickers on a phone: the calendar comes up
    loadMine();
    loadPolicy();
  }

  // The rules that decide whether a booking can be confirmed or cancelled, from the public
  // slots answer (any one day carries them).
  async function loadPolicy() {
    const doctorId = state.doctorId;
    const day = localDate(new Date());
    let answer;
    try {
      answer = await get(`/doctors/${doctorId}/slots?from=${day}&to=${day}`, { auth: false });
    } catch {
      return;
    }
    if (life.disposed || doctorId !== state.doctorId) return;
    state.policy = answer.policy;
    page.calendar.renderHint();
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
    if (life.disposed || doctorId !== state.doctorId) return;
    state.mine = new Map();
    state.upcoming = null;
    const now = Date.now();
    for (const item of list) {
      if (item.doctor_id !== doctorId || item.status !== 'scheduled') continue;
      state.mine.set(instantKey(item.scheduled_datetime), item.id);
      if (new Date(item.scheduled_datetime).getTime() > now && !state.upcoming) state.upcoming = item;
    }
    page.calendar.paintAll();
    page.calendar.renderHint();
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
    page.calendar.paintAll();
    loadMine();
  }

  life.listen(live, 'snapshot', page.calendar.onSnapshot);
  life.listen(live, 'slot', page.calendar.onSlot);
  life.listen(live, 'appointment', onAppointment);
  life.listen(live, 'watch-error', ({ doctorId, error }) => {
    if (doctorId === state.doctorId) page.message.error(`The times could not be loaded. ${plain(error)}`);
  });
  life.listen(live, 'ready', ({ resumed }) => {
    if (resumed) loadMine();
    if (!state.loaded) page.calendar.render();
  });
  life.listen(live, 'leaving', () => {
    if (state.hold) page.panel.release({ quiet: true });
  });
  life.listen(live, 'state', ({ state: now }) => {
    page.calendar.paintAll();
    if (now !== 'live' && !state.loaded && state.doctorId) page.calendar.render();
  });
  life.defer(() => {
    if (state.hold) page.panel.release({ quiet: true });
    if (state.doctorId) live.unwatch(state.doctorId);
  });

  page.pickers.renderSpecs();
  page.pickers.renderDoctors();
  page.calendar.render();
  (async () => {
    if (state.rescheduleId) await page.reschedule.prepare();
    if (!life.disposed) await page.pickers.loadSpecs();
  })();
});
