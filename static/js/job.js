// One job live (/jobs/<id>): outcome and progress, details (kind, params, who, times,
// duration, parent and children), the log (virtual, searchable, follow-tail), steps/cases
// one row per position, result, error (once), artifacts, replayed history; Re-run (disabled
// with the reason where it cannot work) and Cancel (asks first).
//
// History arrives over REST in pages of 10,000 events (fast for 100,000 lines), then the
// subscription goes live from the last seq read: each durable event is handled exactly
// once, also across reconnects.
import { api, el, getToken, startPage } from "./herald.js";
import { JobModel, JobSummary, isProgress } from "./jobview.js";
import { LogView } from "./logview.js";
import { durationOf, formatBytes, formatDateTime, formatDuration, formatClock, paramsSummary, plural } from "./format.js";

const $ = (id) => document.getElementById(id);
const jobId = Number($("job").dataset.jobId);
const summary = new JobSummary(jobId, { showError: false });
$("summary").append(summary.node);
let model = null;
let kinds = [];
let artifactsLoaded = false;
/** "initial" then "final": the child list is read once on load and once when the job ends. */
let childrenLoaded = "";
const steps = new Map(); // key -> <tr>
/** Every durable event seen, for the (lazily drawn) history table. */
const history = [];
const HISTORY_SHOWN = 500;

const log = new LogView($("log"), {
  search: $("log-search"), level: $("log-level"), follow: $("log-follow"), count: $("log-count"), empty: $("log-empty"),
});
window.heraldLog = log; // tests read every line from here: only the rows in view are in the DOM

const conn = startPage();

function kindTitle(name) {
  return kinds.find((k) => k.kind === name)?.title || name || "";
}

/** For an import that created its dataset: the dataset exists now, so the same params would be refused. */
let datasetNowExists = null;
async function checkImportTarget(job) {
  if (datasetNowExists !== null || job.kind !== "data_import" || job.params?.mode) return;
  datasetNowExists = false;
  try {
    await api(`/api/datasets/${encodeURIComponent(job.params.dataset)}`);
    datasetNowExists = true;
    render();
  } catch { /* not there: the same import can run again */ }
}

/** Why Re-run cannot work for this job, or "" when it can. */
function rerunBlocker(job) {
  if (job.kind === "file_upload") return "An upload is sent again from the Upload page.";
  if (datasetNowExists) return `Dataset "${job.params.dataset}" exists now: import from the Upload page to append or replace.`;
  if (job.kind === "workflow") return job.params?.workflow_id ? "" : "This execution has no saved workflow to run again.";
  const kind = kinds.find((k) => k.kind === job.kind);
  return kind && kind.submittable === false ? `${kindTitle(job.kind)} jobs cannot be started again.` : "";
}

function render() {
  summary.update(model);
  const job = model.job;
  $("job-kind").textContent = kindTitle(job.kind);
  $("d-kind").textContent = `${kindTitle(job.kind)} (${job.kind})`;
  $("d-owner").textContent = job.owner || "you";
  $("d-created").textContent = formatDateTime(job.created_at);
  $("d-started").textContent = formatDateTime(job.started_at);
  $("d-finished").textContent = formatDateTime(job.finished_at);
  $("d-duration").textContent = formatDuration(durationOf(job));
  $("d-parent-row").hidden = !job.parent_id;
  if (job.parent_id) $("d-parent").replaceChildren(el("a", { href: `/jobs/${job.parent_id}`, text: `job #${job.parent_id}` }));
  $("params-summary").textContent = paramsSummary(job.params, { schema: kinds.find((k) => k.kind === job.kind)?.schema });
  $("d-params").textContent = JSON.stringify(job.params ?? {}, null, 2);

  const active = job.status === "pending" || job.status === "running";
  $("cancel").disabled = !active;
  $("cancel").title = active ? "Stop this job (asks first)" : `Nothing to cancel: the job is ${job.status}.`;
  if (!active) $("cancel-confirm").hidden = true;
  if (model.terminal) checkImportTarget(job);
  const blocker = rerunBlocker(job);
  $("rerun").disabled = Boolean(blocker);
  $("rerun-wrap").title = blocker || "Start a new job with the same kind and parameters";

  const hasResult = job.result != null;
  $("result-section").hidden = !hasResult;
  if (hasResult) $("result").textContent = JSON.stringify(job.result, null, 2);
  $("error-section").hidden = !job.error;
  if (job.error) {
    $("error-code").textContent = job.error.code || "";
    $("error-message").textContent = job.error.message || "";
  }
  if (model.terminal && !artifactsLoaded) loadArtifacts();
  const childStage = model.terminal ? "final" : "initial";
  if (isCoordinator(job) && childrenLoaded !== childStage && (job.child_count || model.terminal)) {
    childrenLoaded = childStage;
    loadChildren();
  }
}

