// REST calls to the hub, with the bearer token kept in sessionStorage (this tab only).

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
    if (stored.expiresAt && Date.now() >= stored.expiresAt) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return stored;
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
 * JSON (or null for 204); rejects with an ApiError carrying the hub's `error` code, `detail`
 * and `fields`, or the code `network` when the hub cannot be reached.
 */
export async function request(method, path, { body, form, headers = {}, auth = true } = {}) {
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
  let data = null;
  try {
    data = await answer.json();
  } catch {
    data = null;
  }
  if (!answer.ok) {
    const error = new ApiError(
      answer.status,
      (data && data.error) || `http_${answer.status}`,
      (data && data.detail) || answer.statusText,
      (data && data.fields) || [],
      data && data.reason,
    );
    if (answer.status === 401 && auth && current) onUnauthenticated(error);
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
  const token = await request('POST', `/${role}s/login`, {
    form: { username: email, password },
    auth: false,
  });
  const expiresAt = Date.now() + token.expires_in * 1000;
  let signedIn = { token: token.access_token, role, id: null, name: email, email, expiresAt };
  saveSession(signedIn);
  if (role !== 'admin') {
    try {
      const me = await get(`/${role}s/me`);
      const name = role === 'doctor' ? doctorName(me) : personName(me);
      signedIn = { ...signedIn, id: me.id, name };
    } catch (error) {
      clearSession();
      throw error;
    }
  } else {
    signedIn = { ...signedIn, id: tokenSubject(token.access_token), name: `Admin ${email}` };
  }
  saveSession(signedIn);
  return signedIn;
}

function tokenSubject(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return Number(JSON.parse(atob(payload)).sub) || null;
  } catch {
    return null;
  }
}
