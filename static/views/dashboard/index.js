// The doctor's dashboard: the day's appointments (appointments.js) beside the working-hours
// editor (hours.js).

import { h, present } from '../../ui.js';
import { defineView, flashNote } from '../../view.js';
import { feedCard } from '../feed.js';
import { preferencesCard } from '../notify.js';
import { appointmentList } from './appointments.js';
import { hoursEditor } from './hours.js';

function skipToHours(event) {
  event.preventDefault();
  const heading = document.getElementById('hours-title');
  if (heading) {
    heading.setAttribute('tabindex', '-1');
    heading.focus();
  }
}

export const mount = defineView((view, ctx, life) => {
  const { live, session: me } = ctx;
  const appointments = appointmentList(view, { live, me, life, slotMinutes: () => hours.slotMinutes() });
  const hours = hoursEditor({ live, me, life, saved: () => appointments.refreshSoon() });
  view.append(...present(
    h('h1', { tabindex: '-1' }, `${me.name}: dashboard`),
    flashNote(ctx),
    h('p', { class: 'muted' }, 'Times are shown in your time zone. ', h('a', { href: '#hours', onclick: skipToHours }, 'Edit working hours')),
    appointments.notice,
    appointments.message.element,
    h('div', { class: 'dashboard-layout' }, appointments.card, hours.card),
    feedCard({ owner: 'doctors', id: me.id, names: true }),
    preferencesCard(`/doctors/${me.id}`, life),
  ));
});