function isCoordinator(job) { return job.kind === "batch_execution" || job.kind === "workflow"; }

async function loadChildren() {
  try {
    const { jobs, total } = await api(`/api/jobs?parent_id=${jobId}&limit=500`);
    if (!total) return;
    const counts = {};
    for (const child of jobs) counts[child.status] = (counts[child.status] || 0) + 1;
    const text = Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ");
    $("d-children").replaceChildren(`${plural(total, "job")} (${text}) `,
      el("a", { href: `/?parent=${jobId}`, text: "list them" }));
    $("d-children-row").hidden = false;
  } catch { /* the job page works without it */ }
}

function addHistory(message) {
  history.push(message);
  scheduleHistory();
}

let historyPending = false;
/** The count (and the table, when open) once per frame, however many events arrived. */
function scheduleHistory() {
  if (historyPending) return;
  historyPending = true;
  requestAnimationFrame(() => {
    historyPending = false;
    $("history-count").textContent = `(${plural(history.length, "event")})`;
    if ($("history-box").open) drawHistory();
  });
}

/** The newest events only: the full history is in the REST API and the log above. */
function drawHistory() {
  const shown = history.slice(-HISTORY_SHOWN);
  $("history-note").hidden = history.length <= HISTORY_SHOWN;
  $("history-note").textContent = `Showing the last ${HISTORY_SHOWN} of ${plural(history.length, "event")}.`;
  $("history").tBodies[0].replaceChildren(...shown.map((message) => el("tr", {},
    el("td", { text: String(message.seq) }),
    el("td", { text: formatClock(message.timestamp) }),
    el("td", { text: message.type }),
    el("td", {}, el("code", { text: JSON.stringify(message.data) })))));
}
$("history-box").addEventListener("toggle", () => { if ($("history-box").open) drawHistory(); });

const STEP_EVENTS = new Set(["step_start", "step_complete", "case_result", "node_status"]);

/**
 * Steps of API tests (step_start/step_complete), cases of batches (case_result) and nodes
 * of workflows (node_status): one row per position, numbered from 1, updated in place —
 * a batch that lists a case three times has three rows.
 */
function updateSteps(message) {
  if (!STEP_EVENTS.has(message.type)) return;
  const d = message.data || {};
  const position = d.index ?? d.step ?? null;
  const family = message.type === "case_result" ? "case" : message.type === "node_status" ? "node" : "step";
  const key = `${family}:${position ?? `seq${message.seq}`}`;
  let row = steps.get(key);
  if (!row) {
    row = el("tr", { "data-position": position != null ? String(Number(position) + 1) : "" }, el("td"), el("td"), el("td"), el("td"));
    steps.set(key, row);
    const body = $("steps").tBodies[0];
    // Rows in position order, whatever order the cases finish in.
    const after = [...body.rows].find((r) => Number(r.dataset.position) > Number(row.dataset.position));
    body.insertBefore(row, after || null);
    $("steps-section").hidden = false;
  }
  const status = d.status ?? (message.type === "step_start" ? "running" : "done");
  row.dataset.status = status;
  row.cells[0].textContent = position != null ? String(Number(position) + 1) : String(steps.size);
  const name = d.name ?? d.kind;
  if (name) row.cells[1].textContent = d.test_case_id && d.name ? `${d.name} (case ${d.test_case_id})` : String(name);
  row.cells[2].replaceChildren(el("span", { class: "badge", "data-status": status, text: String(status) }));
  const error = d.error?.message ?? (typeof d.error === "string" ? d.error : null);
  const detail = [];
  if (error) detail.push(el("span", { class: "error", text: error }));
  else if (d.duration_ms != null) detail.push(`${Math.round(d.duration_ms).toLocaleString("en-US")} ms`);
  if (d.job_id) detail.push(" ", el("a", { href: `/jobs/${d.job_id}`, text: `job #${d.job_id}` }));
  if (detail.length || message.type !== "step_start") row.cells[3].replaceChildren(...detail);
}

const LOG_EVENTS = new Set(["job_log", "log"]); // "log" is seed 003's name, used by API tests

function onMessage(message) {
  if (!model) return;
  if (message.seq != null) {
    addHistory(message);
    if (LOG_EVENTS.has(message.type)) log.add(message);
    updateSteps(message);
  }
  const wasTerminal = model.terminal;
  if (model.applyMessage(message) || isProgress(message)) render();
  if (!wasTerminal && model.terminal) refreshSnapshot();
}

/** The row once the job has ended: outcome, times and counts as the server has them. */
async function refreshSnapshot() {
  try {
    const { job } = await api(`/api/jobs/${jobId}`);
    if (model.applySnapshot(job)) render();
  } catch { /* the live state stays */ }
}

