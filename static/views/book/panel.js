// The hold panel beside the calendar: a picked slot held for the patient with a countdown,
// then confirmed (booked, or the appointment being rescheduled moved there) or let go; and
// what happened to the slot the patient picked.

import { doctorName } from '../../labels.js';
import { announce, countdown, formatLongDay, formatTime, formatWhen, h, instantKey, isoUtc, plain, present, reveal, syncLiveActions } from '../../ui.js';
import { EXPLAIN, cancelUntil, kindOf } from './slots.js';

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function holdPanel(page) {
  const { state, live, life, notice } = page;
  const element = h('section', { id: 'hold-panel', class: 'hold-panel', 'aria-labelledby': 'hold-title', hidden: true });
  let timer = null;
  let revealed = null;
  life.defer(() => clearInterval(timer));

  async function pick(key) {
    const kind = kindOf(state, key);
    if (kind === 'your-hold') {
      const confirmButton = element.querySelector('.confirm');
      if (confirmButton) confirmButton.focus();
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
    page.calendar.paint(key);
    try {
      const command = { type: 'hold', doctor_id: state.doctorId, start: isoUtc(slot.start) };
      if (state.reschedule) command.appointment_id = state.reschedule.id; // moving it: not a second one
      const reply = await live.send(command);
      if (life.disposed) return;
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
      if (life.disposed) return;
      if (error.code === 'holds_unavailable') {
        state.hold = { id: null, key, start: slot.start, end: slot.end, expiresAt: null, idempotency: randomKey(), direct: true };
        state.notice = { kind: 'info', text: plain(error) };
      } else {
        state.notice = { kind: 'error', text: plain(error) };
      }
    } finally {
      state.pendingKey = null;
      page.calendar.paint(key);
    }
    render();
    const confirmButton = element.querySelector('.confirm');
    if (confirmButton && state.hold) confirmButton.focus();
  }

  async function confirm() {
    const hold = state.hold;
    if (!hold || state.pendingKey) return;
    state.notice = null;
    state.pendingKey = hold.key;
    render();
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
        reply = await sendUntilAnswered(command);
      }
      if (life.disposed) return;
      const appointment = reply.appointment;
      state.hold = null;
      state.mine.set(instantKey(appointment.scheduled_datetime), appointment.id);
      if (moving) {
        for (const [k, id] of state.mine) if (id === moving.id) state.mine.delete(k);
        state.reschedule = null;
        page.reschedule.render();
        page.remember();
      }
      const when = `${formatWhen(new Date(appointment.scheduled_datetime))}–${formatTime(new Date(appointment.end_datetime))}`;
      state.result = {
        text: moving
          ? `Moved. Your appointment with ${doctorName(state.doctor)} is now on ${when}.`
          : `Booked. You have an appointment with ${doctorName(state.doctor)} on ${when}.`,
      };
      announce(state.result.text);
      page.loadMine();
    } catch (error) {
      if (life.disposed) return;
      if (error.code === 'hold_expired' || error.code === 'slot_taken') {
        state.hold = null;
      }
      state.notice = { kind: 'error', text: plain(error) };
    } finally {
      state.pendingKey = null;
    }
    page.calendar.paint(hold.key);
    render();
    const focus = element.querySelector('.after-book, .confirm');
    if (focus) focus.focus();
  }

  // A booking whose answer was lost (the connection dropped, the hub or its database was
  // away) is sent again with the same idempotency key once the connection is back: if it had
  // committed, the hub answers with that appointment instead of "taken".
  async function sendUntilAnswered(command, attempts = 4) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await live.send(command);
      } catch (error) {
        const lost = ['offline', 'timeout', 'unavailable', 'holds_unavailable'].includes(error.code);
        if (!lost || attempt >= attempts || life.disposed) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1000 * attempt));
        const until = Date.now() + 30000; // back within half a minute, or the error shows
        while (!live.isLive && !life.disposed && Date.now() < until) {
          await new Promise((resolve) => setTimeout(resolve, 250));
        }
      }
    }
  }

  async function release({ quiet = false } = {}) {
    const hold = state.hold;
    if (!hold) return;
    state.hold = null;
    render();
    page.calendar.paint(hold.key);
    if (hold.direct || !hold.id) return;
    try {
      await live.send({ type: 'release', hold_id: hold.id });
      if (!quiet && !life.disposed) announce(`You let go of ${formatWhen(hold.start)}.`);
    } catch {
      // Gone already (it lapsed) or offline: it lapses by itself at its expiry.
    }
  }

  function drop(text) {
    state.hold = null;
    notify('error', text);
  }

  function notify(kind, text) {
    state.notice = { kind, text };
    render();
  }

  function tick() {
    const hold = state.hold;
    const out = element.querySelector('.countdown');
    if (!hold || !hold.expiresAt || !out) return;
    const left = hold.expiresAt.getTime() - Date.now();
    out.textContent = countdown(left);
    if (left <= 0 && state.pendingKey !== hold.key) {
      drop('Your hold ran out. Pick the time again if it is still free.');
      page.calendar.paint(hold.key);
    } else if (left <= 30000 && !hold.warned) {
      hold.warned = true;
      announce('30 seconds left to confirm.');
    }
  }

  function dismiss(label, className, onclick) {
    return h('button', { type: 'button', class: className, onclick }, label);
  }

  function render() {
    draw();
    // What happened to the patient's pick shows where they look: scrolled to when it is
    // off-screen (on a desktop the panel sits under the left column), once per news.
    const news = state.notice || state.result || state.hold;
    if (!element.hidden && news !== revealed) reveal(element);
    revealed = news;
  }

  function draw() {
    clearInterval(timer);
    timer = null;
    const hold = state.hold;
    if (state.notice) notice[state.notice.kind](state.notice.text);
    else notice.clear();
    if (!hold && !state.result && !state.notice) {
      element.hidden = true;
      element.replaceChildren();
      return;
    }
    element.hidden = false;
    if (!hold && !state.result) {
      const ok = dismiss('OK', 'secondary dismiss', () => {
        state.notice = null;
        render();
      });
      element.replaceChildren(h('h2', { id: 'hold-title' }, 'Message'), notice.element, h('div', { class: 'actions' }, ok));
      return;
    }
    if (!hold) {
      const close = dismiss('Close', 'secondary', () => {
        state.result = null;
        render();
      });
      element.replaceChildren(...present(
        h('h2', { id: 'hold-title' }, 'Done'),
        state.notice ? notice.element : null,
        h('p', { class: 'message success', role: 'status' }, state.result.text),
        h('div', { class: 'actions' }, h('a', { href: '#/mine', class: 'button after-book' }, 'See my appointments'), close),
      ));
      return;
    }
    renderHold(hold);
  }

  function renderHold(hold) {
    const busy = state.pendingKey === hold.key;
    const moving = state.reschedule;
    const blocked = busy ? '1' : '0';
    const confirmButton = h(
      'button',
      { type: 'button', class: 'confirm', onclick: confirm, dataset: { needsLive: '', blocked } },
      busy ? 'Confirming…' : moving ? 'Move my appointment here' : 'Confirm booking',
    );
    const cancelButton = h(
      'button',
      { type: 'button', class: 'secondary release', onclick: () => release(), dataset: { needsLive: '', blocked } },
      'Cancel',
    );
    element.replaceChildren(...present(
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
      state.policy && !moving ? h('p', { class: 'policy-note' }, cancelUntil(state.policy, hold.start)) : null,
      h('div', { class: 'actions' }, confirmButton, cancelButton),
    ));
    syncLiveActions(element, live.isLive);
    if (hold.expiresAt) timer = setInterval(tick, 500);
  }

  return { element, render, pick, release, drop };
}
