// The live connection to the hub's /ws: authenticate with the first frame, keep watched
// doctors in sync by version, reconnect with exponential backoff and jitter, and resync with
// `since` so nothing is missed while the connection was down.
//
// Versions: a slow reader's pending `slot` event is replaced in place by a newer one for the
// same slot, marked `collapsed`, so a collapsed event may skip versions and come before older
// events of other slots. Every event is applied unless its slot has seen a newer one; only an
// event that is not collapsed and skips past the highest version seen means a loss.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 15000;
const OFFLINE_AFTER = 5; // failed attempts in a row before the state says "offline"
const COMMAND_TIMEOUT_MS = 10000;
const PING_EVERY_MS = 25000;

export class LiveError extends Error {
  constructor(code, message, fields = []) {
    super(message || code);
    this.code = code;
    this.detail = message || '';
    this.fields = fields;
  }
}

/**
 * States: idle (not started), connecting (first attempt), live (authenticated),
 * reconnecting (lost, retrying soon), offline (no network, or many failed attempts; still
 * retrying with a longer delay).
 *
 * Events (listen with on(type, fn)): state {state, retryInMs}, ready {user, resumed},
 * snapshot, slot, resynced, appointment, offer (the hub's frames), unauthenticated {reason},
 * watch-error {doctorId, error}, leaving (the page is going away).
 */
export class Live {
  constructor(tokenProvider) {
    this.token = tokenProvider;
    this.target = new EventTarget();
    this.socket = null;
    this.state = 'idle';
    this.user = null;
    this.attempts = 0;
    this.timer = null;
    this.pinger = null;
    this.stopped = true;
    this.everReady = false;
    this.serial = 0;
    this.pending = new Map(); // ref -> {resolve, reject, timer}
    this.watches = new Map(); // doctor id -> {from, to, version, complete, ...}
    this.retryAt = null;
    window.addEventListener('online', () => this.retryNow());
    window.addEventListener('offline', () => {
      if (this.stopped) return;
      if (this.socket) this.socket.close(1000, 'offline');
      this.setState('offline');
    });
    window.addEventListener('pagehide', () => {
      this.emit('leaving', {}); // last words (a view releases its hold) before the socket goes
      if (this.socket) this.socket.close(1000, 'page closed');
    });
  }

  get isLive() {
    return this.state === 'live';
  }

  on(type, handler) {
    const listener = (event) => handler(event.detail);
    this.target.addEventListener(type, listener);
    return () => this.target.removeEventListener(type, listener);
  }

