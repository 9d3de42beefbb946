// One job as the pages show it: a model that merges REST snapshots and live messages
// (the higher seq wins), and a summary view (outcome badge, bar, percent, done, rate with
// its unit, ETA, elapsed, counts).
import { TERMINAL_STATUSES, el, formatPercent, setProgress } from "./herald.js";
import {
  countsText, durationOf, resultSummary, formatBytes, formatCount, formatDuration, formatRate, outcomeOf, unitOf,
} from "./format.js";

export const COUNT_KEYS = [
  ["success_count", "success"],
  ["failed_count", "failed"],
  ["running_count", "running"],
  ["pending_count", "pending"],
  ["total_count", "total"],
];

/** A progress tick: no seq, a type ending in "progress" (job_progress, data_import_progress …). */
export function isProgress(message) {
  return message.seq == null && typeof message.type === "string" && message.type.endsWith("progress");
}

export class JobModel {
  constructor(job) {
    this.job = { ...job };
    this.seenSeq = job.last_seq ?? 0;
  }

  get terminal() { return TERMINAL_STATUSES.has(this.job.status); }

  /** A REST or subscribe snapshot: applied only when it is at least as new as what we saw. */
  applySnapshot(job) {
    if (!job || (job.last_seq ?? 0) < this.seenSeq) return false;
    const progress = this.job.progress;
    this.job = { ...this.job, ...job };
    // A live tick newer than the stored one stays (ticks have no seq; the row lags them).
    if (progress && job.progress && (progress.current ?? 0) > (job.progress.current ?? 0) && !this.terminal) {
      this.job.progress = progress;
    }
    this.seenSeq = job.last_seq ?? this.seenSeq;
    return true;
  }

  /** A live or replayed message; returns true when the summary changed. */
  applyMessage(message) {
    const data = message.data || {};
    if (isProgress(message)) {
      if (this.terminal && this.job.status !== "completed") return false;
      this.job.progress = data;
      return true;
    }
    if (message.seq != null) {
      if (message.seq <= this.seenSeq) return false; // the snapshot already holds it
      this.seenSeq = Math.max(this.seenSeq, message.seq);
      this.job.last_seq = this.seenSeq;
    }
    switch (message.type) {
      case "job_status":
        this.job.status = data.status;
        if ("result" in data) this.job.result = data.result;
        if ("error" in data) this.job.error = data.error;
        if ("message" in data) this.job.message = data.message;
        if (data.status === "running" && !this.job.started_at) this.job.started_at = message.timestamp;
        if (TERMINAL_STATUSES.has(data.status) && !this.job.finished_at) this.job.finished_at = message.timestamp;
        return true;
      case "job_counts":
        this.job.counts = data;
        return true;
      case "job_message":
        this.job.message = data.message;
        return true;
      default:
        return false;
    }
  }
}

/** The summary block; update(model) redraws it. The badge and the bar carry the outcome. */
export class JobSummary {
  constructor(jobId, { compact = false, showError = true } = {}) {
    this.showError = showError;
    this.badge = el("span", { class: "badge", "data-testid": "status" });
    this.bar = el("progress", {
      max: "100", value: "0", "aria-label": `Job ${jobId} progress`,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
    });
    this.percent = el("span", { class: "percent", "data-testid": "percent", text: "0%" });
    this.done = el("dd", { text: "–" });
    this.rate = el("dd", { text: "–" });
    this.eta = el("dd", { text: "–" });
    this.elapsed = el("dd", { text: "–" });
    this.counts = el("p", { class: "counts", hidden: true });
    this.message = el("p", { class: "job-message muted" });
    this.node = el(
      "div", { class: compact ? "summary compact" : "summary" },
      el("div", { class: "bar-row" }, this.badge, this.bar, this.percent),
      el("dl", { class: "stats" },
        el("div", {}, el("dt", { text: "done" }), this.done),
        el("div", {}, el("dt", { text: "rate" }), this.rate),
        el("div", {}, el("dt", { text: "ETA" }), this.eta),
        el("div", {}, el("dt", { text: "elapsed" }), this.elapsed)),
      this.counts,
      this.message,
    );
  }

  update(model) {
    const job = model.job;
    showOutcome(this, job);
    const p = job.progress || {};
    const unit = unitOf(job.kind);
    this.done.textContent = progressDone(job, unit);
    const active = !model.terminal;
    this.rate.textContent = active ? formatRate(p.rate, unit === "%" ? "%" : unit) : "–";
    this.eta.textContent = active ? formatDuration(p.eta) : "–";
    this.tick(model);
    const text = countsText(job.counts) || resultSummary(job);
    this.counts.hidden = !text;
    this.counts.textContent = text;
    const error = job.error && this.showError ? `${job.error.code}: ${job.error.message}` : "";
    this.message.textContent = error || (job.error ? "" : job.message || p.message || "");
    this.message.classList.toggle("error", Boolean(error));
  }

  /** Elapsed time moves every second while the job runs. */
  tick(model) {
    this.elapsed.textContent = formatDuration(durationOf(model.job));
  }
}

/** A job's outcome on its row or summary (``node``, ``badge``, ``bar``, ``percent``): the
 * label, the state the styles colour by, and the bar's percent. */
export function showOutcome(view, job) {
  const { state, label } = outcomeOf(job);
  view.node.dataset.state = state;
  view.badge.textContent = label;
  view.badge.dataset.status = state;
  view.bar.dataset.state = state;
  const p = job.progress || {};
  const percent = p.percent ?? (job.status === "completed" && !p.total ? 100 : 0);
  setProgress(view.bar, percent);
  view.percent.textContent = formatPercent(percent);
  return state;
}

/** "12,400 of 400,000 rows" from a tick (imports carry their own row counts). */
export function progressDone(job, unit = unitOf(job.kind)) {
  const p = job.progress || {};
  if (p.processed_rows != null) return `${formatCount(p.processed_rows)} of ${formatCount(p.total_rows)} rows`;
  if (unit === "bytes" && p.received_bytes != null) return `${formatBytes(p.received_bytes)} of ${formatBytes(p.total_bytes)}`;
  if (p.current == null || p.total == null || unit === "%") return "–";
  const current = Number.isInteger(p.current) ? formatCount(p.current) : String(Math.floor(p.current));
  return `${current} of ${formatCount(p.total)} ${unit}`;
}
