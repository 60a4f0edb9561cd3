// What a slot is to this patient: the hub's state (free, held, booked) seen through their own
// hold, their appointments and the appointment they are moving.

import { instantKey } from '../../ui.js';

export const LABEL = {
  free: 'Free',
  held: 'Held',
  booked: 'Booked',
  yours: 'Your appointment',
  'your-hold': 'Held for you',
  current: 'Your current time',
};

export const EXPLAIN = {
  held: 'Another patient is holding this time while they confirm. It becomes free again if they do not book it.',
  booked: 'This time is already booked. Please pick a free time.',
  yours: 'You have already booked this time. You can see it under My appointments.',
  current: 'This is the time you are moving away from. Please pick a free time.',
};

/** The kind of the slot at `key` (a LABEL key), or null when the week has no such slot. */
export function kindOf(state, key) {
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
