// Herald browser client: token storage, REST helper, and a Socket.IO connection that
// reconnects with backoff and resumes every subscription from its last seq.
import { io } from "/static/vendor/socket.io.esm.min.js";

const TOKEN_KEY = "herald.access_token";
const REFRESH_KEY = "herald.refresh_token";
const CLIENT_KEY = "herald.client_id";

export function getToken() { return sessionStorage.getItem(TOKEN_KEY); }
export function setTokens({ access_token, refresh_token }) {
  sessionStorage.setItem(TOKEN_KEY, access_token);
  if (refresh_token) sessionStorage.setItem(REFRESH_KEY, refresh_token);
}
export function clearTokens() { sessionStorage.removeItem(TOKEN_KEY); sessionStorage.removeItem(REFRESH_KEY); }

/** A per-tab client id, so this tab's upload progress reaches this tab. */
export function clientId() {
  let id = sessionStorage.getItem(CLIENT_KEY);
  if (!id) {
    id = "tab-" + Math.random().toString(36).slice(2, 12);
    sessionStorage.setItem(CLIENT_KEY, id);
  }
  return id;
}

/** Fetch JSON from the API with the tab's token; throws {code, message} on errors. */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const opts = { method, headers: { ...headers } };
  const token = getToken();
  if (token) opts.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined && !(body instanceof FormData)) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  } else if (body) {
    opts.body = body;
  }
  const response = await fetch(path, opts);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(data?.error?.message || response.statusText);
    error.code = data?.error?.code || String(response.status);
    error.status = response.status;
    throw error;
  }
  return data;
}

export async function login(username, password) {
  const data = await api("/api/auth/login", { method: "POST", body: { username, password } });
  setTokens(data);
  return data;
}

/** Backoff for reconnects: 1 s doubling to 32 s, with ±30 % jitter. */
export function backoffDelay(attempt) {
  const base = Math.min(32000, 1000 * 2 ** attempt);
  return Math.round(base * (0.7 + Math.random() * 0.6));
}

/**
 * A live connection. Emits state changes through onState({state, retryIn}) where state is
 * "connecting" | "connected" | "reconnecting" | "offline".
 */
export class HeraldConnection {
  constructor({ onState = () => {}, onMessage = () => {} } = {}) {
    this.onState = onState;
    this.onMessage = onMessage;
    this.jobs = new Map(); // jobId -> {lastSeq, handlers:Set}
    this.attempt = 0;
    this.retryTimer = null;
    this.socket = io({
      auth: (cb) => cb({ token: getToken(), client_id: clientId() }),
      transports: ["websocket"],
      reconnection: false, // our own backoff, so the state text can count down
      timeout: 10000,
    });
    this.socket.on("connect", () => {
      this.attempt = 0;
      this.onState({ state: "connected" });
      for (const [jobId, entry] of this.jobs) this._resubscribe(jobId, entry);
    });
    this.socket.on("connect_error", (err) => this._scheduleReconnect(err));
    this.socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") { this.onState({ state: "offline" }); return; }
      this._scheduleReconnect();
    });
    this.socket.onAny((event, message) => this._dispatch(event, message));
    this.onState({ state: "connecting" });
  }

  _scheduleReconnect(err) {
    if (this.retryTimer) return;
    const delay = backoffDelay(this.attempt++);
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.onState({ state: "reconnecting", retryIn: left, error: err?.data?.message || err?.message });
    };
    tick();
    const countdown = setInterval(tick, 1000);
    this.retryTimer = setTimeout(() => {
      clearInterval(countdown);
      this.retryTimer = null;
      this.onState({ state: "connecting" });
      this.socket.connect();
    }, delay);
  }

  _dispatch(event, message) {
    if (message && message.job_id != null && this.jobs.has(message.job_id)) {
      const entry = this.jobs.get(message.job_id);
      if (message.seq != null) {
        if (message.seq <= entry.lastSeq) return; // already seen (replay overlap)
        entry.lastSeq = message.seq;
      }
      for (const handler of entry.handlers) handler(message);
    }
    this.onMessage(event, message);
  }

  _resubscribe(jobId, entry) {
    const payload = { job_id: jobId };
    if (entry.lastSeq != null) payload.last_seq = entry.lastSeq;
    this.socket.emit("subscribe", payload, (ack) => {
      if (ack && ack.ok && ack.job) {
        for (const handler of entry.snapshotHandlers) handler(ack.job);
      }
    });
  }

  /** Follow a job: handler(message) for each event; onSnapshot(job) after each (re)subscribe. */
  subscribe(jobId, handler, { lastSeq = 0, onSnapshot } = {}) {
    jobId = Number(jobId);
    let entry = this.jobs.get(jobId);
    if (!entry) {
      entry = { lastSeq, handlers: new Set(), snapshotHandlers: new Set() };
      this.jobs.set(jobId, entry);
    }
    entry.handlers.add(handler);
    if (onSnapshot) entry.snapshotHandlers.add(onSnapshot);
    return new Promise((resolve) => {
      const payload = { job_id: jobId, last_seq: entry.lastSeq };
      if (!this.socket.connected) { resolve({ ok: true, queued: true }); return; }
      this.socket.emit("subscribe", payload, (ack) => {
        if (!ack?.ok) this.jobs.delete(jobId);
        else for (const h of entry.snapshotHandlers) h(ack.job);
        resolve(ack);
      });
    });
  }

  unsubscribe(jobId) {
    jobId = Number(jobId);
    this.jobs.delete(jobId);
    if (this.socket.connected) this.socket.emit("unsubscribe", { job_id: jobId });
  }

  emit(event, payload) {
    return new Promise((resolve) => this.socket.emit(event, payload, resolve));
  }

  close() { this.socket.disconnect(); }
}
