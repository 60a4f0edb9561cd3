// The front desk: find a patient (name, email, phone or date of birth), register one who calls
// or walks in, see their appointments, book a free time with a doctor for them, and cancel one
// with the reason they are told. Opened from the clinic's day (?doctor=&date=), the booking
// starts with that doctor and day.

import { get, post, put } from '../api.js';
import { doctorName, personName, statusLabel } from '../labels.js';
import { announce, clearFieldErrors, field, formatWhen, h, messageBox, parseLocalDate, plain, present, showFieldErrors } from '../ui.js';
import { defineView, flashNote } from '../view.js';

export const mount = defineView((view, ctx, life) => {
  const message = messageBox('desk-message');
  const query = h('input', { type: 'search', name: 'q', autocomplete: 'off', maxlength: '100' });
  const search = h(
    'form',
    { class: 'form inline-form', role: 'search', 'aria-labelledby': 'find-title', novalidate: true },
    h('h2', { id: 'find-title' }, 'Find a patient'),
    field('Name, email, phone or date of birth', query, { name: 'q' }),
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Search')),
  );
  const results = h('div', { id: 'desk-results' });
  const chosen = h('section', { id: 'desk-patient', class: 'card', hidden: true, 'aria-live': 'polite' });
  const registration = registerForm();
  const asked = ctx.params.get('doctor') || '';
  const wanted = {
    doctor: /^\d+$/.test(asked) ? Number(asked) : null,
    date: parseLocalDate(ctx.params.get('date')) ? ctx.params.get('date') : '',
  };
  view.append(...present(
    h('h1', { tabindex: '-1' }, 'Front desk'),
    flashNote(ctx),
    wanted.doctor
      ? h('p', { class: 'message info', id: 'desk-wanted' }, `Booking from the clinic's day${wanted.date ? ` on ${wanted.date}` : ''}: find or register the patient, then pick a free time. `,
        h('a', { href: `#/day${wanted.date ? `?date=${wanted.date}` : ''}` }, "Back to the clinic's day"))
      : null,
    message.element,
    h('section', { class: 'card' }, search, results),
    chosen,
    h('section', { class: 'card', 'aria-labelledby': 'register-title' }, registration),
  ));

  search.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(search);
    try {
      const found = await get(`/patients/?q=${encodeURIComponent(query.value.trim())}`);
      if (life.disposed) return;
      results.replaceChildren(
        found.length
          ? h('ul', { class: 'plain-list' }, found.map((p) => h('li', {},
            h('button', { type: 'button', class: 'link', dataset: { patientId: String(p.id) }, onclick: () => choose(p) },
              `${personName(p)} · born ${p.date_of_birth} · ${p.phone} · ${p.email}`))))
          : h('p', { class: 'muted' }, 'Nobody matches. Register them below.'),
      );
    } catch (error) {
      if (error.fields && error.fields.length) showFieldErrors(search, error.fields);
      else message.error(plain(error));
    }
  });

  async function choose(patient) {
    chosen.hidden = false;
    chosen.dataset.patientId = String(patient.id);
    const doctors = await get('/doctors/');
    if (life.disposed) return;
    const doctor = h('select', { name: 'doctor_id' }, doctors.map((d) => h('option', { value: String(d.id) }, doctorName(d))));
    const day = h('input', { type: 'date', name: 'date', required: true, value: wanted.date || null });
    if (wanted.doctor && doctors.some((d) => d.id === wanted.doctor)) doctor.value = String(wanted.doctor);
    const times = h('div', { class: 'desk-times' });
    const note = messageBox('desk-book-message');
    const list = h('ul', { class: 'plain-list', id: 'desk-appointments' });
    const booking = h('form', { class: 'form inline-form', novalidate: true },
      h('h3', {}, 'Book for them'), field('Doctor', doctor), field('Day', day),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Show free times')), times, note.element);
    chosen.replaceChildren(h('h2', {}, personName(patient)), booking, h('h3', {}, 'Their appointments'), list);

    async function showAppointments() {
      const rows = await get(`/appointments/patient/${patient.id}`);
      if (life.disposed) return;
      list.replaceChildren(...(rows.length ? rows.map((a) => appointmentRow(a, showAppointments)) : [h('li', { class: 'muted' }, 'None yet.')]));
    }

    booking.addEventListener('submit', async (event) => {
      event.preventDefault();
      note.clear();
      if (!day.value) {
        showFieldErrors(booking, [{ field: 'date', message: 'Pick a day' }]);
        return;
      }
      try {
        const free = await get(`/appointments/doctor/${doctor.value}/available-slots?date=${day.value}`);
        times.replaceChildren(...(free.slots.length
          ? free.slots.map((start) => h('button', { type: 'button', class: 'secondary', onclick: () => book(start) }, formatWhen(new Date(start))))
          : [h('p', { class: 'muted' }, 'No free time that day.')]), waitlistOffer());
      } catch (error) {
        note.error(plain(error));
      }
    });

    // Nothing that suits the caller: put them on the doctor's waitlist for the day (urgent
    // ones go first); a time that frees up is held for them and offered on their page.
    function waitlistOffer() {
      const urgent = h('input', { type: 'checkbox', name: 'urgent', id: 'desk-urgent' });
      return h('div', { class: 'desk-waitlist' },
        h('label', { for: urgent.id, class: 'check' }, urgent, ' Urgent'),
        h('button', { type: 'button', class: 'secondary', id: 'desk-wait', onclick: () => wait(urgent.checked) }, 'Put on the waitlist for this day'));
    }

    async function wait(urgent) {
      note.clear();
      try {
        const entry = await post('/waitlist', { doctor_id: Number(doctor.value), from: day.value, to: day.value, patient_id: patient.id, urgent });
        const text = entry.offer
          ? `A time is free: ${formatWhen(new Date(entry.offer.start))} is held for them; they accept it on their page, or book it here.`
          : `On the waitlist, number ${entry.position} in line.`;
        note.success(text);
        announce(text);
      } catch (error) {
        note.error(plain(error));
      }
    }

    async function book(start) {
      try {
        const made = await post('/appointments/', { doctor_id: Number(doctor.value), scheduled_datetime: start, patient_id: patient.id });
        note.success(`Booked for ${formatWhen(new Date(made.scheduled_datetime))}.`);
        announce('Booked.');
        times.replaceChildren();
        await showAppointments();
      } catch (error) {
        note.error(plain(error));
      }
    }

    if (wanted.doctor && wanted.date) booking.requestSubmit(); // the free times of that day, at once
    await showAppointments();
  }

  function appointmentRow(appointment, refresh) {
    const row = h('li', { dataset: { appointmentId: String(appointment.id), status: appointment.status } },
      `${formatWhen(new Date(appointment.scheduled_datetime))} · ${doctorName(appointment.doctor)} · ${statusLabel(appointment.status)}`);
    if (appointment.status !== 'scheduled' || new Date(appointment.scheduled_datetime) <= new Date()) return row;
    const reason = h('input', { type: 'text', name: 'reason', maxlength: '500', autocomplete: 'off' });
    const form = h('form', { class: 'form inline-form', novalidate: true },
      field('Reason the patient is told', reason), h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'danger' }, 'Cancel it')));
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      try {
        await put(`/appointments/${appointment.id}/cancel`, { reason: reason.value.trim() });
        announce('Cancelled.');
        await refresh();
      } catch (error) {
        if (error.fields && error.fields.length) showFieldErrors(form, error.fields);
        else message.error(plain(error));
      }
    });
    row.append(form);
    return row;
  }

  function registerForm() {
    const inputs = {
      first_name: h('input', { type: 'text', name: 'first_name', maxlength: '50' }),
      last_name: h('input', { type: 'text', name: 'last_name', maxlength: '50' }),
      date_of_birth: h('input', { type: 'date', name: 'date_of_birth' }),
      gender: h('select', { name: 'gender' }, ['undisclosed', 'female', 'male', 'other'].map((g) => h('option', { value: g }, g))),
      email: h('input', { type: 'email', name: 'email', maxlength: '100' }),
      phone: h('input', { type: 'tel', name: 'phone', maxlength: '20' }),
    };
    const done = messageBox('register-message');
    const form = h('form', { class: 'form', novalidate: true },
      h('h2', { id: 'register-title' }, 'Register a patient who calls'),
      field('First name', inputs.first_name), field('Last name', inputs.last_name),
      field('Date of birth', inputs.date_of_birth), field('Gender', inputs.gender),
      field('Email address', inputs.email), field('Phone', inputs.phone),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Register')), done.element);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(form);
      done.clear();
      const body = Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value.trim()]));
      try {
        const patient = await post('/staff/patients', body);
        done.success(`${personName(patient)} is registered.`);
        choose(patient);
      } catch (error) {
        if (error.fields && error.fields.length) showFieldErrors(form, error.fields);
        else done.error(plain(error));
      }
    });
    return form;
  }
});
