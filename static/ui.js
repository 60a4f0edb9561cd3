// Small DOM, formatting and message helpers shared by the views.

/** Build an element: h('button', {type: 'button', onclick: fn}, 'Label'). Text is never HTML. */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name === 'class') element.className = value;
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'value') element.value = value;
    else if (name === 'checked') element.checked = Boolean(value);
    else if (value === true) element.setAttribute(name, '');
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

let ids = 0;
export function uid(prefix = 'id') {
  ids += 1;
  return `${prefix}-${ids}`;
}

/** Say something to screen readers (and keep the last few lines for anyone who looks). */
export function announce(text) {
  const region = document.getElementById('announcer');
  if (!region) return;
  region.append(h('p', {}, text));
  while (region.childElementCount > 6) region.firstElementChild.remove();
}

// ---- time --------------------------------------------------------------------------------

export const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: 'short', day: 'numeric', month: 'short' });
const longDayFormat = new Intl.DateTimeFormat(undefined, {
  weekday: 'long',
  day: 'numeric',
  month: 'long',
  year: 'numeric',
});
const offsetFormat = new Intl.DateTimeFormat(undefined, { timeZoneName: 'shortOffset' });

export const formatTime = (date) => timeFormat.format(date);
export const formatDay = (date) => dayFormat.format(date);
export const formatLongDay = (date) => longDayFormat.format(date);
export function formatWhen(date) {
  return `${formatDay(date)}, ${formatTime(date)}`;
}

export function zoneLabel() {
  const part = offsetFormat.formatToParts(new Date()).find((p) => p.type === 'timeZoneName');
  return part ? `${zone} (${part.value})` : zone;
}

/** A slot's key: its start as a canonical UTC ISO string. */
export function instantKey(value) {
  return new Date(value).toISOString();
}

/** UTC ISO without milliseconds, as the hub writes it. */
export function isoUtc(date) {
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** The local date YYYY-MM-DD of a Date. */
export function localDate(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** Local midnight of a YYYY-MM-DD. */
export function parseLocalDate(text) {
  const match = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text || '');
  if (!match) return null;
  const date = new Date(Number(match[1]), Number(match[2]) - 1, Number(match[3]));
  return Number.isNaN(date.getTime()) ? null : date;
}

/** Monday 00:00 (local) of the week containing `date`. */
export function weekStart(date) {
  const start = new Date(date.getFullYear(), date.getMonth(), date.getDate());
  const back = (start.getDay() + 6) % 7;
  start.setDate(start.getDate() - back);
  return start;
}

export function addDays(date, days) {
  const next = new Date(date.getFullYear(), date.getMonth(), date.getDate());
  next.setDate(next.getDate() + days);
  return next;
}

export function countdown(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  const minutes = Math.floor(total / 60);
  const seconds = String(total % 60).padStart(2, '0');
  return `${minutes}:${seconds}`;
}

// ---- messages ----------------------------------------------------------------------------

const PLAIN = {
  network: "We can't reach the clinic's server. Check your connection and try again.",
  offline: 'You are offline. Please wait until the connection is back.',
  disconnected: 'The connection dropped before the server answered. Please check and try again.',
  timeout: 'The server did not answer in time. Please try again.',
  invalid_credentials: 'That email and password do not match an account.',
  unauthenticated: 'Your session has ended. Please sign in again.',
  forbidden: "You're not allowed to do that.",
  not_found: 'That could not be found. It may have been removed.',
  email_taken: 'An account with this email address already exists.',
  name_taken: 'That name is already in use.',
  in_use: 'It is still in use.',
  slot_taken: 'Someone else has just taken this time. Please pick another one.',
  patient_busy: 'You already have an appointment at this time.',
  already_booked:
    'You already have an upcoming appointment with this doctor. You can reschedule it from My appointments.',
  hold_expired: 'Your hold ran out and someone else took this time. Please pick another one.',
  too_many_holds: 'You are holding too many times at once. Confirm or cancel one first.',
  too_many_address_holds:
    'Too many times are being held from your network right now. Confirm or cancel one first.',
  too_many_attempts: 'Too many attempts. Please wait a little and try again.',
  unverified_email:
    'Please verify your email address before booking: follow the link we sent you, or send it again at the top of this page.',
  overloaded: 'The server is busy signing people in. Please try again in a moment.',
  rate_limited: 'Too many actions at once. Please wait a moment and try again.',
  holds_unavailable: "Times can't be held right now, but you can still book directly.",
  payload_too_large: 'That is too much text.',
  internal: 'Something went wrong on our side. Please try again.',
  invalid: 'Please check the highlighted fields.',
};

export function sentence(text) {
  const trimmed = String(text || '').trim();
  if (!trimmed) return '';
  const first = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?]$/.test(first) ? first : `${first}.`;
}

