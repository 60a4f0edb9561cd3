// What the links in the hub's emails open: set a new password (#/reset?token=), verify an
// email address (#/verify?token=); the page that asks for a reset link (#/forgot); and the
// note on a patient's pages while their address is not verified.

import { get, post } from '../api.js';
import { announce, clearFieldErrors, field, h, messageBox, plain, present, showFieldErrors } from '../ui.js';
import { defineView } from '../view.js';
import { roleChoice } from './auth.js';

const ROLES = [
  ['patient', 'a patient'],
  ['doctor', 'a doctor'],
  ['admin', 'an administrator'],
  ['staff', 'the front desk'],
];
const GONE = {
  reset: 'This link has been used already or has expired (a link works once, within the hour).',
  verify: 'This link has expired, or your account has another email address now.',
};

function backToSignIn() {
  return h('p', { class: 'narrow' }, h('a', { href: '#/login' }, 'Back to sign in'));
}

export const forgot = defineView((view, ctx) => {
  const chosen = ctx.params.get('role');
  const role = ROLES.some(([value]) => value === chosen) ? chosen : 'patient';
  const message = messageBox('forgot-message');
  const email = h('input', { type: 'email', name: 'email', autocomplete: 'email', required: true });
  const submit = h('button', { type: 'submit' }, 'Send me a link');
  const form = h(
    'form',
    { class: 'card form narrow', novalidate: true, 'aria-labelledby': 'forgot-title' },
    h('p', {}, 'We will email you a link to set a new password. It works once, within the hour.'),
    roleChoice('forgot-role', ROLES, role),
    field('Email address', email),
    message.element,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    message.clear();
    if (!email.value.trim()) {
      showFieldErrors(form, [{ field: 'email', message: 'Please enter your email address' }]);
      return;
    }
    const whose = form.querySelector('input[name="forgot-role"]:checked').value;
    submit.disabled = true;
    try {
      const answer = await post('/password-reset', { email: email.value.trim(), role: whose }, { auth: false });
      message.success(answer.detail);
      announce(answer.detail);
    } catch (error) {
      message.error(plain(error));
    } finally {
      submit.disabled = false;
    }
  });
  view.append(
    h('h1', { id: 'forgot-title', tabindex: '-1' }, 'Forgot your password?'),
    form,
    backToSignIn(),
  );
});

export const reset = defineView((view, ctx) => {
  const token = ctx.params.get('token') || '';
  const message = messageBox('reset-message');
  const title = h('h1', { id: 'reset-title', tabindex: '-1' }, 'Set a new password');
  if (!token) {
    message.error('This page opens from the link in your email.');
    view.append(title, message.element, h('p', {}, h('a', { href: '#/forgot' }, 'Ask for a new link')));
    return;
  }
  const password = h('input', { type: 'password', name: 'password', autocomplete: 'new-password', required: true });
  const repeat = h('input', { type: 'password', name: 'repeat', autocomplete: 'new-password', required: true });
  const submit = h('button', { type: 'submit' }, 'Set the new password');
  const again = h('p', { hidden: true }, h('a', { href: '#/forgot' }, 'Ask for a new link'));
  const form = h(
    'form',
    { class: 'card form narrow', novalidate: true, 'aria-labelledby': 'reset-title' },
    field('New password', password, { hint: 'At least 8 characters' }),
    field('The same again', repeat),
    message.element,
    again,
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    clearFieldErrors(form);
    message.clear();
    const problems = [];
    if (password.value.length < 8) problems.push({ field: 'password', message: 'Please choose at least 8 characters' });
    else if (password.value !== repeat.value) problems.push({ field: 'repeat', message: 'The two passwords differ' });
    if (problems.length) {
      showFieldErrors(form, problems);
      return;
    }
    submit.disabled = true;
    try {
      await post('/password-reset/confirm', { token, password: password.value }, { auth: false });
      ctx.setFlash('Your new password is set, and every earlier sign-in has ended. Sign in with it.');
      ctx.navigate('login');
    } catch (error) {
      if (error.code === 'link_gone') {
        message.error(GONE.reset);
        again.hidden = false;
      } else if (error.fields && error.fields.length) {
        const unplaced = showFieldErrors(form, error.fields.map((f) => ({ ...f, field: f.field.replace(/^body\./, '') })));
        if (unplaced.length) message.error(unplaced.join(' '));
      } else {
        message.error(plain(error));
      }
      submit.disabled = false;
    }
  });
  view.append(title, form, backToSignIn());
});

export const verify = defineView((view, ctx, life) => {
  const token = ctx.params.get('token') || '';
  const message = messageBox('verify-message');
  const next = h('p', {});
  view.append(h('h1', { id: 'verify-title', tabindex: '-1' }, 'Verify your email address'), message.element, next);
  const onward = () =>
    ctx.session
      ? h('a', { href: '#/book' }, 'Go to booking')
      : h('a', { href: '#/login' }, 'Sign in');
  if (!token) {
    message.error('This page opens from the link in your email.');
    next.append(onward());
    return;
  }
  message.info('Checking your link…');
  post('/verify', { token }, { auth: false })
    .then(() => {
      if (life.disposed) return;
      message.success('Thank you: your email address is verified.');
      announce('Your email address is verified.');
      next.replaceChildren(onward());
    })
    .catch((error) => {
      if (life.disposed) return;
      message.error(error.code === 'link_gone' ? GONE.verify : plain(error));
      next.replaceChildren(
        ctx.session ? 'Send a new link from your page. ' : 'Sign in to send a new link. ',
        onward(),
      );
    });
});

const knownVerified = new Set(); // patients seen verified in this tab: no need to ask again

/** "Please verify your email address", with a button sending the link again, while the
 * signed-in patient's address is not verified; nothing otherwise. */
export function verifyNote(ctx, life) {
  const me = ctx.session;
  const box = h('div', { class: 'verify-note', id: 'verify-note', hidden: true, role: 'region', 'aria-label': 'Email address' });
  if (!me || me.role !== 'patient' || knownVerified.has(me.id)) return box;
  const said = messageBox('verify-note-message');
  const send = h('button', { type: 'button', class: 'secondary', id: 'verify-again' }, 'Send the link again');
  send.addEventListener('click', async () => {
    send.disabled = true;
    said.clear();
    try {
      const answer = await post('/patients/me/verify-email');
      said.success(answer.detail);
      announce(answer.detail);
    } catch (error) {
      said.error(plain(error));
      send.disabled = false;
    }
  });
  box.append(...present(
    h('p', {}, h('strong', {}, 'Please verify your email address. '), `We sent a link to ${me.email || 'your address'}.`),
    h('div', { class: 'actions' }, send),
    said.element,
  ));
  get('/patients/me')
    .then((record) => {
      if (life.disposed) return;
      if (record.email_verified) knownVerified.add(me.id);
      else box.hidden = false;
    })
    .catch(() => {}); // the page says what went wrong with its own requests
  return box;
}
