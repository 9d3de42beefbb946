// Numbers, units, times and outcomes as every page shows them: "12,400 rows/s",
// "3 of 6 cases failed", "completed with failures". One place, so pages agree.

const NUMBER = new Intl.NumberFormat("en-US");
const DECIMAL = new Intl.NumberFormat("en-US", { maximumFractionDigits: 1 });

/** 12400 → "12,400"; null → "–". */
export function formatCount(n) {
  if (n == null || !Number.isFinite(Number(n))) return "–";
  return NUMBER.format(Math.round(Number(n)));
}

/** "1 row" / "12,400 rows". */
export function plural(n, unit, units = `${unit}s`) {
  return `${formatCount(n)} ${Number(n) === 1 ? unit : units}`;
}

/** A rate with its unit: "12,400 rows/s", "3.2 steps/s", "1.5 MiB/s" for bytes. */
export function formatRate(rate, unit = "items") {
  if (rate == null || !Number.isFinite(Number(rate))) return "–";
  if (unit === "bytes") return `${formatBytes(rate)}/s`;
  const value = Number(rate) >= 10 ? NUMBER.format(Math.round(Number(rate))) : DECIMAL.format(Number(rate));
  return `${value} ${unit}/s`;
}

export function formatBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? DECIMAL.format(v) : NUMBER.format(Math.round(v))} ${units[i]}`;
}

/** 75 → "1m 15s"; 4000 → "1h 6m"; 0.4 → "0.4s". */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(Number(seconds))) return "–";
  const raw = Math.max(0, Number(seconds));
  if (raw < 1) return `${Math.round(raw * 1000)} ms`;
  if (raw < 10 && raw % 1) return `${DECIMAL.format(raw)}s`;
  let s = Math.round(raw);
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  return h ? `${h}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** An ISO instant in local time: "2026-12-07 05:20:11". */
export function formatDateTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "–";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The time of day with milliseconds, for log lines: "05:20:11.042". */
export function formatClock(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** Seconds between started and finished (or now while running). */
export function durationOf(job) {
  if (!job.started_at) return null;
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  return (end - Date.parse(job.started_at)) / 1000;
}

/** What a kind's progress counts, for "N of M <unit>" and rates. */
export function unitOf(kind) {
  return {
    data_import: "rows", batch_report: "reports", batch_execution: "cases",
    file_upload: "bytes", simulate: "steps", api_test: "steps", workflow: "%",
  }[kind] || "items";
}

/**
 * A job's outcome as the pages show it: {state, label}. ``state`` is the badge and bar
 * colour: pending, running, succeeded, failures (amber), failed (red), cancelled (grey).
 * The server's ``outcome`` is the truth; a live terminal event reaches the page before the
 * next snapshot, so the same rule is read from the result meanwhile.
 */
export function outcomeOf(job) {
  const status = job.status;
  if (status === "pending" || status === "running") return { state: status, label: status };
  let outcome = job.outcome;
  if (!outcome) {
    if (status !== "completed") outcome = status;
    else outcome = resultHasFailures(job) ? "failures" : "succeeded";
  }
  const label = {
    succeeded: "completed", failures: "completed with failures", failed: "failed", cancelled: "cancelled",
  }[outcome] || status;
  return { state: outcome, label };
}

function resultHasFailures(job) {
  const r = job.result;
  if (!r || typeof r !== "object") return false;
  if (job.kind === "api_test") return r.status !== "passed";
  if (job.kind === "batch_execution") return Number(r.failed_count) > 0;
  if (job.kind === "data_import") {
    const limit = job.params?.max_rejected_rows;
    return limit != null && Number(r.rejected_rows) > Number(limit);
  }
  return false;
}

/** "3 of 6 cases failed · 3 passed" from a batch's counts. */
export function countsText(counts) {
  if (!counts || counts.total_count == null) return "";
  const parts = [];
  const total = counts.total_count;
  if (counts.failed_count) parts.push(`${formatCount(counts.failed_count)} of ${plural(total, "case")} failed`);
  if (counts.success_count) parts.push(`${formatCount(counts.success_count)} passed`);
  if (counts.running_count) parts.push(`${formatCount(counts.running_count)} running`);
  if (counts.pending_count) parts.push(`${formatCount(counts.pending_count)} pending`);
  if (!counts.failed_count) parts.unshift(plural(total, "case"));
  return parts.join(" · ");
}

/** A short one-line summary of a job's params for tables: "Steps 20 · Seconds per step 0.2"
 * (names from the kind's schema titles when ``schema`` is given). */
export function paramsSummary(params, { max = 80, schema = null } = {}) {
  if (!params || typeof params !== "object") return "";
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value == null || key === "steps" && Array.isArray(value)) continue;
    let text;
    if (Array.isArray(value)) text = value.length <= 6 && value.every((v) => typeof v !== "object") ? value.join(",") : `${value.length} items`;
    else if (typeof value === "object") text = "{…}";
    else text = String(value);
    parts.push(`${schema?.properties?.[key]?.title || key} ${text}`);
  }
  const line = parts.join(" · ");
  return line.length > max ? line.slice(0, max - 1) + "…" : line;
}

/** What a finished job's result says in one line: "1,199 imported · 1 rejected", "1 of 3 steps failed". */
export function resultSummary(job) {
  const r = job.result;
  if (!r || typeof r !== "object") return "";
  if (job.kind === "data_import" && r.imported_rows != null) {
    return `${formatCount(r.imported_rows)} of ${plural(r.processed_rows, "row")} imported · ${formatCount(r.rejected_rows)} rejected`;
  }
  if (job.kind === "api_test" && r.status) {
    const total = (r.passed || 0) + (r.failed || 0) + (r.skipped || 0);
    return r.failed ? `${formatCount(r.failed)} of ${plural(total, "step")} failed` : `${plural(r.passed || 0, "step")} passed`;
  }
  if (job.kind === "batch_report" && Array.isArray(r.reports)) {
    return `${plural(r.reports.length, "report")} · ${plural(r.reports.reduce((n, x) => n + (x.artifacts?.length || 0), 0), "file")}`;
  }
  return "";
}
