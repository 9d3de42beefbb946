// <herald-progress>: one Herald job's live progress on any page. No framework, no build.
//
//   <script src="https://herald.example/static/widget/herald-progress.js"></script>
//   <herald-progress job="42" token-endpoint="/my/token" log-lines="20"></herald-progress>
//
// The element POSTs {"job_id": 42} to `token-endpoint` (on the host page's own site, with
// its cookies); the host's backend asks Herald for a stream token (POST /api/stream-tokens
// with its own Herald credentials) and answers Herald's JSON as is. The element then
// follows the job over Server-Sent Events (GET /api/jobs/<id>/stream?token=…), resumes
// after any drop from the last event it has (the browser's Last-Event-ID, or, with a fresh
// token, ?last_event_id=). Every reconnect of its own waits (1 s doubling to 30 s, with
// jitter): a host whose tokens Herald keeps refusing, or a user at its connection cap, never
// makes it loop. With the `cancelable` attribute (the host page sets it when the visitor may
// cancel) it shows a Cancel button; a click asks the endpoint with {"job_id", "cancel":
// true} and sends the cancel token it gets to POST /api/jobs/<id>/cancel. docs/PLATFORM.md
// has the whole flow; examples/widget/ has plain-HTML, React and Vue pages.
//
// Attributes: job (required), token-endpoint (required), server (Herald's origin; default:
// where this script was loaded from), log-lines (0 = no log), label, cancelable.
// Reflected for styling and scripts: state = connecting | pending | running | completed |
// failed | cancelled | busy (Herald's connection cap; retrying) | error; last-event-id.
// Events: herald-update, herald-end, herald-error (detail {code, message, retrying}).
// Style: CSS custom properties (--herald-*) and ::part(root|header|label|status|bar|fill|
// numbers|percent|rate|eta|message|log|cancel|error).
(() => {
  "use strict";

  if (window.customElements.get("herald-progress")) return;

  const SCRIPT_ORIGIN = (() => {
    try {
      return new URL(document.currentScript.src).origin;
    } catch {
      return window.location.origin;
    }
  })();
  const FINAL = new Set(["completed", "failed", "cancelled"]);
  const RETRY_MIN_MS = 1000;
  const RETRY_MAX_MS = 30000;
  // A stream open this long was healthy: the next reconnect starts the backoff afresh.
  const HEALTHY_MS = 10000;
  // Refusals of a stream token that a fresh token may cure (a stale one expired meanwhile).
  const TOKEN_REFUSALS = new Set(["token_expired", "token_missing", "token_invalid"]);
  const NUMBER = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

  const STYLE = `
    :host { display: block; font: var(--herald-font, 14px/1.4 system-ui, sans-serif);
            color: var(--herald-text, #1f2328); }
    [part=root] { border: 1px solid var(--herald-border, #d0d7de); border-radius: var(--herald-radius, 6px);
                  padding: var(--herald-padding, 10px 12px); background: var(--herald-background, #fff); }
    [part=header] { display: flex; gap: 8px; align-items: baseline; margin-bottom: 6px; }
    [part=label] { font-weight: 600; flex: 1; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
    [part=status] { font-size: .85em; padding: 0 6px; border-radius: 999px;
                    background: var(--herald-status-background, #eaeef2); }
    [part=bar] { height: var(--herald-bar-height, 10px); background: var(--herald-track, #eaeef2);
                 border-radius: var(--herald-radius, 6px); overflow: hidden; }
    [part=fill] { height: 100%; width: 0; background: var(--herald-bar, #0969da); transition: width .2s; }
    [part=numbers] { display: flex; gap: 12px; font-size: .85em; color: var(--herald-muted, #57606a); margin-top: 4px; }
    [part=message] { font-size: .85em; margin-top: 4px; min-height: 1.2em; }
    [part=log] { margin: 6px 0 0; max-height: 14em; overflow: auto; font: var(--herald-log-font, 12px/1.35 ui-monospace, monospace);
                 background: var(--herald-log-background, #f6f8fa); padding: 4px 6px; white-space: pre-wrap; }
    [part=error] { margin-top: 6px; padding: 6px 8px; border-radius: var(--herald-radius, 6px);
                   color: var(--herald-error-text, #fff); background: var(--herald-error, #cf222e); font-weight: 600; }
    [part=cancel] { font: inherit; font-size: .85em; }
    :host([state=completed]) [part=fill] { background: var(--herald-success, #1a7f37); }
    :host([state=failed]) [part=fill], :host([state=error]) [part=fill] { background: var(--herald-error, #cf222e); }
    :host([state=cancelled]) [part=fill] { background: var(--herald-muted, #57606a); }
    [hidden] { display: none !important; }
  `;

  function formatEta(seconds) {
    if (seconds == null || !Number.isFinite(Number(seconds))) return "";
    let s = Math.max(0, Math.round(Number(seconds)));
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    return `ETA ${h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`}`;
  }

  function formatRate(rate) {
    if (rate == null || !Number.isFinite(Number(rate))) return "";
    return `${NUMBER.format(Number(rate))}/s`;
  }

  class HeraldProgress extends HTMLElement {
    static get observedAttributes() {
      return ["job", "token-endpoint", "server", "log-lines", "label", "cancelable"];
    }

    constructor() {
      super();
      const root = this.attachShadow({ mode: "open" });
      root.innerHTML = `
        <style>${STYLE}</style>
        <div part="root" role="group">
          <div part="header">
            <span part="label"></span>
            <span part="status" role="status" aria-live="polite"></span>
            <button part="cancel" type="button" hidden>Cancel</button>
          </div>
          <div part="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div part="fill"></div></div>
          <div part="numbers"><span part="percent"></span><span part="rate"></span><span part="eta"></span></div>
          <div part="message"></div>
          <div part="error" role="alert" hidden></div>
          <pre part="log" hidden></pre>
        </div>`;
      this._el = {};
      for (const name of ["label", "status", "cancel", "bar", "fill", "percent", "rate", "eta", "message", "error", "log"]) {
        this._el[name] = root.querySelector(`[part=${name}]`);
      }
      this._el.cancel.addEventListener("click", () => this.cancel());
      this._source = null;
      this._generation = 0;
      this._retryTimer = null;
      this._reset();
    }

    connectedCallback() {
      this._restart();
    }

    disconnectedCallback() {
      this._stop();
    }

    attributeChangedCallback(name, before, after) {
      if (before === after || !this.isConnected) return;
      if (name === "job" || name === "token-endpoint" || name === "server") this._restart();
      else if (name === "log-lines") this._renderLog();
      else if (name === "cancelable") this._renderCancel();
      else this._renderLabel();
    }

    /** The last durable event shown, "<job_id>:<seq>" (what a resume starts after). */
    get lastEventId() {
      return this._lastSeq ? `${this._jobId}:${this._lastSeq}` : "";
    }

    /** The job as last known: {status, progress, error, result, kind, …}. */
    get jobState() {
      return { ...this._job };
    }

    /** The `job` attribute as a property (frameworks set properties of custom elements). */
    get job() {
      return this.getAttribute("job");
    }

    set job(value) {
      this.setAttribute("job", String(value));
    }

    // -- connection ------------------------------------------------------------------

    _reset() {
      this._jobId = this.getAttribute("job");
      this._job = {};
      this._lastSeq = 0;
      this._lines = [];
      this._ended = false;
      this._listened = new Set();
      this._retryMs = RETRY_MIN_MS;
      // When the current stream opened (0: it has not): a token refused before is a fresh one.
      this._openedAt = 0;
      // The code Herald refused the last freshly fetched token with ("" after a good stream).
      this._refusedFresh = "";
      // A trouble shown while retrying ("" when none): the error box, state error or busy.
      this._trouble = "";
    }

    _restart() {
      this._stop();
      this._reset();
      this._setState("connecting");
      this._el.error.hidden = true;
      this._renderAll();
      if (!this._jobId || !this.getAttribute("token-endpoint")) {
        this._fail("missing_attribute", "<herald-progress> needs job and token-endpoint attributes");
        return;
      }
      this._connect();
    }

    _stop() {
      this._generation += 1;
      clearTimeout(this._retryTimer);
      if (this._source) this._source.close();
      this._source = null;
    }

    get _server() {
      return (this.getAttribute("server") || SCRIPT_ORIGIN).replace(/\/+$/, "");
    }

    async _token(cancel) {
      const response = await fetch(this.getAttribute("token-endpoint"), {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify(cancel ? { job_id: Number(this._jobId), cancel: true } : { job_id: Number(this._jobId) }),
      });
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      if (!response.ok || !body || !body.token) {
        const error = (body && body.error) || {};
        const refusal = new Error(error.message || `the token endpoint answered ${response.status}`);
        refusal.code = error.code || `http_${response.status}`;
        refusal.status = response.status;
        throw refusal;
      }
      return body;
    }

    async _connect() {
      const generation = this._generation;
      let grant;
      try {
        grant = await this._token(false);
      } catch (error) {
        if (generation !== this._generation) return;
        if (error.status === 429) this._busy(generation, error.code, error.message);
        else if (error.status && error.status < 500) this._fail(error.code, error.message);
        else this._retryLater(generation, error.message);
        return;
      }
      if (generation !== this._generation) return;
      this._openedAt = 0;
      const params = new URLSearchParams({ token: grant.token });
      if (this._lastSeq) params.set("last_event_id", this.lastEventId);
      const url = `${this._server}/api/jobs/${encodeURIComponent(this._jobId)}/stream?${params}`;
      const source = new EventSource(url);
      this._source = source;
      const on = (type, handler) => {
        if (this._listened.has(`${generation}:${type}`)) return;
        this._listened.add(`${generation}:${type}`);
        source.addEventListener(type, (event) => {
          if (generation !== this._generation) return;
          let message;
          try {
            message = JSON.parse(event.data);
          } catch {
            return;
          }
          handler(message);
        });
      };
      this._listen = on;
      on("snapshot", (message) => this._onSnapshot(message.data.job));
      on("resync", (message) => this._onResync(message.data));
      on("job_status", (message) => this._onDurable(message, () => this._onStatus(message.data)));
      on("job_log", (message) => this._onDurable(message, () => this._onLog(message.data)));
      on("job_message", (message) => this._onDurable(message, () => this._onMessage(message.data.message)));
      on("job_counts", (message) => this._onDurable(message, () => {}));
      on("job_progress", (message) => this._onProgress(message.data));
      on("error", (message) => this._onServerError(message));
      source.addEventListener("open", () => {
        if (generation !== this._generation) return;
        this._openedAt = Date.now();
        this._refusedFresh = "";
        this._clearTrouble();
      });
      source.onerror = () => {
        if (generation !== this._generation) return;
        if (source.readyState === EventSource.CLOSED) this._onClosed(generation, url);
        // CONNECTING: the browser reconnects by itself, sending Last-Event-ID.
      };
    }

    async _onClosed(generation, url) {
      this._source = null;
      if (this._ended) return;
      // EventSource does not say why it gave up: ask the same URL once to read the refusal.
      let status = 0;
      let error = {};
      try {
        const controller = new AbortController();
        const response = await fetch(url, { signal: controller.signal, headers: { Accept: "text/event-stream" } });
        status = response.status;
        if (!response.ok || status === 204) {
          try {
            error = (await response.json()).error || {};
          } catch {
            error = {};
          }
        }
        controller.abort();
      } catch {
        status = 0; // unreachable: the server is away (restarting)
      }
      if (generation !== this._generation || this._ended) return;
      if (status === 204) {
        this._ended = true;
        return;
      }
      if (status === 401 && TOKEN_REFUSALS.has(error.code)) {
        // A stream that was open has a stale token (it expired meanwhile): fetch a fresh one.
        // A token fetched just now and refused at once is the host's or Herald's fault
        // (another Herald's token, a rotated secret): a second one in a row is shown.
        if (!this._openedAt) {
          if (this._refusedFresh) {
            this._showTrouble(
              "error",
              error.code,
              `Herald refuses the stream tokens of this page's token endpoint: ${error.message || error.code}`,
            );
          }
          this._refusedFresh = error.code;
        }
        this._retryLater(generation, "reconnecting with a fresh token…");
        return;
      }
      if (status === 429) {
        this._busy(generation, error.code || "too_many_connections", error.message || "too many connections");
        return;
      }
      if (status >= 400 && status < 500) {
        this._fail(error.code || `http_${status}`, error.message || `Herald refused the stream (${status})`);
        return;
      }
      this._retryLater(generation, "reconnecting…");
    }

    /** Reconnect with a fresh token after a backoff (1 s doubling to 30 s, with jitter). */
    _retryLater(generation, why) {
      if (this._openedAt && Date.now() - this._openedAt >= HEALTHY_MS) this._retryMs = RETRY_MIN_MS;
      this._openedAt = 0;
      if (!this._trouble) this._setState(this._activeState());
      clearTimeout(this._retryTimer);
      const wait = Math.round(this._retryMs * (0.5 + Math.random() * 0.5));
      this._retryMs = Math.min(this._retryMs * 2, RETRY_MAX_MS);
      this._el.message.textContent = `${why} (retrying in ${Math.max(1, Math.round(wait / 1000))} s)`;
      this._source = null;
      this._retryTimer = setTimeout(() => {
        if (generation !== this._generation) return;
        this._stop();
        this._connect();
      }, wait);
    }

    /** Herald's connection cap for this user is reached: not final, retry with a backoff. */
    _busy(generation, code, text) {
      this._showTrouble("busy", code, `Herald is busy (${text}); retrying`, { silent: true });
      this._retryLater(generation, "busy: Herald has no free connection for this site");
    }

    _activeState() {
      return this._job.status && !FINAL.has(this._job.status) ? this._job.status : "connecting";
    }

    /** Show a trouble that retrying may cure: state `error` (red box, herald-error) or `busy`. */
    _showTrouble(state, code, text, { silent = false } = {}) {
      const first = this._trouble !== `${state}:${code}`;
      this._trouble = `${state}:${code}`;
      this._setState(state);
      if (state === "error") {
        this._el.error.hidden = false;
        this._el.error.textContent = `Job ${this._jobId ?? "?"}: ${text} (${code}); still retrying`;
      }
      this._renderAll();
      if (first && !silent) this._emit("herald-error", { code, message: text, retrying: true });
    }

    /** A stream opened: whatever trouble was shown is over. */
    _clearTrouble() {
      this._el.message.textContent = "";
      if (!this._trouble) return;
      this._trouble = "";
      this._el.error.hidden = true;
      this._setState(this._activeState());
      this._renderAll();
    }

    // -- messages --------------------------------------------------------------------

    _onSnapshot(job) {
      this._job = { ...this._job, ...job };
      const progressType = job.progress && job.progress.type;
      for (const type of new Set([progressType, `${job.kind}_progress`])) {
        if (type && type !== "job_progress") this._listen(type, (message) => this._onProgress(message.data));
      }
      if (job.status && !this._lastSeq) this._setState(job.status);
      this._renderAll();
    }

    _onResync(data) {
      // The history we would resume from is gone: start again from the snapshot.
      this._lines = [];
      this._lastSeq = Number(data.last_seq) || 0;
      this._onSnapshot(data.job);
      this._setState(data.job.status);
      this._renderAll();
    }

    _onDurable(message, apply) {
      if (message.seq <= this._lastSeq) return; // already shown (a replay overlap)
      this._lastSeq = message.seq;
      this.setAttribute("last-event-id", this.lastEventId);
      apply();
    }

    _onStatus(data) {
      this._job.status = data.status;
      if (data.error) this._job.error = data.error;
      if (data.result !== undefined) this._job.result = data.result;
      this._setState(data.status);
      if (data.status === "completed") this._job.progress = { ...(this._job.progress || {}), percent: 100, eta: 0 };
      if (FINAL.has(data.status)) this._end();
      this._renderAll();
      this._emit("herald-update");
    }

    _onLog(data) {
      this._lines.push(`${data.level === "info" ? "" : `[${data.level}] `}${data.message}`);
      const keep = Math.max(0, Number(this.getAttribute("log-lines")) || 0);
      if (this._lines.length > Math.max(keep, 1)) this._lines.splice(0, this._lines.length - Math.max(keep, 1));
      this._renderLog();
    }

    _onMessage(text) {
      this._job.message = text;
      this._renderAll();
    }

    _onProgress(data) {
      if (FINAL.has(this._job.status)) return;
      this._job.progress = data;
      this._renderAll();
      this._emit("herald-update");
    }

    _onServerError(message) {
      // An `error` event from Herald (the session's token expired or was revoked): the
      // stream ends; a fresh token resumes it.
      if (!message || !message.code) return;
      const generation = this._generation;
      if (this._source) this._source.close();
      this._retryLater(generation, `the stream ended (${message.code})`);
    }

    _end() {
      this._ended = true;
      this._stop();
      this._emit("herald-end");
    }

    _fail(code, text) {
      this._ended = true;
      this._stop();
      this._setState("error");
      this._trouble = "";
      this._el.error.hidden = false;
      this._el.error.textContent = `Job ${this._jobId ?? "?"}: ${text} (${code})`;
      this._renderAll();
      this._emit("herald-error", { code, message: text, retrying: false });
    }

    // -- cancel ----------------------------------------------------------------------

    /** Ask Herald to cancel the job (with a cancel token the endpoint hands out on request). */
    async cancel() {
      if (!this._cancelShown()) return;
      this._el.cancel.disabled = true;
      try {
        const grant = await this._token(true);
        if (!grant.cancel_token) throw new Error("the token endpoint gave no cancel token");
        const response = await fetch(`${this._server}/api/jobs/${encodeURIComponent(this._jobId)}/cancel`, {
          method: "POST",
          headers: { Authorization: `Bearer ${grant.cancel_token}` },
        });
        if (!response.ok && response.status !== 409) {
          const body = await response.json().catch(() => ({}));
          throw new Error((body.error && body.error.message) || `cancel answered ${response.status}`);
        }
      } catch (error) {
        this._el.message.textContent = `Cancel failed: ${error.message}`;
        this._el.cancel.disabled = false;
      }
    }

    // -- rendering -------------------------------------------------------------------

    _setState(state) {
      if (state) this.setAttribute("state", state);
    }

    _emit(type, detail) {
      this.dispatchEvent(new CustomEvent(type, { detail: detail || this.jobState, bubbles: true, composed: true }));
    }

    _renderLabel() {
      const kind = this._job.kind ? ` (${this._job.kind})` : "";
      this._el.label.textContent = this.getAttribute("label") || `Job #${this._jobId ?? "?"}${kind}`;
    }

    /** Cancel is offered when the host page says so (`cancelable`) and the job is active. */
    _cancelShown() {
      return this.hasAttribute("cancelable") && !this._ended && Boolean(this._job.status) && !FINAL.has(this._job.status);
    }

    _renderCancel() {
      const shown = this._cancelShown();
      if (shown && this._el.cancel.hidden) this._el.cancel.disabled = false;
      this._el.cancel.hidden = !shown;
    }

    _renderLog() {
      const keep = Math.max(0, Number(this.getAttribute("log-lines")) || 0);
      this._el.log.hidden = keep === 0 || this._lines.length === 0;
      this._el.log.textContent = this._lines.slice(-keep).join("\n");
      this._el.log.scrollTop = this._el.log.scrollHeight;
    }

    _renderAll() {
      const job = this._job;
      const progress = job.progress || {};
      const state = this.getAttribute("state") || "connecting";
      this._renderLabel();
      this._el.status.textContent =
        state === "busy" ? "busy, retrying" : state === "error" ? "error" : job.outcome === "failures" ? "completed with failures" : state;
      const percent = Number.isFinite(Number(progress.percent)) ? Math.max(0, Math.min(100, Number(progress.percent))) : 0;
      this._el.fill.style.width = `${percent}%`;
      this._el.bar.setAttribute("aria-valuenow", String(Math.round(percent)));
      this._el.percent.textContent = progress.percent == null ? "" : `${NUMBER.format(percent)}%`;
      const active = !FINAL.has(job.status);
      this._el.rate.textContent = active ? formatRate(progress.rate) : "";
      this._el.eta.textContent = active ? formatEta(progress.eta) : "";
      if (job.status === "failed" && job.error) {
        this._el.error.hidden = false;
        this._el.error.textContent = `Failed: ${job.error.message} (${job.error.code})`;
        this._el.message.textContent = "";
      } else if (state !== "error") {
        this._el.message.textContent = job.message || progress.message || "";
      }
      this._renderCancel();
      this._renderLog();
    }
  }

  window.customElements.define("herald-progress", HeraldProgress);
})();