/** An error from the REST API or the live connection, in plain words. */
export function plain(error) {
  if (!error) return '';
  const code = error.code;
  if (code === 'too_late') return `Too late to change: ${sentence(error.detail)}`;
  if (code === 'not_offered' || code === 'invalid_transition') return sentence(error.detail);
  if (code === 'invalid' && error.fields && error.fields.length === 0) return sentence(error.detail);
  if (PLAIN[code]) return PLAIN[code];
  return sentence(error.detail || error.message) || PLAIN.internal;
}

/** A validation message without pydantic's prefixes. */
export function fieldMessage(text) {
  return sentence(String(text || '').replace(/^(Value error|Assertion failed), /, ''));
}

/** Scroll `element` into view unless it is on screen already. */
export function reveal(element) {
  const box = element.getBoundingClientRect();
  if (box.top >= 0 && box.bottom <= window.innerHeight) return;
  element.scrollIntoView({ block: 'nearest', behavior: 'instant' });
}

/** A message box: role=alert for errors, role=status otherwise. */
export function messageBox(id) {
  const box = h('div', { id, class: 'message', hidden: true });
  return {
    element: box,
    error(text) {
      box.hidden = false;
      box.className = 'message error';
      box.setAttribute('role', 'alert');
      box.textContent = text;
    },
    info(text) {
      box.hidden = false;
      box.className = 'message info';
      box.setAttribute('role', 'status');
      box.textContent = text;
    },
    success(text) {
      box.hidden = false;
      box.className = 'message success';
      box.setAttribute('role', 'status');
      box.textContent = text;
    },
    clear() {
      box.hidden = true;
      box.textContent = '';
    },
  };
}

/**
 * Show a 422's `fields` next to the inputs: every element with data-field="a.b" gets the
 * message for a.b, or for the nearest field the message names below it. Returns the messages
 * that found no place (for a summary).
 */
export function showFieldErrors(form, fields) {
  clearFieldErrors(form);
  const unplaced = [];
  for (const { field, message } of fields || []) {
    let path = String(field || '').split('.');
    let target = null;
    while (path.length && !target) {
      target = form.querySelector(`[data-field="${CSS.escape(path.join('.'))}"]`);
      if (!target) path = path.slice(0, -1);
    }
    if (!target) {
      unplaced.push(fieldMessage(message));
      continue;
    }
    const slot = target.querySelector(':scope > .field-error') || target.appendChild(h('p', { class: 'field-error', id: uid('err') }));
    slot.textContent = slot.textContent ? `${slot.textContent} ${fieldMessage(message)}` : fieldMessage(message);
    target.classList.add('has-error');
    for (const input of target.querySelectorAll('input, select, textarea')) {
      input.setAttribute('aria-invalid', 'true');
      const described = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
      if (!described.includes(slot.id)) described.push(slot.id);
      input.setAttribute('aria-describedby', described.join(' '));
    }
  }
  const first = form.querySelector('.has-error input, .has-error select, .has-error textarea');
  if (first) first.focus();
  return unplaced;
}

export function clearFieldErrors(form) {
  for (const slot of form.querySelectorAll('.field-error')) {
    const id = slot.id;
    for (const input of form.querySelectorAll(`[aria-describedby~="${id}"]`)) {
      const rest = input.getAttribute('aria-describedby').split(' ').filter((x) => x && x !== id);
      if (rest.length) input.setAttribute('aria-describedby', rest.join(' '));
      else input.removeAttribute('aria-describedby');
    }
    slot.remove();
  }
  for (const target of form.querySelectorAll('.has-error')) target.classList.remove('has-error');
  for (const input of form.querySelectorAll('[aria-invalid]')) input.removeAttribute('aria-invalid');
}

/** A labelled input wrapped in a field container that can hold its error. */
export function field(label, input, { name = input.name, hint } = {}) {
  const id = input.id || uid('f');
  input.id = id;
  const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  return h('div', { class: 'field', dataset: { field: name } }, h('label', { for: id }, label), hintEl, input);
}

/**
 * Pause or resume every action that needs the live connection. Paused actions stay focusable
 * (aria-disabled, so a keyboard user keeps their place) and app.js stops their clicks;
 * data-blocked="1" (an action in flight) disables for real.
 */
export function syncLiveActions(root, live) {
  for (const button of root.querySelectorAll('[data-needs-live]')) {
    button.disabled = button.dataset.blocked === '1';
    if (live) button.removeAttribute('aria-disabled');
    else button.setAttribute('aria-disabled', 'true');
  }
}

/** The children that are there (DOM append would write "null" for the others). */
export function present(...children) {
  return children.filter((child) => child != null && child !== false);
}

/**
 * Redraw part of the page without losing the keyboard user's place: the focused element's
 * data-key (or data-start, or id) is looked up again after `draw` and focused.
 */
export function keepFocus(container, draw) {
  const active = document.activeElement;
  const inside = active && active !== document.body && container.contains(active);
  const key = inside ? active.dataset.key || active.dataset.start || active.id : null;
  draw();
  if (!key) return;
  const quoted = CSS.escape(key);
  const next = container.querySelector(`[data-key="${quoted}"], [data-start="${quoted}"], #${quoted}`);
  if (next && !next.disabled) next.focus();
}
