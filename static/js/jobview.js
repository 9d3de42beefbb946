// One job as the pages show it: a model that merges REST snapshots and live messages
// (the higher seq wins), and a summary view (badge, bar, percent, rate, ETA, elapsed, counts).
import {
  TERMINAL_STATUSES, el, elapsedSeconds, formatPercent, formatRate, formatSeconds, setProgress,
} from "./herald.js";

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

/** The summary block; update(model) redraws it. */
export class JobSummary {
  constructor(jobId, { compact = false } = {}) {
    this.badge = el("span", { class: "badge", "data-testid": "status" });
    this.bar = el("progress", {
      max: "100", value: "0", "aria-label": `Job ${jobId} progress`,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
    });
    this.percent = el("span", { class: "percent", "data-testid": "percent", text: "0%" });
    this.rate = el("dd", { text: "–" });
    this.eta = el("dd", { text: "–" });
    this.elapsed = el("dd", { text: "–" });
    this.counts = el("p", { class: "counts", hidden: true });
    this.message = el("p", { class: "job-message muted" });
    this.node = el(
      "div", { class: compact ? "summary compact" : "summary" },
      el("div", { class: "bar-row" }, this.badge, this.bar, this.percent),
      el("dl", { class: "stats" },
        el("div", {}, el("dt", { text: "rate" }), this.rate),
        el("div", {}, el("dt", { text: "ETA" }), this.eta),
        el("div", {}, el("dt", { text: "elapsed" }), this.elapsed)),
      this.counts,
      this.message,
    );
  }

  update(model) {
    const job = model.job;
    this.badge.textContent = job.status;
    this.badge.dataset.status = job.status;
    const p = job.progress || {};
    const percent = p.percent ?? (job.status === "completed" && !p.total ? 100 : 0);
    setProgress(this.bar, percent);
    this.percent.textContent = formatPercent(percent);
    const active = !model.terminal;
    this.rate.textContent = active ? formatRate(p.rate) : "–";
    this.eta.textContent = active ? formatSeconds(p.eta) : "–";
    this.tick(model);
    const counts = job.counts || {};
    const parts = COUNT_KEYS.filter(([key]) => counts[key] != null).map(([key, label]) => `${label} ${counts[key]}`);
    this.counts.hidden = parts.length === 0;
    this.counts.textContent = parts.join(" · ");
    const text = job.error ? `${job.error.code}: ${job.error.message}` : job.message || p.message || "";
    this.message.textContent = text;
    this.message.classList.toggle("error", Boolean(job.error));
  }

  /** Elapsed time moves every second while the job runs. */
  tick(model) {
    this.elapsed.textContent = formatSeconds(elapsedSeconds(model.job));
  }
}
