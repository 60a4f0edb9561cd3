// REST calls to the hub, with the bearer token kept in sessionStorage (this tab only). The
// sign-in itself lives in the hub's HttpOnly refresh cookie, shared by every tab: a new tab,
// or a token past its hour, is renewed from it (renew()).

import { doctorName, personName } from './labels.js';

const KEY = 'hub.session';

export class ApiError extends Error {
  constructor(status, code, detail, fields = [], reason = null) {
    super(detail || code);
    this.status = status;
    this.code = code;
    this.detail = detail || '';
    this.fields = fields || [];
    this.reason = reason;
  }
}

/** The signed-in user: {token, role, id, name, email, expiresAt} or null. */
export function session() {
  try {
    const stored = JSON.parse(sessionStorage.getItem(KEY) || 'null');
    if (!stored || !stored.token) return null;
    return stored; // past its expiry too: the hub answers 401 and the request renews it
  } catch {
    return null;
  }
}

export function saveSession(value) {
  sessionStorage.setItem(KEY, JSON.stringify(value));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

let onUnauthenticated = () => {};

/** What to do when the hub says the stored token is no longer good (401). */
export function whenUnauthenticated(handler) {
  onUnauthenticated = handler;
}

/**
 * One request. `body` is sent as JSON, `form` as an urlencoded form. Resolves with the parsed
 * JSON (or null for 204; with `blob`, the answer's bytes as a Blob); rejects with an ApiError
 * carrying the hub's `error` code, `detail` and `fields`, or the code `network` when the hub
 * cannot be reached.
 */
export async function request(method, path, options = {}, retried = false) {
  const { body, form, headers = {}, auth = true, blob = false } = options;
  const current = session();
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (auth && current) init.headers.Authorization = `Bearer ${current.token}`;
  if (form) {
    init.body = new URLSearchParams(form);
  } else if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let answer;
  try {
    answer = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'the hub cannot be reached');
  }
  if (answer.status === 204) return null;
  if (blob && answer.ok) return answer.blob();
  let data = null;
  try {
    data = await answer.json();
  } catch {
    // Every answer of the hub but a 204 is JSON: a 2xx one that does not parse was cut short
    // (the hub restarting mid-answer), and no caller should take it for an empty result.
    if (answer.ok) throw new ApiError(0, 'network', 'the answer from the hub was cut short');
  }
  if (!answer.ok) {
    const error = new ApiError(
      answer.status,
      (data && data.error) || `http_${answer.status}`,
      (data && data.detail) || answer.statusText,
      (data && data.fields) || [],
      data && data.reason,
    );
    if (answer.status === 401 && auth && current) {
      if (!retried && (await renew())) return request(method, path, options, true);
      onUnauthenticated(error);
    }
    throw error;
  }
  return data;
}

export const get = (path, options) => request('GET', path, options);
export const post = (path, body, options = {}) => request('POST', path, { ...options, body });
export const put = (path, body, options = {}) => request('PUT', path, { ...options, body });
export const del = (path, options) => request('DELETE', path, options);

/** Sign in as `role` (patient, doctor or admin); stores and returns the session. */
export async function signIn(role, email, password) {
  const token = await request('POST', `${rolePath(role)}/login`, {
    form: { username: email, password },
    auth: false,
  });
  return establish(role, token, email);
}

let renewing = null;

/**
 * A new access token from the sign-in's refresh cookie: the stored session, or null when
 * there is no sign-in to renew (signed out, ended elsewhere). Concurrent calls share one.
 */
export function renew() {
  if (!renewing) {
    renewing = renewFromCookie().finally(() => {
      renewing = null;
    });
  }
  return renewing;
}

async function renewFromCookie() {
  try {
    const answer = await fetch('/auth/refresh', { method: 'POST', headers: { Accept: 'application/json' } });
    if (!answer.ok) {
      clearSession();
      return null;
    }
    const token = await answer.json();
    const known = session();
    return await establish(token.role, token, known && known.id === token.id ? known.email : null);
  } catch {
    return null;
  }
}

/** Sign out in this browser: the refresh cookie ends (other browsers stay signed in). */
export async function signOutHere() {
  clearSession();
  try {
    await fetch('/auth/sign-out', { method: 'POST' });
  } catch {
    // the hub is away: the cookie lapses on its own
  }
}

async function establish(role, token, email) {
  const expiresAt = Date.now() + token.expires_in * 1000;
  let signedIn = { token: token.access_token, role, id: token.id ?? null, name: email, email, expiresAt };
  saveSession(signedIn);
  if (role !== 'admin') {
    try {
      const me = await request('GET', `${rolePath(role)}/me`, {}, true); // no renewal from inside one
      const name = role === 'doctor' ? doctorName(me) : personName(me);
      signedIn = { ...signedIn, id: me.id, name, email: me.email };
    } catch (error) {
      clearSession();
      throw error;
    }
  } else {
    const label = email || `#${tokenSubject(token.access_token)}`;
    signedIn = { ...signedIn, id: tokenSubject(token.access_token), name: `Admin ${label}` };
  }
  saveSession(signedIn);
  return signedIn;
}

/** Where a role's accounts live in the REST API. */
export function rolePath(role) {
  return role === 'staff' ? '/staff' : `/${role}s`;
}

function tokenSubject(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return Number(JSON.parse(atob(payload)).sub) || null;
  } catch {
    return null;
  }
}
