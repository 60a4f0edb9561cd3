// Sign in (patients, doctors, admins) and registration (patients, doctors).

import { get, post, signIn } from '../api.js';
import { clearFieldErrors, field, h, messageBox, plain, showFieldErrors, present, zone } from '../ui.js';
import { defineView, flashNote } from '../view.js';

const HOME = { patient: 'book', doctor: 'dashboard', admin: 'admin', staff: 'desk' };

/** "I am": one radio button per role. */
export function roleChoice(name, roles, selected, onChange) {
  const legendId = `${name}-legend`;
  return h(
    'fieldset',
    { class: 'role-choice', dataset: { field: 'role' } },
    h('legend', { id: legendId }, 'I am'),
    roles.map(([value, label]) =>
      h(
        'label',
        { class: 'radio' },
        h('input', {
          type: 'radio',
          name,
          value,
          checked: value === selected,
          onchange: () => onChange && onChange(value),
        }),
        ` ${label}`,
      ),
    ),
  );
}

export const login = defineView((view, ctx) => {
  const role = ['patient', 'doctor', 'admin', 'staff'].includes(ctx.params.get('role'))
    ? ctx.params.get('role')
    : 'patient';
  const message = messageBox('login-message');
  const email = h('input', { type: 'email', name: 'username', autocomplete: 'username', required: true });
  const password = h('input', {
    type: 'password',
    name: 'password',
    autocomplete: 'current-password',
    required: true,
  });
  const submit = h('button', { type: 'submit' }, 'Sign in');
  // The reset page asks for the role again: it starts at the one chosen here.
  const forgot = h('a', { href: '#/forgot', id: 'forgot-link' }, 'Forgot your password?');
  forgot.addEventListener('click', () => {
    const chosen = form.querySelector('input[name="login-role"]:checked');
    forgot.href = `#/forgot?role=${chosen ? chosen.value : 'patient'}`;
  });
  const form = h(
    'form',
    { class: 'card form narrow', novalidate: true, 'aria-labelledby': 'login-title' },
    roleChoice('login-role', [
      ['patient', 'a patient'],
      ['doctor', 'a doctor'],
      ['admin', 'an administrator'],
      ['staff', 'the front desk'],
    ], role),
    field('Email address', email),
    field('Password', password),
    message.element,
    h('div', { class: 'actions' }, submit),
    h('p', { class: 'forgot' }, forgot),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    message.clear();
    const missing = [];
    if (!email.value.trim()) missing.push({ field: 'username', message: 'Please enter your email address' });
    if (!password.value) missing.push({ field: 'password', message: 'Please enter your password' });
    if (missing.length) {
      showFieldErrors(form, missing);
      return;
    }
    const chosen = form.querySelector('input[name="login-role"]:checked').value;
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      const me = await signIn(chosen, email.value.trim(), password.value);
      ctx.navigate(HOME[me.role]);
    } catch (error) {
      const who = { patient: 'a patient', doctor: 'a doctor', admin: 'an administrator', staff: 'a front-desk' }[chosen];
      message.error(
        error.code === 'invalid_credentials'
          ? `That email and password do not match ${who}'s account. Check both, and whether you are signing in as ${who}.`
          : plain(error),
      );
      if (error.fields && error.fields.length) showFieldErrors(form, error.fields);
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = 'Sign in';
    }
  });
  view.append(...present(
    h('h1', { id: 'login-title', tabindex: '-1' }, 'Sign in'),
    flashNote(ctx),
    form,
    h('p', { class: 'narrow' }, 'New here? ', h('a', { href: '#/register' }, 'Create an account'), '.'),
  ));
});

