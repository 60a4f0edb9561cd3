// The single-page shell: hash routes, the header (navigation, connection state, sign out),
// and one live connection shared by the views.

import { clearSession, renew, session, signOutHere, whenUnauthenticated } from './api.js';
import { Live } from './live.js';
import { announce, h, syncLiveActions } from './ui.js';
import * as admin from './views/admin.js';
import * as auth from './views/auth.js';
import * as book from './views/book/index.js';
import * as dashboard from './views/dashboard/index.js';
import * as day from './views/day.js';
import * as desk from './views/desk.js';
import * as email from './views/email.js';
import * as manage from './views/manage.js';
import * as mine from './views/mine.js';

const ROUTES = {
  login: { mount: auth.login, title: 'Sign in', roles: null },
  register: { mount: auth.register, title: 'Create an account', roles: null },
  forgot: { mount: email.forgot, title: 'Forgot your password?', roles: null },
  // Links from emails: they open whether or not this browser is signed in.
  reset: { mount: email.reset, title: 'Set a new password', roles: null, open: true },
  verify: { mount: email.verify, title: 'Verify your email address', roles: null, open: true },
  book: { mount: book.mount, title: 'Book an appointment', roles: ['patient'] },
  mine: { mount: mine.mount, title: 'My appointments', roles: ['patient'] },
  dashboard: { mount: dashboard.mount, title: 'Dashboard', roles: ['doctor'] },
  admin: { mount: admin.mount, title: 'Administration', roles: ['admin'] },
  desk: { mount: desk.mount, title: 'Front desk', roles: ['staff'] },
  day: { mount: day.mount, title: "Clinic's day", roles: ['staff', 'admin'] },
  // A link from an email: its token is the key, signed in or not (open: no redirect home).
  manage: { mount: manage.mount, title: 'Your appointment', roles: null, open: true },
};
const HOME = { patient: 'book', doctor: 'dashboard', admin: 'admin', staff: 'desk' };
const NAV = {
  patient: [
    ['book', 'Book'],
    ['mine', 'My appointments'],
  ],
  doctor: [['dashboard', 'Dashboard']],
  admin: [
    ['admin', 'Administration'],
    ['day', "Clinic's day"],
  ],
  staff: [
    ['desk', 'Front desk'],
    ['day', "Clinic's day"],
  ],
  none: [
    ['login', 'Sign in'],
    ['register', 'Register'],
  ],
};
const STATE_TEXT = {
  idle: 'Not connected',
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  offline: 'Offline',
};

const live = new Live(() => session()?.token);
let cleanup = null;
let flash = null;
let rendered = false;
let lastState = 'idle';

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [name, query = ''] = raw.split('?');
  return { name, params: new URLSearchParams(query) };
}

function hashFor(name, params = {}) {
  const pairs = Object.entries(params).filter(([, v]) => v != null && v !== '');
  const query = new URLSearchParams(pairs).toString();
  return `#/${name}${query ? `?${query}` : ''}`;
}

