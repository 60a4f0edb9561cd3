// Steps 1 and 2 of booking: a specialization, then one of its doctors. On a phone the two
// fold into one line once a doctor is chosen, so that the calendar comes up near the top.

import { get } from '../../api.js';
import { doctorName } from '../../labels.js';
import { announce, h, keepFocus, plain } from '../../ui.js';

function choice(key, label, pressed, onclick, extra) {
  return h(
    'button',
    { type: 'button', class: 'choice', 'aria-pressed': pressed ? 'true' : 'false', onclick, dataset: { key } },
    h('span', { class: 'choice-label' }, label),
    extra ? h('span', { class: 'choice-extra' }, extra) : null,
  );
}

export function pickers(page) {
  const { state, life } = page;
  const specs = h('div', { class: 'choices', role: 'group', 'aria-labelledby': 'spec-title' });
  const doctors = h('div', { class: 'choices doctors', role: 'group', 'aria-labelledby': 'doctor-title' });
  const picked = h('div', { class: 'picked', id: 'picked' });
  let expanded = false; // the patient asked to see the choices again

  function renderPicked() {
    const container = picked.parentElement;
    const doctor = state.doctorId && (state.doctors || []).find((d) => d.id === state.doctorId);
    if (container) container.classList.toggle('collapsed', Boolean(doctor) && !expanded);
    if (!doctor) {
      picked.replaceChildren();
      return;
    }
    const change = h('button', { type: 'button', class: 'secondary small', onclick: () => {
      expanded = true;
      renderPicked();
      const first = container && container.querySelector('.choice[aria-pressed="true"], .choice');
      if (first) first.focus();
    } }, 'Change', h('span', { class: 'visually-hidden' }, ' the specialization or doctor'));
    picked.replaceChildren(
      h('p', { class: 'picked-names' }, h('strong', {}, doctorName(doctor))), // its specialization: below
      change,
    );
  }

  function renderSpecs() {
    keepFocus(specs, drawSpecs);
  }

  function drawSpecs() {
    if (!state.specs.length) {
      specs.replaceChildren(h('p', { class: 'muted' }, 'Loading specializations…'));
      return;
    }
    specs.replaceChildren(
      ...state.specs.map((spec) =>
        choice(`spec-${spec.id}`, spec.name, spec.id === state.specId, () => chooseSpec(spec.id)),
      ),
    );
  }

  function renderDoctors() {
    keepFocus(doctors, drawDoctors);
    renderPicked();
  }

  function drawDoctors() {
    if (!state.specId) {
      doctors.replaceChildren(h('p', { class: 'muted' }, 'Choose a specialization first.'));
      return;
    }
    if (state.doctors === null) {
      doctors.replaceChildren(h('p', { class: 'muted' }, 'Loading doctors…'));
      return;
    }
    if (!state.doctors.length) {
      doctors.replaceChildren(h('p', { class: 'muted' }, 'No doctors offer this specialization yet.'));
      return;
    }
    doctors.replaceChildren(
      ...state.doctors.map((doctor) =>
        choice(`doctor-${doctor.id}`, doctorName(doctor), doctor.id === state.doctorId, () => chooseDoctor(doctor.id), doctor.address),
      ),
    );
  }

  async function loadSpecs() {
    try {
      state.specs = await get('/specializations/', { auth: false });
    } catch (error) {
      if (!life.disposed) page.message.error(`The specializations could not be loaded. ${plain(error)}`);
      return;
    }
    if (life.disposed) return;
    renderSpecs();
    if (state.specId) await loadDoctors();
  }

  async function loadDoctors() {
    state.doctors = null;
    renderDoctors();
    let list;
    try {
      list = await get(`/doctors/?specialization_id=${state.specId}`, { auth: false });
    } catch (error) {
      if (!life.disposed) page.message.error(`The doctors could not be loaded. ${plain(error)}`);
      state.doctors = [];
      return;
    }
    if (life.disposed) return;
    state.doctors = list;
    renderDoctors();
    if (state.doctorId && list.some((d) => d.id === state.doctorId)) {
      page.startWatching();
    } else {
      state.doctorId = null;
      page.calendar.render();
    }
  }

  function chooseSpec(id) {
    if (id === state.specId) return;
    page.message.clear();
    state.notice = null;
    page.leaveDoctor();
    state.specId = id;
    state.doctorId = null;
    renderSpecs();
    page.calendar.render();
    page.remember();
    loadDoctors();
  }

  function chooseDoctor(id) {
    expanded = false;
    if (id === state.doctorId) {
      renderPicked();
      return;
    }
    page.message.clear();
    state.notice = null;
    page.leaveDoctor();
    state.doctorId = id;
    renderDoctors();
    page.startWatching();
    announce(`${doctorName(state.doctors.find((d) => d.id === id))} selected. Loading times.`);
  }

  return { specs, doctors, picked, renderSpecs, renderDoctors, loadSpecs };
}
