// The waitlist in the patient's pages: a card under the booking calendar to wait for an
// earlier or a better time with the doctor, and on "My appointments" the patient's waitlists
// with their place in line and any offer: a freed slot held for them for a few minutes, to
// accept or decline. Offers arrive live (the hub's `offer` event) and count down.

import { del, get, post } from '../api.js';
import { doctorName } from '../labels.js';
import { announce, countdown, field, formatLongDay, formatTime, h, localDate, messageBox, parseLocalDate, plain, present, showFieldErrors, syncLiveActions, addDays } from '../ui.js';

const TIMES = {
  any: [],
  morning: [{ start: '00:00', end: '12:00' }],
  afternoon: [{ start: '12:00', end: '24:00' }],
};

function when(start, end) {
  const from = new Date(start);
  return `${formatLongDay(from)}, ${formatTime(from)}–${formatTime(new Date(end))}`;
}

/** The booking page's card: join the chosen doctor's waitlist for a range of dates. */
export function joinCard(page) {
  const { state, life } = page;
  const message = messageBox('waitlist-message');
  const from = h('input', { type: 'date', name: 'from', required: true });
  const to = h('input', { type: 'date', name: 'to', required: true });
  const times = h(
    'select',
    { name: 'times' },
    h('option', { value: 'any' }, 'Any time of day'),
    h('option', { value: 'morning' }, 'Mornings'),
    h('option', { value: 'afternoon' }, 'Afternoons'),
  );
  const submit = h('button', { type: 'submit', class: 'secondary' }, 'Join the waitlist');
  const form = h(
    'form',
    { class: 'waitlist-form', novalidate: true, onsubmit: (event) => join(event) },
    h('div', { class: 'field-row' }, field('From', from, { name: 'from' }), field('To', to, { name: 'to' })),
    field('Times', times, { name: 'times' }),
    h('div', { class: 'actions' }, submit),
  );
  const element = h(
    'section',
    { class: 'card waitlist-card', id: 'waitlist-card', 'aria-labelledby': 'waitlist-title', hidden: true },
    h('h2', { id: 'waitlist-title' }, 'No time that suits you?'),
    h(
      'p',
      { class: 'hint' },
      'Join the waitlist: when a time in your dates frees up, it is held for you for a few minutes and you can take it with one click.',
    ),
    form,
    message.element,
  );

  let edited = false; // the patient's own dates stay; otherwise they follow the week shown
  for (const input of [from, to]) input.addEventListener('input', () => (edited = true));

  function render() {
    element.hidden = !state.doctorId || Boolean(state.reschedule);
    if (element.hidden || edited) return;
    from.value = localDate(new Date(Math.max(state.week, Date.now())));
    to.value = localDate(addDays(state.week, 6));
  }

  async function join(event) {
    event.preventDefault();
    message.clear();
    submit.disabled = true;
    try {
      const entry = await post('/waitlist', {
        doctor_id: state.doctorId,
        from: from.value,
        to: to.value,
        times: TIMES[times.value],
      });
      if (life.disposed) return;
      const text = entry.offer
        ? `A time is free now and held for you: ${when(entry.offer.start, entry.offer.end)}. Accept it in My appointments.`
        : `You are on the waitlist, number ${entry.position} in line. We will hold a time for you when one frees up.`;
      message.success(text);
      message.element.append(' ', h('a', { href: '#/mine' }, 'See My appointments'));
      announce(text);
    } catch (error) {
      if (life.disposed) return;
      showFieldErrors(form, error.fields || []);
      message.error(plain(error));
    } finally {
      submit.disabled = false;
    }
  }

  return { element, render };
}

