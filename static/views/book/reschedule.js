// Moving an appointment: the booking calendar opened with ?reschedule=<id> shows the current
// time, and the hold panel's confirm moves the appointment instead of booking another.

import { get } from '../../api.js';
import { doctorName } from '../../labels.js';
import { announce, formatWhen, h, plain, weekStart } from '../../ui.js';

export function rescheduling(page) {
  const { state, life, params } = page;
  const banner = h('div', { class: 'banner', hidden: true });

  function render() {
    const moving = state.reschedule;
    page.title.textContent = moving ? 'Reschedule an appointment' : 'Book an appointment';
    if (!moving) {
      banner.hidden = true;
      banner.replaceChildren();
      return;
    }
    banner.hidden = false;
    banner.replaceChildren(
      h(
        'p',
        {},
        'You are moving your appointment of ',
        h('strong', {}, formatWhen(new Date(moving.scheduled_datetime))),
        ` with ${doctorName(moving.doctor)}. Pick a free time below, then confirm. Until then your appointment stays as it is.`,
      ),
      h('button', { type: 'button', class: 'secondary', onclick: () => stop() }, 'Stop rescheduling'),
    );
    page.calendar.renderHint();
  }

  function stop({ quiet = false } = {}) {
    state.reschedule = null;
    render();
    page.remember();
    page.calendar.paintAll();
    page.panel.render();
    if (!quiet) announce('Rescheduling stopped. Your appointment is unchanged.');
  }

  /** Find the appointment to move and open its doctor's week. */
  async function prepare() {
    let list;
    try {
      list = await get(`/appointments/patient/${page.me.id}`);
    } catch (error) {
      if (!life.disposed) page.message.error(plain(error));
      return;
    }
    if (life.disposed) return;
    const moving = list.find((item) => item.id === state.rescheduleId);
    if (!moving || moving.status !== 'scheduled') {
      page.message.error('That appointment can no longer be rescheduled.');
      state.rescheduleId = null;
      return;
    }
    state.reschedule = moving;
    state.rescheduleId = null;
    state.doctorId = moving.doctor_id;
    if (!params.get('week')) state.week = weekStart(new Date(moving.scheduled_datetime));
    try {
      const doctor = await get(`/doctors/${moving.doctor_id}`, { auth: false });
      state.specId = doctor.specialization.id;
      state.doctor = doctor;
    } catch {
      // the pickers still work
    }
    render();
  }

  return { banner, render, stop, prepare };
}