async function loadArtifacts() {
  artifactsLoaded = true;
  let artifacts;
  try {
    ({ artifacts } = await api(`/api/jobs/${jobId}/artifacts`));
  } catch { return; } // this server has no artifacts for this job
  if (!artifacts?.length) return;
  $("artifacts").replaceChildren(...artifacts.map((a) => {
    const url = a.url || `/api/jobs/${jobId}/artifacts/${encodeURIComponent(a.name)}`;
    const link = el("a", { href: url, download: a.name, text: a.name, onclick: (e) => download(e, url, a.name) });
    return el("li", {}, link, " ", el("span", { class: "muted", text: `${a.content_type || ""} ${formatBytes(a.size)}` }));
  }));
  $("artifacts-section").hidden = false;
}

/** Downloads carry the token as a header (never in the URL): fetch, then save the blob. */
async function download(event, url, name) {
  event.preventDefault();
  const response = await fetch(url, { headers: { Authorization: `Bearer ${getToken()}` } });
  if (!response.ok) { $("action-error").textContent = `download failed (${response.status})`; return; }
  const blobUrl = URL.createObjectURL(await response.blob());
  const a = el("a", { href: blobUrl, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(blobUrl), 10000);
}

$("cancel").addEventListener("click", () => {
  $("cancel-confirm").hidden = false;
  $("cancel-no").focus();
});
$("cancel-no").addEventListener("click", () => { $("cancel-confirm").hidden = true; $("cancel").focus(); });
$("cancel-yes").addEventListener("click", async () => {
  $("action-error").textContent = "";
  $("cancel-confirm").hidden = true;
  try {
    const { job } = await api(`/api/jobs/${jobId}/cancel`, { method: "POST" });
    model.applySnapshot(job);
    render();
  } catch (error) { $("action-error").textContent = error.message; }
});
$("rerun").addEventListener("click", async () => {
  $("action-error").textContent = "";
  const job = model.job;
  try {
    let id;
    if (job.kind === "workflow") {
      ({ id } = await api("/api/v1/executions", {
        method: "POST", body: { workflow_id: job.params.workflow_id, input_data: job.params.input || {} },
      }));
    } else {
      ({ job: { id } } = await api("/api/jobs", { method: "POST", body: { kind: job.kind, params: job.params } }));
    }
    location.assign(`/jobs/${id}`);
  } catch (error) { $("action-error").textContent = error.message; }
});

setInterval(() => {
  if (model && !model.terminal) { summary.tick(model); $("d-duration").textContent = formatDuration(durationOf(model.job)); }
}, 1000);

/** Stored events up to the job's head, 10,000 per request, through the same handler as live ones. */
let loadedSeq = 0;
const EVENTS_PAGE = 10000;
/**
 * Stored events up to the job's head, in pages of 10,000: the next page is asked for
 * before this one is handled (seqs have no gaps, so its ``after`` is known), so the
 * server reads while the browser draws.
 */
const fetchPage = (after) => api(`/api/jobs/${jobId}/events?after=${after}&limit=${EVENTS_PAGE}`);
async function loadHistory(headSeq, first) {
  let next = first;
  for (;;) {
    const page = await next;
    const last = page.events.length ? page.events[page.events.length - 1].seq : loadedSeq;
    const more = page.events.length === EVENTS_PAGE && last < Math.max(page.last_seq, headSeq);
    if (more) next = fetchPage(last);
    for (const message of page.events) onMessage(message);
    loadedSeq = last;
    log.setLoading(more ? { done: last, total: Math.max(page.last_seq, headSeq) } : null);
    if (!more) return;
  }
}

function showMissing(text) {
  $("job-loading").hidden = true;
  $("job-body").hidden = true;
  $("job-missing").hidden = false;
  $("job-error-load").textContent = text;
}

async function start() {
  let job;
  const firstPage = fetchPage(0); // asked for alongside the snapshot
  firstPage.catch(() => {}); // a missing job is reported once, by the snapshot
  try {
    ({ job } = await api(`/api/jobs/${jobId}`));
  } catch (error) {
    showMissing(error.status === 404 ? `Job ${jobId} not found.` : error.message);
    return;
  }
  api("/api/kinds").then((data) => { kinds = data.kinds; if (model) render(); }).catch(() => {});
  // The snapshot sets the summary (events up to its last_seq are in it); the stored
  // events fill log, steps and history; the subscription carries on from the last one.
  model = new JobModel(job); // stored events up to its last_seq only add lines and rows
  $("job-loading").hidden = true;
  $("job-body").hidden = false;
  render();
  try {
    await loadHistory(job.last_seq ?? 0, firstPage);
  } catch { /* the subscription replays the rest */ }
  log.setLoading(null);
  const ack = await conn.subscribe(jobId, onMessage, {
    lastSeq: loadedSeq,
    onSnapshot: (snap) => { if (model.applySnapshot(snap)) render(); },
  });
  if (ack && !ack.ok) $("action-error").textContent = ack.error?.message || "cannot follow this job";
}

if (conn) start();