/** "My appointments": the patient's waitlists and their offers, live. */
export function waitlistSection(ctx, life, { onBooked }) {
  const { live } = ctx;
  const message = messageBox('waitlist-section-message');
  const list = h('ul', { class: 'waitlist', id: 'waitlists', 'aria-labelledby': 'waitlists-title' });
  const element = h(
    'section',
    { class: 'card', id: 'waitlist-section', hidden: true },
    h('h2', { id: 'waitlists-title' }, 'Waitlists'),
    message.element,
    list,
  );
  let entries = [];
  let doctors = new Map();
  const timer = setInterval(tick, 1000);
  life.defer(() => clearInterval(timer));

  function tick() {
    for (const clock of list.querySelectorAll('[data-expires]')) {
      const left = new Date(clock.dataset.expires) - Date.now();
      clock.textContent = left > 0 ? `held for you for ${countdown(left)}` : 'the offer has run out';
    }
  }

  function row(entry) {
    const doctor = doctors.get(entry.doctor_id);
    const name = doctor ? doctorName(doctor) : `Doctor ${entry.doctor_id}`;
    const day = (text) => formatLongDay(parseLocalDate(text));
    const range = entry.from === entry.to ? day(entry.from) : `${day(entry.from)} to ${day(entry.to)}`;
    const feedback = messageBox(`entry-${entry.id}-message`);
    const leave = h(
      'button',
      { type: 'button', class: 'secondary', dataset: { key: `leave-${entry.id}` }, onclick: () => act(() => del(`/waitlist/${entry.id}`), 'You left the waitlist.') },
      'Leave the waitlist',
    );
    const li = h(
      'li',
      { class: 'waitlist-entry', dataset: { entryId: String(entry.id) } },
      h('p', { class: 'appt-who' }, name),
      h('p', {}, `Waiting for ${range}`, entry.appointment_id ? ' (an earlier time than your appointment)' : ''),
      h('p', { class: 'muted' }, entry.offer ? 'A time is held for you' : `Number ${entry.position} in line`),
    );
    if (entry.offer) {
      const offer = entry.offer;
      const accept = h(
        'button',
        {
          type: 'button',
          class: 'accept-offer',
          dataset: { key: `accept-${offer.offer_id}` },
          onclick: () => act(() => post(`/waitlist/offers/${offer.offer_id}/accept`), `Booked: ${when(offer.start, offer.end)}.`, true),
        },
        'Accept this time',
      );
      const decline = h(
        'button',
        {
          type: 'button',
          class: 'secondary decline-offer',
          dataset: { key: `decline-${offer.offer_id}` },
          onclick: () => act(() => post(`/waitlist/offers/${offer.offer_id}/decline`), 'Declined. You stay on the waitlist.'),
        },
        'Decline',
      );
      li.append(
        h(
          'div',
          { class: 'offer', role: 'group', 'aria-label': 'A time offered to you' },
          h('p', { class: 'offer-when' }, h('strong', {}, when(offer.start, offer.end))),
          h('p', { class: 'muted offer-clock', dataset: { expires: offer.expires_at } }, ''),
          h('div', { class: 'actions' }, accept, decline),
        ),
      );
    } else {
      li.append(h('div', { class: 'actions' }, leave));
    }
    li.append(feedback.element);
    return li;

    async function act(call, done, booked = false) {
      feedback.clear();
      for (const button of li.querySelectorAll('button')) button.disabled = true;
      try {
        await call();
        message.success(done);
        announce(done);
        if (booked && onBooked) onBooked();
      } catch (error) {
        feedback.error(plain(error));
      }
      await load();
    }
  }

  function draw() {
    element.hidden = entries.length === 0 && message.element.hidden;
    list.replaceChildren(...entries.map(row));
    tick();
    syncLiveActions(element, live.isLive);
  }

  async function load() {
    try {
      const [mine, all] = await Promise.all([get('/waitlist'), doctors.size ? null : get('/doctors/')]);
      if (life.disposed) return;
      if (all) doctors = new Map(all.map((d) => [d.id, d]));
      entries = mine;
      draw();
    } catch (error) {
      if (!life.disposed) message.error(`Your waitlists could not be loaded. ${plain(error)}`);
    }
  }

  life.listen(live, 'offer', (event) => {
    if (event.state === 'open') {
      const text = `A time is held for you: ${when(event.start, event.end)}. Accept it below.`;
      message.info(text);
      announce(text);
    }
    load();
  });
  life.listen(live, 'ready', ({ resumed }) => {
    if (resumed) load();
  });
  load();
  return present(element)[0];
}
