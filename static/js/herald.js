// Herald browser client, shared by every page: the session (an access token in this tab's
// memory, got from the browser's HttpOnly refresh cookie: never in sessionStorage,
// localStorage or a URL), a REST helper, the login redirect, job-end notifications, and a
// Socket.IO connection that reconnects with backoff + jitter and resumes every
// subscription from its last seq.
import { io } from "/static/vendor/socket.io.esm.min.js";

const CLIENT_KEY = "herald.client_id";
const NOTIFY_KEY = "herald.notify_job_end";

export const TERMINAL_STATUSES = new Set(["completed", "failed", "cancelled"]);

// -- the session ----------------------------------------------------------------------
// The refresh token lives in the `herald_refresh` cookie (HttpOnly, SameSite=Strict, sent
// to /api/auth/session only), which no script can read. Each tab trades it for its own
// access token, kept in this module only: a new tab (Ctrl+click) needs no sign-in, and
// signing out anywhere revokes every tab's token (docs/PROTOCOL.md, browser sessions).

let accessToken = null;
let currentUser = null;
let sessionReady = null; // Promise<boolean> while this tab's first token is on its way

/** This tab's access token (null until the session is ready: see ensureSession). */
export function getToken() { return accessToken; }
/** Forget this tab's token (the cookie is cleared by the server, on sign-out). */
export function clearTokens() { accessToken = null; currentUser = null; sessionReady = null; }
export function username() { return currentUser?.username ?? null; }

function setSession({ access_token, user }) {
  accessToken = access_token;
  if (user) currentUser = user;
}

let refreshing = null;
/** A new access token from the session cookie (one request at a time); false when signed out. */
export function refreshSession() {
  refreshing ??= fetch("/api/auth/session/refresh", { method: "POST", credentials: "same-origin" })
    .then(async (r) => { if (!r.ok) return false; setSession(await r.json()); return true; })
    .catch(() => false)
    .finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  return refreshing;
}

/** Resolves true once this tab has an access token (from the cookie the first time). */
export function ensureSession() {
  if (accessToken) return Promise.resolve(true);
  sessionReady ??= refreshSession().then((ok) => { if (!ok) sessionReady = null; return ok; });
  return sessionReady;
}

/** Seconds until a JWT's `exp` (0 when it cannot be read). */
function secondsLeft(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.exp - Date.now() / 1000;
  } catch {
    return 0;
  }
}

/**
 * A token good for at least `margin` more seconds, for requests made outside `api()` (an
 * XHR upload, a file download): `Authorization: Bearer ${await freshToken()}`. Null when
 * signed out.
 */
export async function freshToken(margin = 30) {
  if (!(await ensureSession())) return null;
  if (secondsLeft(accessToken) < margin) await refreshSession();
  return accessToken;
}

/** A per-tab client id, so this tab's upload progress reaches this tab. */
export function clientId() {
  let id = sessionStorage.getItem(CLIENT_KEY);
  if (!id) {
    id = "tab-" + Math.random().toString(36).slice(2, 12);
    sessionStorage.setItem(CLIENT_KEY, id);
  }
  return id;
}

let leaving = false;
/** Send the browser to the login page, remembering where to come back to (once: the page,
 * its connection and its API calls may all find the session gone at the same moment). */
export function goToLogin() {
  if (leaving) return;
  leaving = true;
  const next = location.pathname + location.search;
  location.replace(`/login?next=${encodeURIComponent(next)}`);
}

/** Resolves true when the tab has a session; otherwise sends it to /login (false). */
export async function requireLogin() {
  if (await ensureSession()) return true;
  goToLogin();
  return false;
}

