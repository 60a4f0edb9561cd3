// Administration: specializations (add, rename, remove), doctors and patients.

import { del, get, post, put } from '../api.js';
import { doctorName, personName } from '../labels.js';
import { announce, clearFieldErrors, field, h, messageBox, plain, showFieldErrors, syncLiveActions, present } from '../ui.js';
import { defineView, flashNote } from '../view.js';

function table(caption, columns, rows, id) {
  return h(
    'div',
    { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-labelledby': `${id}-caption` },
    h(
      'table',
      { id },
      h('caption', { id: `${id}-caption`, class: 'visually-hidden' }, caption),
      h('thead', {}, h('tr', {}, columns.map(([label]) => h('th', { scope: 'col' }, label)))),
      h(
        'tbody',
        {},
        rows.length
          ? rows.map((row) => h('tr', {}, columns.map(([label, get]) => h('td', { 'data-label': label }, get(row) ?? '—'))))
          : h('tr', {}, h('td', { colspan: String(columns.length) }, 'None yet.')),
      ),
    ),
  );
}

export const mount = defineView((view, ctx, life) => {
  const { live } = ctx;
  const message = messageBox('admin-message');
  const specs = h('div', { id: 'specializations' }, h('p', { class: 'muted' }, 'Loading…'));
  const doctors = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const patients = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  const name = h('input', { type: 'text', name: 'name', maxlength: '50', autocomplete: 'off' });
  const add = h('button', { type: 'submit', dataset: { needsLive: '' } }, 'Add specialization');
  const formMessage = messageBox('spec-message');
  const form = h(
    'form',
    { class: 'form inline-form', novalidate: true, 'aria-labelledby': 'add-spec-title' },
    h('h3', { id: 'add-spec-title' }, 'Add a specialization'),
    field('Name', name),
    h('div', { class: 'actions' }, add),
    formMessage.element,
  );
  view.append(...present(
    h('h1', { tabindex: '-1' }, 'Administration'),
    flashNote(ctx),
    message.element,
    h('section', { class: 'card', 'aria-labelledby': 'specs-title' }, h('h2', { id: 'specs-title' }, 'Specializations'), form, specs),
    h('section', { class: 'card', 'aria-labelledby': 'doctors-title' }, h('h2', { id: 'doctors-title' }, 'Doctors'), doctors),
    h('section', { class: 'card', 'aria-labelledby': 'patients-title' }, h('h2', { id: 'patients-title' }, 'Patients'), patients),
    staffSection(),
  ));

  // Front-desk accounts: the list, and a form to add one.
  function staffSection() {
    const list = h('ul', { class: 'plain-list', id: 'staff-list' });
    const inputs = {
      first_name: h('input', { type: 'text', name: 'first_name', maxlength: '50' }),
      last_name: h('input', { type: 'text', name: 'last_name', maxlength: '50' }),
      email: h('input', { type: 'email', name: 'email', maxlength: '100' }),
      password: h('input', { type: 'password', name: 'password', autocomplete: 'new-password' }),
    };
    const note = messageBox('staff-message');
    const add = h('form', { class: 'form', novalidate: true, 'aria-labelledby': 'staff-title' },
      field('First name', inputs.first_name), field('Last name', inputs.last_name),
      field('Email address', inputs.email), field('Password', inputs.password),
      h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Add a front-desk account')), note.element);
    async function load() {
      const rows = await get('/staff/');
      if (!life.disposed) list.replaceChildren(...rows.map((s) => h('li', {}, `${personName(s)} · ${s.email}`)));
    }
    add.addEventListener('submit', async (event) => {
      event.preventDefault();
      clearFieldErrors(add);
      note.clear();
      const body = Object.fromEntries(Object.entries(inputs).map(([k, input]) => [k, input.value.trim()]));
      body.password = inputs.password.value;
      try {
        const made = await post('/staff/', body);
        note.success(`${personName(made)} can sign in as the front desk.`);
        await load();
      } catch (error) {
        if (error.fields && error.fields.length) showFieldErrors(add, error.fields);
        else note.error(plain(error));
      }
    });
    load().catch((error) => message.error(plain(error)));
    return h('section', { class: 'card', 'aria-labelledby': 'staff-title' }, h('h2', { id: 'staff-title' }, 'Front desk'), list, add);
  }

  async function loadSpecs() {
    try {
      const items = await get('/specializations/');
      if (life.disposed) return;
      specs.replaceChildren(h('ul', { class: 'spec-list', 'aria-label': 'All specializations' }, items.map(specItem)));
      syncLiveActions(specs, live.isLive);
    } catch (error) {
      if (!life.disposed) specs.replaceChildren(h('p', { class: 'message error', role: 'alert' }, plain(error)));
    }
  }

  // One specialization: its name, Rename (the name becomes a field) and Remove, each
  // answered next to itself.
  function specItem(spec) {
    const item = h('li', { class: 'spec', dataset: { id: String(spec.id) } });
    const said = messageBox(`spec-${spec.id}-message`);
    const button = (text, label, onclick) =>
      h('button', { type: 'button', class: 'secondary small', 'aria-label': `${text} ${label}`, dataset: { needsLive: '' }, onclick }, text);

    function show() {
      item.replaceChildren(
        h('span', { class: 'spec-name' }, spec.name),
        h('span', { class: 'actions' }, button('Rename', spec.name, edit), button('Remove', spec.name, remove)),
        said.element,
      );
      syncLiveActions(item, live.isLive);
    }

    function edit() {
      const input = h('input', { type: 'text', name: 'name', maxlength: '50', autocomplete: 'off', value: spec.name });
      const form = h(
        'form',
        { class: 'form inline-form rename', novalidate: true },
        field(`New name for ${spec.name}`, input),
        h('div', { class: 'actions' }, h('button', { type: 'submit', dataset: { needsLive: '' } }, 'Save name'), button('Cancel', 'renaming', show)),
      );
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        clearFieldErrors(form);
        const value = input.value.trim();
        if (!value) {
          showFieldErrors(form, [{ field: 'name', message: 'Please enter a name' }]);
          return;
        }
        try {
          const renamed = await put(`/specializations/${spec.id}`, { name: value });
          announce(`Renamed to ${renamed.name}.`);
          await Promise.all([loadSpecs(), loadPeople()]);
        } catch (error) {
          const fields = error.code === 'name_taken'
            ? [{ field: 'name', message: 'A specialization with this name already exists' }]
            : error.fields && error.fields.length ? error.fields : [{ field: 'name', message: plain(error) }];
          showFieldErrors(form, fields);
        }
      });
      item.replaceChildren(form);
      syncLiveActions(item, live.isLive);
      input.focus();
    }

    async function remove() {
      said.clear();
      try {
        await del(`/specializations/${spec.id}`);
        announce(`Specialization ${spec.name} removed.`);
        await loadSpecs();
      } catch (error) {
        said.error(
          error.code === 'in_use'
            ? `“${spec.name}” cannot be removed: a doctor has it. Move them to another specialization first.`
            : plain(error),
        );
      }
    }

    show();
    return item;
  }

  async function loadPeople() {
    try {
      const [doctorList, patientList] = await Promise.all([get('/doctors/'), get('/patients/')]);
      if (life.disposed) return;
      doctors.replaceChildren(
        table(
          'Doctors',
          [
            ['Name', doctorName],
            ['Specialization', (d) => d.specialization && d.specialization.name],
            ['Email', (d) => d.email],
            ['Phone', (d) => d.phone],
            ['Status', (d) => (!d.active ? 'Deactivated' : d.approved ? 'Approved' : 'Pending approval')],
            ['Action', (d) => h('span', { class: 'actions' },
              !d.approved && d.active ? action(`Approve ${doctorName(d)}`, 'Approve', `/doctors/${d.id}/approval`, { approved: true }) : null,
              standing('doctors', d, doctorName(d)))],
          ],
          doctorList,
          'doctors-table',
        ),
      );
      patients.replaceChildren(
        table(
          'Patients',
          [
            ['Name', personName],
            ['Email', (p) => p.email],
            ['Phone', (p) => p.phone],
            ['Born', (p) => p.date_of_birth],
            ['Status', (p) => (p.active ? 'Active' : 'Deactivated')],
            ['Action', (p) => standing('patients', p, personName(p))],
          ],
          patientList,
          'patients-table',
        ),
      );
    } catch (error) {
      if (!life.disposed) message.error(`The lists could not be loaded. ${plain(error)}`);
    }
  }

  // A button that changes one account, then reloads the lists.
  function action(label, text, path, body) {
    const button = h('button', { type: 'button', class: 'secondary', 'aria-label': label, dataset: { needsLive: '' } }, text);
    button.addEventListener('click', async () => {
      button.disabled = true;
      try {
        await put(path, body);
        announce(`${label}: done.`);
        await loadPeople();
      } catch (error) {
        message.error(plain(error));
        button.disabled = false;
      }
    });
    return button;
  }

  function standing(kind, person, name) {
    return person.active
      ? action(`Deactivate ${name}`, 'Deactivate', `/${kind}/${person.id}/active`, { active: false })
      : action(`Reactivate ${name}`, 'Reactivate', `/${kind}/${person.id}/active`, { active: true });
  }

  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    formMessage.clear();
    const value = name.value.trim();
    if (!value) {
      showFieldErrors(form, [{ field: 'name', message: 'Please enter a name' }]);
      return;
    }
    add.disabled = true;
    try {
      const created = await post('/specializations/', { name: value });
      formMessage.success(`Added “${created.name}”.`);
      announce(`Specialization ${created.name} added.`);
      name.value = '';
      await loadSpecs();
    } catch (error) {
      if (error.code === 'name_taken') {
        showFieldErrors(form, [{ field: 'name', message: 'A specialization with this name already exists' }]);
      } else if (error.fields && error.fields.length) {
        showFieldErrors(form, error.fields);
      } else {
        formMessage.error(plain(error));
      }
    } finally {
      add.disabled = false;
    }
  });

  loadSpecs();
  loadPeople();
  syncLiveActions(view, live.isLive);
});
