// The jobs dashboard: New-job form from /api/kinds, the user's jobs newest first with live
// progress; running jobs are subscribed, finished ones unsubscribed (seed 000); new jobs
// appear through the "all" subscription; filters by status and kind.
import { TERMINAL_STATUSES, api, el, startPage } from "./herald.js";
import { paramFields, readParams } from "./forms.js";
import { JobModel, JobSummary, isProgress } from "./jobview.js";

const $ = (id) => document.getElementById(id);
const rows = new Map(); // jobId -> {model, summary, node}
let kinds = [];

const conn = startPage({ onReconnect: () => loadJobs() });

function filters() {
  return { status: $("filter-status").value, kind: $("filter-kind").value };
}

function matchesFilters(job) {
  const { status, kind } = filters();
  return (!status || job.status === status) && (!kind || job.kind === kind);
}

function kindTitle(name) {
  return kinds.find((k) => k.kind === name)?.title || name;
}

function render(row) {
  row.summary.update(row.model);
  row.node.dataset.status = row.model.job.status;
}

function follow(row) {
  const id = row.model.job.id;
  if (row.model.terminal) { conn.unsubscribe(id); return; }
  if (conn.jobs.has(id)) return;
  conn.subscribe(id, (message) => onJobMessage(row, message), {
    lastSeq: row.model.seenSeq,
    onSnapshot: (job) => { row.model.applySnapshot(job); render(row); if (row.model.terminal) follow(row); },
  });
}

function onJobMessage(row, message) {
  if (row.model.applyMessage(message) || isProgress(message)) render(row);
  if (message.type === "job_status" && TERMINAL_STATUSES.has(message.data?.status)) conn.unsubscribe(row.model.job.id);
}

function addRow(job, { prepend = false } = {}) {
  let row = rows.get(job.id);
  if (row) { row.model.applySnapshot(job); render(row); follow(row); return row; }
  const summary = new JobSummary(job.id, { compact: true });
  const link = el("a", { href: `/jobs/${job.id}`, text: `#${job.id} ${kindTitle(job.kind)}` });
  const parent = job.parent_id
    ? el("span", { class: "muted" }, " · part of ", el("a", { href: `/jobs/${job.parent_id}`, text: `#${job.parent_id}` }))
    : null;
  const node = el("li", { class: "job card", "data-job-id": String(job.id) }, el("h3", {}, link, parent), summary.node);
  row = { model: new JobModel(job), summary, node };
  rows.set(job.id, row);
  if (prepend) $("jobs").prepend(node); else $("jobs").append(node);
  render(row);
  follow(row);
  $("jobs-empty").hidden = true;
  return row;
}

async function loadJobs() {
  const query = new URLSearchParams(Object.entries(filters()).filter(([, v]) => v));
  const { jobs } = await api(`/api/jobs?${query}`);
  const keep = new Set(jobs.map((j) => j.id));
  for (const [id, row] of rows) {
    if (!keep.has(id)) { conn.unsubscribe(id); row.node.remove(); rows.delete(id); }
  }
  for (const job of jobs) addRow(job);
  // Newest first, whatever order rows were added in.
  for (const job of jobs) $("jobs").append(rows.get(job.id).node);
  $("jobs-empty").hidden = jobs.length > 0;
}

/** A job event from the "all" subscription for a job with no row yet: a new job. */
async function onAnyJobMessage(message) {
  if (rows.has(message.job_id)) { onJobMessage(rows.get(message.job_id), message); return; }
  if (message.type !== "job_status") return;
  try {
    const { job } = await api(`/api/jobs/${message.job_id}`);
    if (!rows.has(job.id) && matchesFilters(job)) addRow(job, { prepend: true });
  } catch { /* gone or not ours */ }
}

function showKindForm() {
  const kind = kinds.find((k) => k.kind === $("kind").value);
  const fieldset = $("params");
  fieldset.replaceChildren(el("legend", { text: "Parameters" }), ...paramFields(kind?.schema));
  $("kind-description").textContent = kind?.description || "";
}

async function loadKinds() {
  ({ kinds } = await api("/api/kinds"));
  const submittable = kinds.filter((k) => k.submittable !== false);
  $("kind").replaceChildren(...submittable.map((k) => el("option", { value: k.kind, text: k.title || k.kind })));
  $("filter-kind").append(...kinds.map((k) => el("option", { value: k.kind, text: k.title || k.kind })));
  showKindForm();
}

$("kind").addEventListener("change", showKindForm);
$("filters").addEventListener("change", () => loadJobs());
$("new-job").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("new-job-error").textContent = "";
  try {
    const params = readParams($("params"));
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: $("kind").value, params } });
    if (matchesFilters(job)) addRow(job, { prepend: true });
  } catch (error) {
    $("new-job-error").textContent = error.message;
  }
});

setInterval(() => {
  for (const row of rows.values()) if (!row.model.terminal) row.summary.tick(row.model);
}, 1000);

if (conn) {
  conn.subscribeAll(onAnyJobMessage);
  loadKinds().then(loadJobs).catch((error) => { $("new-job-error").textContent = error.message; });
}