/** Only same-site paths are followed after sign-in (no open redirect). */
export function safeNext(value) {
  if (!value || !value.startsWith("/")) return "/";
  try {
    const url = new URL(value, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : "/";
  } catch {
    return "/";
  }
}

function signedOutError() {
  const error = new Error("signed out: sign in again");
  error.code = "signed_out";
  error.status = 401;
  return error;
}

/**
 * Fetch JSON from the API with the tab's token; throws Error{code, status} on errors. The
 * first call waits for the session; a 401 gets one new token from the cookie and a retry,
 * and when that fails too (signed out, here or in another tab) the tab goes to /login.
 */
export async function api(path, { method = "GET", body, headers = {}, retried = false } = {}) {
  // Signing in and out needs no access token (and a 401 there is an answer, not a lapse).
  const authRoute = path.startsWith("/api/auth/session") || path.startsWith("/api/auth/login");
  if (!authRoute && !(await ensureSession())) {
    goToLogin();
    throw signedOutError();
  }
  const opts = { method, headers: { ...headers } };
  const token = getToken();
  if (token && !authRoute) opts.headers.Authorization = `Bearer ${token}`;
  if (body !== undefined && !(body instanceof FormData)) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  } else if (body) {
    opts.body = body;
  }
  const response = await fetch(path, opts);
  const data = await response.json().catch(() => ({}));
  if (response.status === 401 && !authRoute) {
    if (!retried && (await refreshSession())) return api(path, { method, body, headers, retried: true });
    clearTokens();
    goToLogin();
  }
  if (!response.ok) {
    const error = new Error(data?.error?.message || response.statusText);
    error.code = data?.error?.code || String(response.status);
    error.status = response.status;
    throw error;
  }
  return data;
}

/** Sign this browser out: the server revokes the session and every tab's token, clears the cookie. */
export async function logout() {
  try {
    await fetch("/api/auth/session", {
      method: "DELETE",
      credentials: "same-origin",
      headers: accessToken ? { Authorization: `Bearer ${accessToken}` } : {},
    });
  } finally {
    clearTokens();
  }
}

/** Sign in with a password: the server sets the session cookie, this tab keeps the access token. */
export async function login(username, password) {
  const data = await api("/api/auth/session", { method: "POST", body: { username, password } });
  setSession(data);
  return data;
}

// -- notifications when a watched job ends (opt-in) --------------------------------------

/** True when the user asked for notifications and the browser allows them. */
export function notificationsOn() {
  return "Notification" in window && Notification.permission === "granted" && localStorage.getItem(NOTIFY_KEY) === "on";
}

/** The notification's text for a job that ended: its outcome first. */
export function jobEndText(job) {
  const name = `${job.kind ? `${job.kind} ` : ""}job #${job.id}`;
  const result = job.result && typeof job.result === "object" ? job.result : {};
  const failed = Number(result.failed_count ?? result.failed ?? 0);
  const total = Number(result.total_count ?? result.total ?? 0);
  let outcome = job.status;
  if (job.status === "completed" && (failed > 0 || result.status === "failed")) {
    outcome = failed > 0 && total > 0 ? `completed with failures (${failed} of ${total} failed)` : "completed with failures";
  }
  const reason = job.error?.message ? `: ${job.error.message}` : "";
  return { title: `Herald: ${name} ${outcome}`, body: `${name} ${outcome}${reason}` };
}

/** Show the job-end notification if the user opted in (one per job, across tabs: tag). */
export function notifyJobEnded(job) {
  if (!notificationsOn()) return;
  const { title, body } = jobEndText(job);
  try {
    const notification = new Notification(title, { body, tag: `herald-job-${job.id}` });
    notification.onclick = () => { window.focus(); location.assign(`/jobs/${job.id}`); };
  } catch {
    // Some browsers allow notifications from a service worker only: nothing to show then.
  }
}

/** Wire the layout's opt-in button: permission is asked on its click only. */
function wireNotificationToggle(button) {
  if (!button || !("Notification" in window)) return;
  const render = () => {
    const blocked = Notification.permission === "denied";
    const on = notificationsOn();
    button.textContent = on ? "Notifications on" : "Notify me when jobs end";
    button.setAttribute("aria-pressed", String(on));
    button.disabled = blocked;
    button.title = blocked
      ? "Notifications are blocked for this site in the browser's settings"
      : on ? "You get a notification when a job you watch ends; click to stop" : "Get a browser notification when a job you watch ends";
  };
  button.hidden = false;
  render();
  button.addEventListener("click", async () => {
    if (notificationsOn()) {
      localStorage.setItem(NOTIFY_KEY, "off");
    } else {
      const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
      localStorage.setItem(NOTIFY_KEY, permission === "granted" ? "on" : "off");
    }
    render();
  });
}

/** Backoff for reconnects: 1 s doubling to 32 s (seed 001), with ±30 % jitter. */
export function backoffDelay(attempt) {
  const base = Math.min(32000, 1000 * 2 ** attempt);
  return Math.round(base * (0.7 + Math.random() * 0.6));
}

/** The state text every page shows in its role="status" element. */
export function stateText({ state, retryIn }) {
  return state === "reconnecting" ? `reconnecting in ${retryIn} s` : state;
}

const AUTH_ERRORS = new Set(["token_missing", "token_expired", "token_invalid", "token_revoked"]);

