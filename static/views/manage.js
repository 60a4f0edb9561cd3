// The page a link in an email opens (#/manage?token=...): one appointment, its doctor's
// cancellation policy, and Cancel or Reschedule without signing in. The link is the key and
// works once: after a change, or once it has expired, the hub answers 410 and the page says so.

import { get, post } from '../api.js';
import { doctorName, statusLabel } from '../labels.js';
import { announce, field, h, messageBox, plain } from '../ui.js';
import { defineView } from '../view.js';

const GONE = 'This link has been used or has expired. Sign in to manage your appointments.';

function formats(timeZone) {
  const make = (options) => new Intl.DateTimeFormat(undefined, { timeZone, ...options });
  const day = make({ weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' });
  const time = make({ hour: '2-digit', minute: '2-digit' });
  const short = make({ weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' });
  const iso = new Intl.DateTimeFormat('en-CA', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit' });
  return {
    day: (d) => day.format(d),
    time: (d) => time.format(d),
    when: (d) => short.format(d),
    date: (d) => iso.format(d), // YYYY-MM-DD in the doctor's zone
  };
}

export const mount = defineView((view, ctx, life) => {
  const token = ctx.params.get('token') || '';
  const path = `/manage/${encodeURIComponent(token)}`;
  const message = messageBox('manage-message');
  const body = h('div', { class: 'manage' }, h('p', { class: 'muted' }, 'Loading…'));
  view.append(h('h1', { tabindex: '-1' }, 'Your appointment'), message.element, body);

  function gone() {
    message.clear();
    body.replaceChildren(
      h('div', { class: 'card manage-gone' },
        h('p', { class: 'message info', role: 'status', id: 'manage-gone' }, GONE),
        h('p', {}, h('a', { class: 'button', href: '#/login' }, 'Sign in'))),
    );
  }

  function failed(error) {
    if (error.status === 410) gone();
    else message.error(plain(error));
  }

  function when(item, f) {
    const start = new Date(item.start);
    return `${f.day(start)}, ${f.time(start)}–${f.time(new Date(item.end))}`;
  }

  function cancelNote(item, f) {
    if (item.cancelling === 'free') return `Free cancellation until ${f.when(new Date(item.cancel_until))}.`;
    if (item.cancelling === 'late') return 'Cancelling or moving it now is recorded as a late cancellation.';
    return 'This visit can no longer be cancelled or moved online. Please call the clinic.';
  }

  function summary(item, f) {
    return h('section', { class: 'card manage-appointment', 'aria-labelledby': 'manage-when' },
      h('p', { class: 'appt-when', id: 'manage-when' }, when(item, f)),
      h('p', { class: 'muted' }, `Times are in ${item.timezone}.`),
      h('p', { class: 'appt-who' }, `${doctorName(item.doctor)}, ${item.doctor.specialization.name}`),
      h('p', { class: 'appt-status' }, h('span', { class: `badge status-${item.status}` }, statusLabel(item.status)),
        item.late_cancel ? h('span', { class: 'badge' }, 'Late cancellation') : null),
      h('p', {}, `For ${item.patient_first_name}.`));
  }

  function done(text, item, f) {
    announce(text);
    body.replaceChildren(
      summary(item, f),
      h('div', { class: 'card' },
        h('p', { class: 'message success', role: 'status', id: 'manage-done' }, text),
        h('p', {}, 'This link has now been used. To change the appointment again, use the link in your next email or sign in.')),
    );
    const heading = view.querySelector('h1');
    if (heading) heading.focus();
  }

  function render(item) {
    const f = formats(item.timezone);
    const actions = h('div', { class: 'actions' });
    const policy = h('section', { class: 'card', 'aria-labelledby': 'manage-policy-title' },
      h('h2', { id: 'manage-policy-title' }, 'Cancellation policy'),
      h('p', { id: 'manage-policy' }, item.policy.words),
      h('p', { id: 'manage-cancelling', class: item.cancelling === 'free' ? null : 'warn-text' }, cancelNote(item, f)));
    const moving = h('div', { class: 'manage-move', hidden: true });
    body.replaceChildren(summary(item, f), policy, h('section', { class: 'card' }, actions, moving));
    if (item.cancelling === 'refused') {
      actions.append(h('a', { class: 'button secondary', href: '#/login' }, 'Sign in'));
      return;
    }
    const cancel = h('button', { type: 'button', class: 'danger', onclick: () => ask() }, 'Cancel appointment');
    const reschedule = h('button', { type: 'button', class: 'secondary', onclick: () => pick() }, 'Reschedule');
    actions.append(reschedule, cancel);

    function ask() {
      message.clear();
      moving.hidden = true;
      const reason = h('input', { type: 'text', maxlength: '500', id: 'manage-reason', name: 'reason' });
      const yes = h('button', { type: 'button', class: 'danger', onclick: () => doCancel() }, 'Yes, cancel it');
      const no = h('button', { type: 'button', class: 'secondary', onclick: () => { box.replaceWith(actions); cancel.focus(); } }, 'Keep it');
      const box = h('div', { class: 'confirm-box', role: 'group', 'aria-label': 'Confirm cancellation' },
        h('p', {}, `Cancel your appointment with ${doctorName(item.doctor)} on ${when(item, f)}?`),
        field('Reason (optional)', reason),
        h('div', { class: 'actions' }, yes, no));
      actions.replaceWith(box);
      yes.focus();

      async function doCancel() {
        yes.disabled = true;
        yes.textContent = 'Cancelling…';
        const text = reason.value.trim();
        try {
          const cancelled = await post(`${path}/cancel`, text ? { reason: text } : {}, { auth: false });
          if (life.disposed) return;
          done(`Your appointment on ${when(cancelled, f)} is cancelled.`, cancelled, f);
        } catch (error) {
          if (life.disposed) return;
          box.replaceWith(actions);
          failed(error);
        }
      }
    }

    function pick() {
      message.clear();
      const start = new Date(item.start);
      const today = f.date(new Date());
      const day = h('input', { type: 'date', name: 'date', id: 'manage-day', required: true, min: today, value: f.date(start) });
      const times = h('div', { class: 'manage-times', id: 'manage-times' });
      const form = h('form', { class: 'form', novalidate: true },
        h('h2', {}, 'Pick a new time'),
        field('Day', day, { hint: `Times are in ${item.timezone}.` }),
        h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show free times')),
        times);
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        message.clear();
        if (!day.value) {
          message.error('Pick a day first.');
          return;
        }
        try {
          const free = await get(`${path}/slots?date=${encodeURIComponent(day.value)}`, { auth: false });
          if (life.disposed) return;
          times.replaceChildren(...(free.slots.length
            ? [h('ul', { class: 'time-list' }, free.slots.map((iso) => h('li', {},
              h('button', { type: 'button', class: 'secondary', dataset: { start: iso }, onclick: (e) => move(iso, e.currentTarget) }, f.time(new Date(iso))))))]
            : [h('p', { class: 'muted' }, 'No free time that day. Try another day.')]));
        } catch (error) {
          if (!life.disposed) failed(error);
        }
      });
      moving.replaceChildren(form);
      moving.hidden = false;
      day.focus();
    }

    async function move(iso, button) {
      message.clear();
      button.disabled = true;
      try {
        const moved = await post(`${path}/reschedule`, { start: iso }, { auth: false });
        if (life.disposed) return;
        done(`Your appointment is moved to ${when(moved, f)}.`, moved, f);
      } catch (error) {
        if (life.disposed) return;
        button.disabled = false;
        failed(error);
      }
    }
  }

  async function load() {
    if (!token) {
      gone();
      return;
    }
    try {
      const item = await get(path, { auth: false });
      if (!life.disposed) render(item);
    } catch (error) {
      if (life.disposed) return;
      if (error.status === 410) gone();
      else body.replaceChildren(h('p', { class: 'message error', role: 'alert' }, `The appointment could not be loaded. ${plain(error)}`));
    }
  }

  load();
});
