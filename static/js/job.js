// One job live (/jobs/<id>): summary, log (one line per job_log), replayed history,
// steps/cases, result, error, artifacts; Cancel, Re-run, Clear (seed 001's actions).
// Everything shown comes from the subscription, which replays from seq 0 and then goes
// live: each durable event is handled exactly once, also across reconnects.
import { api, el, formatBytes, getToken, startPage } from "./herald.js";
import { JobModel, JobSummary, isProgress } from "./jobview.js";

const $ = (id) => document.getElementById(id);
const jobId = Number($("job").dataset.jobId);
const summary = new JobSummary(jobId);
$("summary").append(summary.node);
let model = null;
let artifactsLoaded = false;
const steps = new Map(); // key -> <tr>

const conn = startPage();

function render() {
  summary.update(model);
  const job = model.job;
  $("job-kind").textContent = job.kind || "";
  $("job-parent").hidden = !job.parent_id;
  if (job.parent_id) {
    $("job-parent").replaceChildren("part of ", el("a", { href: `/jobs/${job.parent_id}`, text: `job #${job.parent_id}` }));
  }
  $("cancel").disabled = !(job.status === "pending" || job.status === "running");
  $("rerun").disabled = false;
  const hasResult = job.result != null;
  $("result-section").hidden = !hasResult;
  if (hasResult) $("result").textContent = JSON.stringify(job.result, null, 2);
  $("error-section").hidden = !job.error;
  if (job.error) {
    $("error-code").textContent = job.error.code || "";
    $("error-message").textContent = job.error.message || "";
  }
  if (model.terminal && !artifactsLoaded) loadArtifacts();
}

function addLogLine(message) {
  const { level = "info", message: text = "" } = message.data || {};
  const time = new Date(message.timestamp).toLocaleTimeString();
  const li = el("li", { class: `log-line level-${level}`, "data-seq": String(message.seq) },
    el("span", { class: "time", text: time }), " ",
    el("span", { class: "level", text: level }), " ",
    el("span", { class: "msg", text }));
  const log = $("log");
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(li);
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function addHistory(message) {
  const row = el("tr", {},
    el("td", { text: String(message.seq) }),
    el("td", { text: new Date(message.timestamp).toLocaleTimeString() }),
    el("td", { text: message.type }),
    el("td", {}, el("code", { text: JSON.stringify(message.data) })));
  $("history").tBodies[0].append(row);
  $("history-count").textContent = `(${$("history").tBodies[0].rows.length} events)`;
}

const STEP_EVENTS = new Set(["step_start", "step_complete", "case_result", "node_status"]);

/**
 * Steps of API tests (step_start/step_complete), cases of batches (case_result) and nodes
 * of workflows (node_status): one table row per step, updated in place.
 */
function updateSteps(message) {
  if (!STEP_EVENTS.has(message.type)) return;
  const d = message.data || {};
  const position = d.index ?? d.step ?? null;
  const family = message.type === "case_result" ? "case" : message.type === "node_status" ? "node" : "step";
  const key = `${family}:${position ?? d.test_case_id ?? d.name ?? message.seq}`;
  let row = steps.get(key);
  if (!row) {
    row = el("tr", {}, el("td"), el("td"), el("td"), el("td"));
    steps.set(key, row);
    $("steps").tBodies[0].append(row);
    $("steps-section").hidden = false;
  }
  const status = d.status ?? (message.type === "step_start" ? "running" : "done");
  row.dataset.status = status;
  row.cells[0].textContent = String(position != null ? Number(position) + 1 : steps.size);
  if (d.name || d.kind) row.cells[1].textContent = String(d.name ?? d.kind);
  row.cells[2].replaceChildren(el("span", { class: "badge", "data-status": status, text: String(status) }));
  const error = d.error?.message ?? (typeof d.error === "string" ? d.error : null);
  const detail = [];
  if (error) detail.push(el("span", { class: "error", text: error }));
  else if (d.duration_ms != null) detail.push(`${Math.round(d.duration_ms)} ms`);
  if (d.job_id) detail.push(" ", el("a", { href: `/jobs/${d.job_id}`, text: `job #${d.job_id}` }));
  if (detail.length || message.type !== "step_start") row.cells[3].replaceChildren(...detail);
}

const LOG_EVENTS = new Set(["job_log", "log"]); // "log" is seed 003's name, used by API tests

function onMessage(message) {
  if (!model) return;
  if (message.seq != null) {
    addHistory(message);
    if (LOG_EVENTS.has(message.type)) addLogLine(message);
    updateSteps(message);
  }
  if (model.applyMessage(message) || isProgress(message)) render();
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

$("cancel").addEventListener("click", async () => {
  $("action-error").textContent = "";
  try {
    const { job } = await api(`/api/jobs/${jobId}/cancel`, { method: "POST" });
    model.applySnapshot(job);
    render();
  } catch (error) { $("action-error").textContent = error.message; }
});
$("rerun").addEventListener("click", async () => {
  $("action-error").textContent = "";
  try {
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: model.job.kind, params: model.job.params } });
    location.assign(`/jobs/${job.id}`);
  } catch (error) { $("action-error").textContent = error.message; }
});
$("clear").addEventListener("click", () => $("log").replaceChildren());

setInterval(() => { if (model && !model.terminal) summary.tick(model); }, 1000);

async function start() {
  try {
    const { job } = await api(`/api/jobs/${jobId}`);
    // The snapshot sets the summary (events up to its last_seq are in it); the replay
    // from seq 0 fills log and history, and newer events move the summary on.
    model = new JobModel(job);
    render();
    const ack = await conn.subscribe(jobId, onMessage, {
      lastSeq: 0,
      onSnapshot: (snap) => { if (model.applySnapshot(snap)) render(); },
    });
    if (ack && !ack.ok) $("job-error-load").textContent = ack.error?.message || "cannot follow this job";
  } catch (error) {
    $("job-error-load").textContent = error.status === 404 ? `Job ${jobId} not found.` : error.message;
  }
}

if (conn) start();