/**
 * A live connection. Emits state changes through onState({state, retryIn, error}) where
 * state is "connecting" | "connected" | "reconnecting" | "offline". Heartbeats are
 * Engine.IO's ping/pong, whose interval and timeout the server announces in its handshake.
 */
export class HeraldConnection {
  constructor({ onState = () => {}, onMessage = () => {}, onReconnect = () => {} } = {}) {
    this.onState = onState;
    this.onMessage = onMessage;
    this.onReconnect = onReconnect;
    this.jobs = new Map(); // jobId -> {lastSeq, handlers:Set, snapshotHandlers:Set}
    this.allHandlers = new Set();
    this.attempt = 0;
    this.retryTimer = null;
    this.countdown = null;
    this.everConnected = false;
    this.closed = false;
    this.wantOnline = navigator.onLine !== false;
    this.socket = io({
      auth: (cb) => cb({ token: getToken(), client_id: clientId() }),
      transports: ["websocket"],
      reconnection: false, // our own backoff, so the state text can count down
      timeout: 10000, // seed 001's connect timeout
      autoConnect: false, // once the tab has its access token (below)
    });
    this.socket.on("connect", () => {
      this._clearRetry();
      this.attempt = 0;
      this.onState({ state: "connected" });
      if (this.allHandlers.size) this.socket.emit("subscribe", { all: true });
      for (const [jobId, entry] of this.jobs) this._resubscribe(jobId, entry);
      if (this.everConnected) this.onReconnect();
      this.everConnected = true;
    });
    this.socket.on("connect_error", async (err) => {
      if (AUTH_ERRORS.has(err?.data?.code)) {
        if (await refreshSession()) { this.socket.connect(); return; }
        clearTokens();
        goToLogin();
        return;
      }
      this._scheduleReconnect(err);
    });
    this.socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") { this.onState({ state: "offline" }); return; }
      this._scheduleReconnect();
    });
    this.socket.onAny((event, message) => this._dispatch(event, message));
    // The browser knows when the network goes: say "offline" and reconnect as soon as it is back.
    window.addEventListener("offline", () => {
      this.wantOnline = false;
      this._clearRetry();
      this.socket.disconnect();
      this.onState({ state: "offline" });
    });
    window.addEventListener("online", () => {
      if (this.closed) return;
      this.wantOnline = true;
      this.attempt = 0;
      this._clearRetry();
      this.onState({ state: "connecting" });
      this.socket.connect();
    });
    this.onState({ state: this.wantOnline ? "connecting" : "offline" });
    ensureSession().then((ok) => {
      if (!ok) { goToLogin(); return; }
      if (this.wantOnline && !this.closed && !this.socket.connected) this.socket.connect();
    });
  }

  get connected() { return this.socket.connected; }

  _clearRetry() {
    clearTimeout(this.retryTimer);
    clearInterval(this.countdown);
    this.retryTimer = null;
    this.countdown = null;
  }

  _scheduleReconnect(err) {
    if (this.retryTimer || !this.wantOnline) return;
    const delay = backoffDelay(this.attempt++);
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.onState({ state: "reconnecting", retryIn: left, error: err?.data?.message || err?.message });
    };
    tick();
    this.countdown = setInterval(tick, 1000);
    this.retryTimer = setTimeout(() => {
      this._clearRetry();
      this.onState({ state: "connecting" });
      this.socket.connect();
    }, delay);
  }

  _dispatch(event, message) {
    if (message && message.job_id != null && this.jobs.has(message.job_id)) {
      const entry = this.jobs.get(message.job_id);
      if (event === "resync") {
        // What was missed is no longer kept on the server: start again from its snapshot.
        entry.lastSeq = message.data.last_seq;
        for (const handler of entry.snapshotHandlers) handler(message.data.job);
      } else if (message.seq != null) {
        if (message.seq <= entry.lastSeq) return; // already seen (replay overlap)
        if (message.seq > entry.lastSeq + 1) {
          // A durable event went missing (e.g. the server's message queue was away): ask for
          // everything after the last contiguous seq; the replay brings this one again.
          if (!entry.resyncing) this._resubscribe(message.job_id, entry);
          return;
        }
        entry.lastSeq = message.seq;
      }
      if (entry.live && event === "job_status" && TERMINAL_STATUSES.has(message.data?.status)) {
        notifyJobEnded({ ...entry.job, ...message.data, id: message.job_id });
      }
      for (const handler of entry.handlers) handler(message);
    } else if (message && message.job_id != null) {
      for (const handler of this.allHandlers) handler(message);
    }
    this.onMessage(event, message);
  }

  _resubscribe(jobId, entry) {
    const payload = { job_id: jobId, last_seq: entry.lastSeq };
    entry.resyncing = true;
    this.socket.emit("subscribe", payload, (ack) => {
      entry.resyncing = false;
      if (ack?.ok && ack.job) {
        entry.live = true;
        entry.job = ack.job;
        for (const handler of entry.snapshotHandlers) handler(ack.job);
      }
    });
  }

  /**
   * Follow a job from ``lastSeq`` (0: its whole history is replayed first): handler(message)
   * for each new event, exactly once and in seq order; onSnapshot(job) after each
   * (re)subscribe. After a reconnect the subscription resumes from the last seq seen, and
   * a gap in seqs (an event that never arrived) re-subscribes from the last contiguous one.
   * When the server no longer keeps the missed events it sends ``resync``: onSnapshot gets
   * its snapshot, the handlers get the ``resync`` message, and events go on from its head.
   */
  subscribe(jobId, handler, { lastSeq = 0, onSnapshot } = {}) {
    jobId = Number(jobId);
    let entry = this.jobs.get(jobId);
    if (!entry) {
      entry = { lastSeq, handlers: new Set(), snapshotHandlers: new Set(), live: false, job: { id: jobId } };
      this.jobs.set(jobId, entry);
    }
    entry.handlers.add(handler);
    if (onSnapshot) entry.snapshotHandlers.add(onSnapshot);
    return new Promise((resolve) => {
      if (!this.socket.connected) { resolve({ ok: true, queued: true }); return; } // sent on connect
      this.socket.emit("subscribe", { job_id: jobId, last_seq: entry.lastSeq }, (ack) => {
        if (!ack?.ok) this.jobs.delete(jobId);
        else {
          // What came before this ack was the replay; what comes after is live.
          entry.live = true;
          entry.job = ack.job;
          for (const h of entry.snapshotHandlers) h(ack.job);
        }
        resolve(ack);
      });
    });
  }

  unsubscribe(jobId) {
    jobId = Number(jobId);
    if (!this.jobs.delete(jobId)) return;
    if (this.socket.connected) this.socket.emit("unsubscribe", { job_id: jobId });
  }

  /** Every job event of this user for jobs not subscribed one by one (new jobs appear). */
  subscribeAll(handler) {
    this.allHandlers.add(handler);
    if (this.socket.connected) this.socket.emit("subscribe", { all: true });
  }

  emit(event, payload) {
    return new Promise((resolve) => this.socket.emit(event, payload, resolve));
  }

  /** Disconnect for good (sign out): no reconnect, not even when the network comes back. */
  close() {
    this.closed = true;
    this.wantOnline = false;
    this._clearRetry();
    this.socket.disconnect();
  }
}