export const register = defineView((view, ctx, life) => {
  let role = ctx.params.get('role') === 'doctor' ? 'doctor' : 'patient';
  const message = messageBox('register-message');
  const input = (name, attrs = {}) => h('input', { name, ...attrs });
  const first = input('first_name', { autocomplete: 'given-name', required: true });
  const last = input('last_name', { autocomplete: 'family-name', required: true });
  const born = input('date_of_birth', { type: 'date', autocomplete: 'bday', required: true });
  const gender = h(
    'select',
    { name: 'gender', required: true },
    h('option', { value: '' }, 'Choose…'),
    h('option', { value: 'female' }, 'Female'),
    h('option', { value: 'male' }, 'Male'),
    h('option', { value: 'other' }, 'Other'),
    h('option', { value: 'undisclosed' }, 'Prefer not to say'),
  );
  const email = input('email', { type: 'email', autocomplete: 'email', required: true });
  const phone = input('phone', { type: 'tel', autocomplete: 'tel', required: true });
  const address = input('address', { autocomplete: 'street-address' });
  const password = input('password', { type: 'password', autocomplete: 'new-password', required: true });
  const specialization = h('select', { name: 'specialization_id' }, h('option', { value: '' }, 'Loading…'));
  const specField = field('Specialization', specialization);
  specField.hidden = role !== 'doctor';
  const submit = h('button', { type: 'submit' }, 'Create account');
  const form = h(
    'form',
    { class: 'card form', novalidate: true, 'aria-labelledby': 'register-title' },
    roleChoice(
      'register-role',
      [
        ['patient', 'a patient'],
        ['doctor', 'a doctor'],
      ],
      role,
      (value) => {
        role = value;
        specField.hidden = role !== 'doctor';
      },
    ),
    h(
      'div',
      { class: 'grid-2' },
      field('First name', first),
      field('Last name', last),
      field('Date of birth', born),
      field('Gender', gender),
      field('Email address', email),
      field('Phone', phone, { hint: 'For example +44 20 7946 0000' }),
    ),
    field('Address (optional)', address),
    specField,
    field('Password', password, { hint: 'At least 8 characters' }),
    message.element,
    h('div', { class: 'actions' }, submit),
  );
  get('/specializations/', { auth: false })
    .then((items) => {
      if (life.disposed) return;
      specialization.replaceChildren(
        h('option', { value: '' }, 'Choose…'),
        ...items.map((item) => h('option', { value: String(item.id) }, item.name)),
      );
    })
    .catch((error) => {
      if (!life.disposed) message.error(`The specializations could not be loaded. ${plain(error)}`);
    });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    message.clear();
    const body = {
      first_name: first.value.trim(),
      last_name: last.value.trim(),
      date_of_birth: born.value,
      gender: gender.value,
      email: email.value.trim(),
      phone: phone.value.trim(),
      address: address.value.trim() || null,
      timezone: zone, // this browser's: the zone the hub's messages are written in
      password: password.value,
    };
    const missing = [];
    const labels = {
      first_name: 'your first name',
      last_name: 'your last name',
      date_of_birth: 'your date of birth',
      gender: 'an option',
      email: 'your email address',
      phone: 'your phone number',
      password: 'a password',
    };
    for (const [name, label] of Object.entries(labels)) {
      if (!body[name]) missing.push({ field: name, message: `Please enter ${label}` });
    }
    if (role === 'doctor') {
      if (!specialization.value) missing.push({ field: 'specialization_id', message: 'Please choose a specialization' });
      else body.specialization_id = Number(specialization.value);
    }
    if (missing.length) {
      message.error('Some details are missing. Please check the highlighted fields.');
      showFieldErrors(form, missing);
      return;
    }
    submit.disabled = true;
    submit.textContent = 'Creating account…';
    try {
      await post(`/${role}s/`, body, { auth: false });
      const me = await signIn(role, body.email, body.password);
      ctx.setFlash(`Welcome, ${me.name}. Your account is ready.`);
      ctx.navigate(HOME[me.role]);
    } catch (error) {
      if (error.code === 'email_taken') {
        showFieldErrors(form, [{ field: 'email', message: 'An account with this email address already exists' }]);
        message.error(plain(error));
      } else if (error.fields && error.fields.length) {
        const unplaced = showFieldErrors(form, error.fields);
        message.error(['Please check the highlighted fields.', ...unplaced].join(' '));
      } else {
        message.error(plain(error));
      }
    } finally {
      submit.disabled = false;
      submit.textContent = 'Create account';
    }
  });
  view.append(...present(
    h('h1', { id: 'register-title', tabindex: '-1' }, 'Create an account'),
    form,
    h('p', {}, 'Already registered? ', h('a', { href: '#/login' }, 'Sign in'), '.'),
  ));
});