/** Go to a route (a new history entry). */
export function navigate(name, params = {}) {
  const hash = hashFor(name, params);
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** Record a view's state in the address without rendering again (reload keeps it). */
export function remember(name, params = {}) {
  const hash = hashFor(name, params);
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

export function setFlash(text) {
  flash = text;
}

function signOut() {
  if (cleanup) runCleanup();
  live.stop();
  signOutHere();
  flash = 'You have signed out.';
  navigate('login');
}

function runCleanup() {
  const done = cleanup;
  cleanup = null;
  try {
    done();
  } catch (error) {
    console.error(error);
  }
}

async function sessionEnded() {
  if (!session() && !live.isLive) return;
  live.stop();
  if (await renew()) {
    live.start(); // the sign-in goes on: reconnect with a fresh token (its hour was up)
    return;
  }
  clearSession();
  flash = 'Your session has ended. Please sign in again.';
  navigate('login');
}

function renderChrome(me, current) {
  const nav = document.getElementById('nav');
  const items = NAV[me ? me.role : 'none'];
  nav.replaceChildren(
    ...items.map(([name, label]) =>
      h('li', {}, h('a', { href: `#/${name}`, 'aria-current': name === current ? 'page' : null }, label)),
    ),
  );
  const who = document.getElementById('who');
  who.textContent = me ? `Signed in as ${me.name}` : '';
  document.getElementById('signout').hidden = !me;
  document.getElementById('conn').hidden = !me;
}

let retryTicker = null;

function renderRetryIn() {
  const out = document.getElementById('conn-retry-in');
  const waiting = live.state === 'reconnecting' || live.state === 'offline';
  const left = live.retryAt ? live.retryAt - Date.now() : null;
  out.hidden = !waiting || left == null;
  if (!out.hidden) out.textContent = left > 500 ? `next try in ${Math.ceil(left / 1000)} s` : 'trying…';
}

function renderConnection({ state }) {
  const conn = document.getElementById('conn');
  conn.dataset.state = state;
  conn.querySelector('.conn-text').textContent = STATE_TEXT[state] || state;
  const waiting = state === 'reconnecting' || state === 'offline';
  document.getElementById('conn-retry').hidden = !waiting;
  clearInterval(retryTicker);
  renderRetryIn();
  if (waiting) retryTicker = setInterval(renderRetryIn, 500);
  document.body.dataset.conn = state;
  syncLiveActions(document, state === 'live');
  const banner = document.getElementById('conn-banner');
  banner.hidden = !(state === 'reconnecting' || state === 'offline');
  banner.textContent =
    state === 'offline'
      ? 'You are offline. Actions are paused; the page keeps trying to reconnect and will catch up by itself.'
      : 'The connection to the clinic was lost. Reconnecting… Actions are paused until it is back.';
  if (state === 'live' && (lastState === 'reconnecting' || lastState === 'offline')) {
    announce('Connection is back. Live updates resumed.');
  } else if (state === 'reconnecting' && lastState === 'live') {
    announce('Connection lost. Reconnecting. Actions are paused until it is back.');
  } else if (state === 'offline' && lastState !== 'offline') {
    announce('You are offline. Actions are paused until the connection is back.');
  }
  lastState = state;
}

function render() {
  const { name, params } = parseHash();
  const me = session();
  const route = ROUTES[name];
  if (!route) {
    navigate(me ? HOME[me.role] : 'login');
    return;
  }
  if (route.roles && (!me || !route.roles.includes(me.role))) {
    if (!me && rendered) flash = flash || 'Please sign in first.';
    navigate(me ? HOME[me.role] : 'login');
    return;
  }
  if (!route.roles && me && !route.open) {
    navigate(HOME[me.role]);
    return;
  }
  if (cleanup) runCleanup();
  renderChrome(me, name);
  if (me) live.start();
  else live.stop();
  const view = document.getElementById('view');
  view.replaceChildren();
  document.title = `${route.title} · Clinic hub`;
  const message = flash;
  flash = null;
  cleanup =
    route.mount(view, {
      session: me,
      live,
      params,
      navigate,
      remember,
      flash: message,
      setFlash,
    }) || null;
  syncLiveActions(document, live.isLive);
  if (rendered) {
    const heading = view.querySelector('h1');
    if (heading) heading.focus();
  }
  rendered = true;
}

whenUnauthenticated(sessionEnded);
live.on('unauthenticated', sessionEnded);
live.on('state', renderConnection);
window.addEventListener('hashchange', () => {
  if (location.hash.startsWith('#/') || location.hash === '') render();
});
document.getElementById('signout').addEventListener('click', signOut);
// Actions paused while offline stay focusable (aria-disabled): stop their clicks here, first.
document.addEventListener(
  'click',
  (event) => {
    const paused = event.target.closest && event.target.closest('[data-needs-live][aria-disabled="true"]');
    if (!paused) return;
    event.preventDefault();
    event.stopImmediatePropagation();
    announce('This is paused until the connection is back.');
    const banner = document.getElementById('conn-banner');
    banner.hidden = false;
  },
  true,
);
document.getElementById('conn-retry').addEventListener('click', () => live.retryNow());
document.getElementById('skip').addEventListener('click', (event) => {
  event.preventDefault();
  document.getElementById('main').focus();
});
// A new tab shares the browser's sign-in: renewed from the refresh cookie before the first page.
if (session()) render();
else renew().finally(render);