/**
 * Page start-up: show the user and the connection state in the layout, wire "Sign out"
 * and the notifications opt-in, and open the connection, which connects once the tab has
 * its access token (from the session cookie; without a session the tab goes to /login).
 */
export function startPage(options = {}) {
  const stateEl = document.getElementById("connection-state");
  const who = document.getElementById("who");
  ensureSession().then((ok) => {
    if (!ok) { goToLogin(); return; }
    if (who) who.textContent = username() || "";
  });
  const { onState = () => {}, ...rest } = options;
  const conn = new HeraldConnection({
    ...rest,
    onState: (s) => {
      stateEl.textContent = stateText(s);
      stateEl.dataset.state = s.state;
      onState(s);
    },
  });
  const signOut = document.getElementById("sign-out");
  if (signOut) {
    signOut.hidden = false;
    signOut.addEventListener("click", async () => {
      conn.close(); // no reconnect attempt with the token being revoked
      await logout();
      location.assign("/login");
    });
  }
  wireNotificationToggle(document.getElementById("notify-toggle"));
  return conn;
}

// -- formatting shared by the pages ------------------------------------------------

export function formatPercent(percent) {
  return `${Math.max(0, Math.min(100, Math.floor(percent ?? 0)))}%`;
}

/** Set a <progress> and its aria text from a percent. */
export function setProgress(el, percent) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  el.value = value;
  el.setAttribute("aria-valuenow", String(Math.floor(value)));
  el.setAttribute("aria-valuetext", formatPercent(value));
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) if (child != null) node.append(child);
  return node;
}
