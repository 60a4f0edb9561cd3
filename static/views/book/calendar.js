// Step 3 of booking: the watched week, one button per slot, painted from the doctor's live
// snapshot and slot events.

import { doctorName } from '../../labels.js';
import {
  addDays,
  announce,
  formatDay,
  formatLongDay,
  formatTime,
  formatWhen,
  h,
  instantKey,
  keepFocus,
  localDate,
  parseLocalDate,
  weekStart,
} from '../../ui.js';
import { LABEL, cancelRule, kindOf } from './slots.js';

const rangeFormat = new Intl.DateTimeFormat(undefined, { day: 'numeric', month: 'short', year: 'numeric' });

export function weekCalendar(page) {
  const { state, live, me, view } = page;
  const element = h('div', { class: 'calendar-body' });
  const buttons = new Map(); // instant key -> slot button

  function paint(key) {
    const button = buttons.get(key);
    const slot = state.slots.get(key);
    if (!button || !slot) return;
    const kind = kindOf(state, key);
    button.dataset.state = kind;
    button.querySelector('.slot-state').textContent = LABEL[kind];
    // Never `disabled`: a slot that cannot be taken stays focusable and says why when pressed.
    if ((kind === 'free' || kind === 'your-hold') && live.isLive) button.removeAttribute('aria-disabled');
    else button.setAttribute('aria-disabled', 'true');
  }

  function paintAll() {
    for (const key of buttons.keys()) paint(key);
  }

  function slotButton(key, slot) {
    const button = h(
      'button',
      { type: 'button', class: 'slot', dataset: { start: key }, onclick: () => page.panel.pick(key) },
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
    renderPolicy();
    const hint = view.querySelector('#one-per-patient');
    if (!hint) return;
    const upcoming = state.upcoming;
    // Only the doctor's rule refuses a second appointment (and then a hold is refused too).
    if (!upcoming || state.reschedule || !state.policy || !state.policy.one_per_patient) {
      hint.hidden = true;
      return;
    }
    hint.hidden = false;
    hint.replaceChildren(
      `You already have an appointment with this doctor on ${formatWhen(new Date(upcoming.scheduled_datetime))}, `,
      'and this doctor takes one upcoming appointment per patient, so another time cannot be booked. ',
      h(
        'a',
        { href: `#/book?doctor=${upcoming.doctor_id}&spec=${state.specId || ''}&reschedule=${upcoming.id}&week=${localDate(weekStart(new Date(upcoming.scheduled_datetime)))}` },
        'Reschedule it',
      ),
      ' instead.',
    );
  }

  function renderPolicy() {
    const note = view.querySelector('#cancel-policy');
    if (!note) return;
    note.hidden = !state.policy;
    if (state.policy) note.textContent = cancelRule(state.policy);
  }

  function changeWeek(days) {
    state.week = weekStart(addDays(state.week, days));
    if (state.doctorId) page.startWatching();
    const label = view.querySelector('#week-label');
    announce(`Showing ${label ? label.textContent : 'another week'}.`);
  }

  function render() {
    keepFocus(element, draw);
  }

  function draw() {
    buttons.clear();
    if (!state.doctorId) {
      element.replaceChildren(h('p', { class: 'muted' }, 'Choose a doctor to see their free times.'));
      page.panel.render();
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
    const policy = h('p', { id: 'cancel-policy', class: 'policy-note', hidden: true });
    element.replaceChildren(info, policy, hint, nav, legend, state.loaded ? week() : waiting());
    renderHint();
    page.panel.render();
  }

  function waiting() {
    return h('p', { class: 'muted', role: 'status' }, live.isLive ? 'Loading times…' : 'Waiting for the connection…');
  }

  function week() {
    const byDay = new Map();
    for (let i = 0; i < 7; i += 1) byDay.set(localDate(addDays(state.week, i)), []);
    for (const [key, slot] of state.slots) {
      const day = localDate(slot.start);
      if (byDay.has(day)) byDay.get(day).push([key, slot]);
    }
    const today = localDate(new Date());
    let offered = 0;
    const body = h(
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
    if (offered) return body;
    return h('div', {}, body, h('p', { class: 'message info' }, 'No times are offered this week. Try the next week.'));
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
      page.panel.drop('Your hold has ended. The time may have been taken.');
    }
    render();
  }

  function onSlot(event) {
    if (event.doctor_id !== state.doctorId) return;
    const key = instantKey(event.start);
    const slot = state.slots.get(key);
    if (!slot) return;
    const before = kindOf(state, key);
    slot.state = event.state;
    if (event.state === 'free' && state.mine.has(key) && state.pendingKey !== key) state.mine.delete(key);
    if (state.hold && state.hold.key === key && !state.hold.direct && event.state !== 'held' && state.pendingKey !== key) {
      page.panel.drop(
        event.state === 'free'
          ? 'Your hold on this time has ended. Pick it again if it is still free.'
          : 'This time has just been taken.',
      );
    }
    paint(key);
    const after = kindOf(state, key);
    const own = state.pendingKey === key || (state.hold && state.hold.key === key);
    if (before !== after && !own && after !== 'yours') {
      announce(`${formatWhen(slot.start)} is now ${LABEL[after].toLowerCase()}.`);
    }
  }

  return { element, paint, paintAll, render, renderHint, onSnapshot, onSlot };
}
