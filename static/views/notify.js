// Which emails a person gets: a card of checkboxes, one per kind that may be turned off (a
// cancellation is always sent). Each change is saved at once.

import { get, put } from '../api.js';
import { announce, h, messageBox, plain } from '../ui.js';

const KINDS = [
  ['booked', 'Confirmation when an appointment is booked'],
  ['rescheduled', 'When an appointment is moved'],
  ['reminder', 'Reminders before an appointment'],
  ['offer', 'When a waitlist time is held for me'],
];

/** The card for `/patients/{id}` or `/doctors/{id}` (path without /notifications). */
export function preferencesCard(path, life) {
  const message = messageBox('notify-message');
  const boxes = new Map();
  const list = h('div', { class: 'notify-kinds' });
  for (const [kind, label] of KINDS) {
    const box = h('input', { type: 'checkbox', id: `notify-${kind}`, name: kind, onchange: () => save(kind, box) });
    boxes.set(kind, box);
    list.append(h('label', { class: 'check', for: box.id }, box, ` ${label}`));
  }
  const element = h(
    'section',
    { class: 'card', id: 'notify-card', 'aria-labelledby': 'notify-title' },
    h('h2', { id: 'notify-title' }, 'Email notifications'),
    h('p', { class: 'hint' }, 'A cancellation is always sent.'),
    list,
    message.element,
  );

  async function save(kind, box) {
    message.clear();
    try {
      await put(`${path}/notifications`, { [kind]: box.checked });
      if (life.disposed) return;
      announce(`${box.checked ? 'On' : 'Off'}: ${KINDS.find(([k]) => k === kind)[1]}.`);
    } catch (error) {
      box.checked = !box.checked;
      message.error(plain(error));
    }
  }

  (async () => {
    try {
      const prefs = await get(`${path}/notifications`);
      if (life.disposed) return;
      for (const [kind, box] of boxes) box.checked = Boolean(prefs[kind]);
    } catch (error) {
      if (!life.disposed) message.error(plain(error));
    }
  })();
  return element;
}