  emit(type, detail) {
    this.target.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state) {
    if (this.state === state && state !== 'reconnecting' && state !== 'offline') return;
    this.state = state;
    const retryInMs = this.retryAt ? Math.max(0, this.retryAt - Date.now()) : null;
    this.emit('state', { state, retryInMs });
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.attempts = 0;
    this.everReady = false;
    this.setState('connecting');
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    this.retryAt = null;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, 'signed out');
    this.failPending('stopped', 'The connection was closed.');
    this.watches.clear();
    this.user = null;
    this.setState('idle');
  }

  retryNow() {
    if (this.stopped || this.state === 'live' || this.state === 'connecting') return;
    if (this.socket && this.socket.readyState === WebSocket.CONNECTING) return;
    clearTimeout(this.timer);
    this.retryAt = null;
    this.setState(navigator.onLine === false ? 'offline' : 'reconnecting');
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    this.retryAt = null;
    const token = this.token();
    if (!token) {
      this.stop();
      return;
    }
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    let socket;
    try {
      socket = new WebSocket(`${scheme}://${location.host}/ws`);
    } catch {
      this.scheduleReconnect(1006);
      return;
    }
    this.socket = socket;
    socket.addEventListener('open', () => {
      socket.send(JSON.stringify({ type: 'auth', token, ref: 'auth' }));
    });
    socket.addEventListener('message', (event) => this.receive(socket, event.data));
    socket.addEventListener('close', (event) => this.closed(socket, event));
  }

  closed(socket, event) {
    if (socket !== this.socket) return;
    this.socket = null;
    clearInterval(this.pinger);
    this.failPending(
      'disconnected',
      'The connection dropped before the hub answered. Please check the result and try again.',
    );
    for (const watch of this.watches.values()) {
      watch.buffer = [];
      watch.resyncing = false;
    }
    if (this.stopped) return;
    if (event.code === 4401) {
      this.stopped = true;
      this.setState('idle');
      this.emit('unauthenticated', { reason: event.reason });
      return;
    }
    this.scheduleReconnect(event.code);
  }

  scheduleReconnect(code) {
    this.attempts += 1;
    let delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (this.attempts - 1));
    delay = delay / 2 + (Math.random() * delay) / 2; // jitter: many clients do not return at once
    if (code === 4429) delay = Math.max(delay, 5000); // told to slow down
    this.retryAt = Date.now() + delay;
    const offline = navigator.onLine === false || this.attempts > OFFLINE_AFTER;
    this.setState(offline ? 'offline' : 'reconnecting');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  receive(socket, text) {
    if (socket !== this.socket) return;
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    switch (message.type) {
      case 'ready':
        this.ready(message);
        break;
      case 'snapshot':
        this.onSnapshot(message);
        break;
      case 'slot':
        this.onSlot(message);
        break;
      case 'resynced':
        this.onResynced(message);
        break;
      case 'hours': {
        // The doctor's hours changed: the slot grid itself is new, so fetch it again.
        const watch = this.watches.get(message.doctor_id);
        if (watch && !watch.resyncing) this.sendWatch(message.doctor_id, watch, { fresh: true });
        break;
      }
      case 'appointment':
        this.emit('appointment', message);
        break;
      case 'offer':
        this.emit('offer', message);
        break;
      default:
        break;
    }
    if (message.ref != null && this.pending.has(message.ref)) {
      const waiter = this.pending.get(message.ref);
      this.pending.delete(message.ref);
      clearTimeout(waiter.timer);
      if (message.type === 'error') {
        waiter.reject(new LiveError(message.code, message.message, message.fields));
      } else {
        waiter.resolve(message);
      }
    } else if (message.type === 'error') {
      this.emit('error', new LiveError(message.code, message.message));
    }
  }

  ready(message) {
    if (this.state === 'live') return; // a re-auth on a live session
    const resumed = this.everReady;
    this.everReady = true;
    this.attempts = 0;
    this.user = message.user;
    this.setState('live');
    clearInterval(this.pinger);
    this.pinger = setInterval(() => this.ping(), PING_EVERY_MS);
    for (const [doctorId, watch] of this.watches) this.sendWatch(doctorId, watch);
    this.emit('ready', { user: message.user, resumed });
  }

  async ping() {
    const socket = this.socket;
    try {
      await this.send({ type: 'ping' });
    } catch (error) {
      if (error.code === 'timeout' && socket && socket === this.socket) socket.close(4000, 'no pong');
    }
  }

  failPending(code, text) {
    for (const waiter of this.pending.values()) {
      clearTimeout(waiter.timer);
      waiter.reject(new LiveError(code, text));
    }
    this.pending.clear();
  }

  /** Send a command; resolves with the reply that carries its ref, rejects with a LiveError. */
  send(command) {
    if (!this.socket || this.state !== 'live') {
      return Promise.reject(new LiveError('offline', 'You are offline. Please wait until the connection is back.'));
    }
    const ref = command.ref || `${command.type}-${++this.serial}`;
    const frame = { ...command, ref };
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(ref);
        reject(new LiveError('timeout', 'The hub did not answer in time. Please try again.'));
      }, COMMAND_TIMEOUT_MS);
      this.pending.set(ref, { resolve, reject, timer });
      try {
        this.socket.send(JSON.stringify(frame));
      } catch {
        clearTimeout(timer);
        this.pending.delete(ref);
        reject(new LiveError('offline', 'You are offline. Please wait until the connection is back.'));
      }
    });
  }

  /** Watch a doctor's slots between `from` and `to` (dates or ISO instants). */
  watch(doctorId, from, to) {
    const watch = {
      from,
      to,
      version: null, // the highest seen
      complete: null, // every version up to this one was seen: what `since` asks from
      base: null, // the snapshot's version: every slot's state up to it
      seen: new Map(), // slot start (ms) -> the version of its state applied since
      ref: null,
      buffer: [],
      resyncing: false,
    };
    this.watches.set(doctorId, watch);
    if (this.isLive) this.sendWatch(doctorId, watch);
  }

  unwatch(doctorId) {
    if (!this.watches.delete(doctorId)) return;
    if (this.isLive) this.send({ type: 'unwatch', doctor_id: doctorId }).catch(() => {});
  }

  versionOf(doctorId) {
    const watch = this.watches.get(doctorId);
    return watch ? watch.version : null;
  }

  sendWatch(doctorId, watch, { fresh = false } = {}) {
    if (fresh) watch.version = null;
    const command = { type: 'watch', doctor_id: doctorId, from: watch.from, to: watch.to };
    if (watch.version != null) {
      command.since = watch.complete;
      watch.resyncing = true;
    }
    watch.ref = `watch-${doctorId}-${++this.serial}`;
    watch.buffer = [];
    this.send({ ...command, ref: watch.ref }).catch((error) => {
      if (this.watches.get(doctorId) !== watch) return;
      watch.resyncing = false;
      if (error.code !== 'disconnected' && error.code !== 'stopped') {
        this.emit('watch-error', { doctorId, error });
      }
    });
  }

  onSnapshot(message) {
    const watch = this.watches.get(message.doctor_id);
    if (!watch) return;
    if (message.ref == null) {
      // Unasked (the hub gave up replaying): its window may not be ours, so ask for ours,
      // unless an answer to our own request is on its way anyway.
      if (watch.version != null && !watch.resyncing) this.sendWatch(message.doctor_id, watch, { fresh: true });
      return;
    }
    if (message.ref !== watch.ref) return; // the answer to an older request (another week)
    watch.version = message.version;
    watch.complete = message.version;
    watch.base = message.version;
    watch.seen = new Map();
    watch.resyncing = false;
    this.emit('snapshot', message);
    const held = watch.buffer; // in the order they came: sorting would undo a collapse
    watch.buffer = [];
    for (const event of held) this.onSlot(event);
  }

  onSlot(message) {
    const watch = this.watches.get(message.doctor_id);
    if (!watch) return;
    if (watch.version == null) {
      watch.buffer.push(message); // the snapshot is on its way
      return;
    }
    if (!message.collapsed && message.version > watch.version + 1) {
      if (!watch.resyncing) this.sendWatch(message.doctor_id, watch); // a gap: ask with since
      return;
    }
    const slot = new Date(message.start).getTime();
    const applied = watch.seen.has(slot) ? watch.seen.get(slot) : watch.base;
    if (message.version > applied) {
      watch.seen.set(slot, message.version);
      watch.version = Math.max(watch.version, message.version);
      this.emit('slot', message);
    }
    // An event that is not collapsed comes after every older version (or a newer state that
    // replaced it): nothing up to it is missing. A collapsed one says nothing of the versions
    // it skipped, so a resync asks from before them.
    if (!message.collapsed) watch.complete = Math.max(watch.complete, message.version);
  }

  onResynced(message) {
    const watch = this.watches.get(message.doctor_id);
    if (!watch || message.ref !== watch.ref) return;
    watch.resyncing = false;
    if (watch.version == null || watch.version < message.version) {
      this.sendWatch(message.doctor_id, watch, { fresh: true }); // something was lost: start over
      return;
    }
    watch.complete = Math.max(watch.complete, message.version); // the replay brought the rest
    this.emit('resynced', message);
  }
}
