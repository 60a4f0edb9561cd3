// What a slot is to this patient: the hub's state (free, held, booked) seen through their own
// hold, their appointments and the appointment they are moving.

import { formatWhen, instantKey } from '../../ui.js';

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

function duration(minutes) {
  const unit = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  if (minutes % (24 * 60) === 0 && minutes > 24 * 60) return unit(minutes / (24 * 60), 'day');
  if (minutes % 60 === 0) return unit(minutes / 60, 'hour');
  return unit(minutes, 'minute');
}

/** The doctor's cancellation rule in words, before anything is held. */
export function cancelRule(policy) {
  const cutoff = policy.cancel_cutoff_minutes;
  if (!cutoff) return 'Free cancellation until the visit starts.';
  const later = policy.allow_late_cancel
    ? 'Later, you can still cancel, but it is recorded as a late cancellation.'
    : `A visit less than ${duration(cutoff)} away cannot be cancelled online once booked.`;
  return `Free cancellation until ${duration(cutoff)} before the visit. ${later}`;
}

/** The cancellation rule for one slot: until when it can be cancelled for free. */
export function cancelUntil(policy, start) {
  const until = new Date(start.getTime() - policy.cancel_cutoff_minutes * 60000);
  if (until > new Date()) return `Free cancellation until ${formatWhen(until)}.`;
  return policy.allow_late_cancel
    ? 'This visit can only be cancelled late once booked: it is recorded as a late cancellation.'
    : 'This visit cannot be cancelled online once booked.';
}
