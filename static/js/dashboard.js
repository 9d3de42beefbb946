// The jobs dashboard: the New-job form (every kind, pickers instead of ids, a report
// builder, a workflow starter) and a dense table of the user's jobs — status (outcome
// first), kind and params, live progress, started, duration — with counts by status,
// filters, search, "Load more", and child jobs folded under their parent. Running jobs are
// subscribed, finished ones unsubscribed; new jobs arrive through the "all" subscription.
import { api, el, startPage } from "./herald.js";
import { loadChoices, paramFields, readParams } from "./forms.js";
import { JobModel, isProgress, progressDone, showOutcome } from "./jobview.js";
import {
  countsText, durationOf, formatCount, resultSummary, formatDateTime, formatDuration, formatRate, paramsSummary, unitOf,
} from "./format.js";

const $ = (id) => document.getElementById(id);
const PAGE = 50;
/** The order a newcomer meets the kinds in: the demo first, then tests, then data. */
const KIND_ORDER = ["simulate", "api_test", "batch_execution", "data_import", "batch_report", "workflow", "file_upload"];
const rows = new Map(); // jobId -> {model, node, cells}
let kinds = [];
let choices = null;
let loadedTop = 0;
let totalTop = 0;
const parentFilter = Number(new URLSearchParams(location.search).get("parent")) || null;

const conn = startPage({ onReconnect: () => loadJobs() });

function filters() {
  return { status: $("filter-status").value, kind: $("filter-kind").value, q: $("filter-q").value.trim() };
}

function listQuery(extra = {}) {
  const query = new URLSearchParams(Object.entries(filters()).filter(([, v]) => v));
  if (parentFilter) query.set("parent_id", String(parentFilter));
  else query.set("top_level", "true");
  for (const [k, v] of Object.entries(extra)) query.set(k, String(v));
  return query;
}

function matchesFilters(job) {
  const { status, kind, q } = filters();
  if (parentFilter ? job.parent_id !== parentFilter : job.parent_id) return false;
  return (!status || job.status === status) && (!kind || job.kind === kind) && !q;
}

function kindTitle(name) {
  return kinds.find((k) => k.kind === name)?.title || name;
}

// -- the table ------------------------------------------------------------------------

function makeRow(job, { child = false } = {}) {
  const badge = el("span", { class: "badge", "data-testid": "status" });
  const bar = el("progress", {
    max: "100", value: "0", "aria-label": `Job ${job.id} progress`,
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
  });
  const percent = el("span", { class: "percent", "data-testid": "percent", text: "0%" });
  const detail = el("small", { class: "muted progress-detail" });
  const counts = el("small", { class: "counts", hidden: true });
  const summary = el("small", { class: "muted params" });
  const toggle = el("button", { type: "button", class: "link fold", hidden: true, "aria-expanded": "false" });
  const started = el("td", { class: "num" });
  const duration = el("td", { class: "num" });
  const node = el("tr", { class: child ? "job child" : "job", "data-job-id": String(job.id) },
    el("th", { scope: "row" }, el("a", { href: `/jobs/${job.id}`, text: `#${job.id}` }), " ", toggle),
    el("td", {}, badge),
    el("td", { class: "kind-cell" }, el("span", { class: "kind", text: kindTitle(job.kind) }), " ", summary, counts),
    el("td", { class: "progress-cell" }, el("span", { class: "bar-row" }, bar, percent), detail),
    started, duration);
  const row = { model: new JobModel(job), node, badge, bar, percent, detail, counts, summary, toggle, started, duration, child, expanded: false };
  toggle.addEventListener("click", () => toggleChildren(row));
  rows.set(job.id, row);
  return row;
}

function render(row) {
  const job = row.model.job;
  row.node.dataset.status = job.status;
  showOutcome(row, job);
  const p = job.progress || {};
  const unit = unitOf(job.kind);
  const done = progressDone(job, unit);
  const rate = !row.model.terminal && p.rate != null ? formatRate(p.rate, unit) : "";
  row.detail.textContent = [done !== "–" ? done : "", rate].filter(Boolean).join(" · ");
  row.summary.textContent = paramsSummary(job.params, { max: 70, schema: kinds.find((k) => k.kind === job.kind)?.schema });
  const text = countsText(job.counts) || resultSummary(job);
  row.counts.hidden = !text;
  row.counts.textContent = text;
  if (job.error && !text) { row.counts.hidden = false; row.counts.textContent = job.error.message; }
  row.node.classList.toggle("has-error", Boolean(job.error));
  const children = job.child_count || 0;
  row.toggle.hidden = !children || row.child;
  row.toggle.textContent = `${row.expanded ? "▾" : "▸"} ${formatCount(children)} ${children === 1 ? "child" : "children"}`;
  row.toggle.setAttribute("aria-expanded", String(row.expanded));
  row.toggle.setAttribute("aria-label", `${row.expanded ? "Hide" : "Show"} ${children} child jobs of job ${job.id}`);
  tick(row);
}

function tick(row) {
  const job = row.model.job;
  row.started.textContent = job.started_at ? formatDateTime(job.started_at) : "–";
  row.duration.textContent = formatDuration(durationOf(job));
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
  const wasTerminal = row.model.terminal;
  if (row.model.applyMessage(message) || isProgress(message)) render(row);
  if (!wasTerminal && row.model.terminal) {
    conn.unsubscribe(row.model.job.id);
    refreshRow(row);
    scheduleCounts();
  }
}

/** The stored row once a job ends: its outcome and times as the server has them. */
async function refreshRow(row) {
  try {
    const { job } = await api(`/api/jobs/${row.model.job.id}`);
    if (row.model.applySnapshot(job)) render(row);
  } catch { /* the live state stays */ }
}

function addRow(job, { prepend = false, after = null, child = false } = {}) {
  let row = rows.get(job.id);
  if (row) { row.model.applySnapshot(job); render(row); follow(row); return row; }
  row = makeRow(job, { child });
  const body = $("jobs").tBodies[0];
  if (after) after.after(row.node);
  else if (prepend) body.prepend(row.node);
  else body.append(row.node);
  render(row);
  follow(row);
  $("jobs-empty").hidden = true;
  return row;
}

function removeRow(id) {
  const row = rows.get(id);
  if (!row) return;
  conn.unsubscribe(id);
  row.node.remove();
  rows.delete(id);
}

async function toggleChildren(parent) {
  const id = parent.model.job.id;
  parent.expanded = !parent.expanded;
  render(parent);
  if (!parent.expanded) {
    for (const [childId, row] of [...rows]) if (row.child && row.model.job.parent_id === id) removeRow(childId);
    return;
  }
  const { jobs } = await api(`/api/jobs?parent_id=${id}&limit=500`);
  let anchor = parent.node;
  for (const job of [...jobs].reverse()) anchor = addRow(job, { after: anchor, child: true }).node; // oldest first
}

function showStatusCounts(counts) {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  const current = $("filter-status").value;
  const chip = (status, n, label) => el("button", {
    type: "button", class: "chip", "data-status": status || "all", "aria-pressed": String(current === status),
    onclick: () => { $("filter-status").value = status; loadJobs(); },
  }, `${label} `, el("strong", { text: formatCount(n) }));
  $("status-counts").replaceChildren(chip("", total, "all"),
    ...["running", "pending", "completed", "failed", "cancelled"].map((s) => chip(s, counts[s] || 0, s)));
}

let countsTimer = null;
function scheduleCounts() {
  clearTimeout(countsTimer);
  countsTimer = setTimeout(async () => {
    try {
      const query = listQuery({ limit: 1 });
      query.delete("status");
      showStatusCounts((await api(`/api/jobs?${query}`)).status_counts);
    } catch { /* next time */ }
  }, 300);
}

function showShown() {
  $("jobs-shown").textContent = totalTop ? `Showing ${formatCount(loadedTop)} of ${formatCount(totalTop)} ${parentFilter ? "child jobs" : "jobs"}` : "";
  $("load-more").hidden = loadedTop >= totalTop;
}

async function loadJobs() {
  const { jobs, total, status_counts: counts } = await api(`/api/jobs?${listQuery({ limit: PAGE })}`);
  for (const id of [...rows.keys()]) removeRow(id);
  for (const job of jobs) addRow(job);
  loadedTop = jobs.length;
  totalTop = total;
  $("jobs-empty").hidden = jobs.length > 0;
  $("jobs-empty").textContent = filters().status || filters().kind || filters().q ? "No jobs match." : "No jobs yet.";
  showShown();
  const all = new URLSearchParams(listQuery({ limit: 1 }));
  if (filters().status) {
    all.delete("status");
    showStatusCounts((await api(`/api/jobs?${all}`)).status_counts);
  } else showStatusCounts(counts);
}

async function loadMore() {
  const { jobs, total } = await api(`/api/jobs?${listQuery({ limit: PAGE, offset: loadedTop })}`);
  for (const job of jobs) addRow(job);
  loadedTop += jobs.length;
  totalTop = total;
  showShown();
}

/** A job event from the "all" subscription for a job with no row yet: a new job. */
async function onAnyJobMessage(message) {
  if (rows.has(message.job_id)) { onJobMessage(rows.get(message.job_id), message); return; }
  if (message.type !== "job_status") return;
  try {
    const { job } = await api(`/api/jobs/${message.job_id}`);
    if (rows.has(job.id)) return;
    const parent = job.parent_id ? rows.get(job.parent_id) : null;
    if (parent && !parent.child) {
      parent.model.job.child_count = Math.max(parent.model.job.child_count || 0, 0) + 1;
      render(parent);
      if (parent.expanded) {
        const siblings = [...rows.values()].filter((r) => r.child && r.model.job.parent_id === job.parent_id);
        addRow(job, { after: siblings.length ? siblings[siblings.length - 1].node : parent.node, child: true });
      }
    } else if (matchesFilters(job)) {
      addRow(job, { prepend: true });
      loadedTop += 1;
      totalTop += 1;
      showShown();
    }
    scheduleCounts();
  } catch { /* gone or not ours */ }
}

// -- the New-job form -------------------------------------------------------------------

function selectedKind() { return kinds.find((k) => k.kind === $("kind").value); }

let shownKind = null;
async function showKindForm() {
  const kind = selectedKind();
  const name = kind?.kind;
  if (name === shownKind) return; // the same kind chosen again: keep what was typed
  shownKind = name;
  $("kind-description").textContent = kind?.description || "";
  $("workflow-starter").hidden = name !== "workflow";
  $("upload-hint").hidden = name !== "file_upload";
  $("params").hidden = name === "workflow" || name === "file_upload";
  $("start-job").disabled = name === "file_upload";
  $("start-job").textContent = name === "workflow" ? "Start workflow" : "Start job";
  const fieldset = $("params");
  fieldset.replaceChildren(el("legend", { text: "Parameters" }));
  delete fieldset.dataset.kind;
  if (name === "workflow") { await loadWorkflows(); if (!$("workflow-steps").children.length) addWorkflowStep(); return; }
  if (name === "file_upload") return;
  choices ??= await loadChoices();
  if (selectedKind()?.kind !== name) return; // changed meanwhile
  fieldset.append(...paramFields(kind?.schema, "param", choices, name));
  fieldset.dataset.kind = name;
}

async function loadKinds() {
  ({ kinds } = await api("/api/kinds"));
  const rank = (k) => { const i = KIND_ORDER.indexOf(k.kind); return i === -1 ? KIND_ORDER.length : i; };
  kinds.sort((a, b) => rank(a) - rank(b) || a.kind.localeCompare(b.kind));
  const startable = kinds.filter((k) => k.submittable !== false || k.kind === "workflow" || k.kind === "file_upload");
  $("kind").replaceChildren(...startable.map((k) => el("option", { value: k.kind, text: k.title || k.kind })));
  $("filter-kind").append(...kinds.map((k) => el("option", { value: k.kind, text: k.title || k.kind })));
  const wanted = new URLSearchParams(location.search).get("kind");
  if (wanted && startable.some((k) => k.kind === wanted)) $("kind").value = wanted;
  await showKindForm();
}

// -- workflows ----------------------------------------------------------------------------

let workflows = [];
async function loadWorkflows(selectId = null) {
  ({ workflows } = await api("/api/workflows"));
  $("workflow-id").replaceChildren(
    el("option", { value: "", text: workflows.length ? "— choose a workflow —" : "no workflows yet: create one below" }),
    ...workflows.map((w) => el("option", { value: String(w.id), text: `#${w.id} ${w.name} (${w.steps.length} ${w.steps.length === 1 ? "step" : "steps"})` })));
  if (selectId) $("workflow-id").value = String(selectId);
  else if (workflows.length) $("workflow-id").value = String(workflows[0].id);
  $("workflow-new").open ||= !workflows.length;
}

let stepCounter = 0;
function addWorkflowStep() {
  const n = ++stepCounter;
  const stepKinds = kinds.filter((k) => k.submittable !== false);
  const select = el("select", { id: `wf-step-${n}-kind`, "aria-label": `Step kind` },
    stepKinds.map((k) => el("option", { value: k.kind, text: k.title || k.kind })));
  const fields = el("div", { class: "step-params" });
  const fill = async () => {
    choices ??= await loadChoices();
    const kind = kinds.find((k) => k.kind === select.value);
    fields.replaceChildren(...paramFields(kind?.schema, `wf-step-${n}`, choices, kind?.kind));
  };
  select.addEventListener("change", fill);
  const item = el("li", { class: "workflow-step" },
    el("p", { class: "row" }, el("label", { for: select.id, text: "Step kind" }), select,
      el("button", { type: "button", class: "link", text: "remove step", onclick: () => item.remove() })),
    fields);
  $("workflow-steps").append(item);
  fill();
}

async function saveWorkflow() {
  const steps = [...$("workflow-steps").children].map((item) => ({
    kind: item.querySelector("select").value,
    params: readParams(item.querySelector(".step-params")),
  }));
  const name = $("workflow-name").value.trim() || `workflow ${new Date().toLocaleString()}`;
  const { workflow } = await api("/api/workflows", { method: "POST", body: { name, steps } });
  await loadWorkflows(workflow.id);
  return workflow;
}

async function startWorkflow() {
  const raw = $("workflow-input").value.trim();
  let input = {};
  if (raw) {
    try { input = JSON.parse(raw); } catch { throw new Error("Input: not valid JSON"); }
  }
  if (!$("workflow-id").value) {
    if ($("workflow-steps").children.length) await saveWorkflow();
    else throw new Error("Choose a workflow or create one.");
  }
  const execution = await api("/api/v1/executions", { method: "POST", body: { workflow_id: Number($("workflow-id").value), input_data: input } });
  const { job } = await api(`/api/jobs/${execution.id}`);
  return job;
}

$("workflow-add-step").addEventListener("click", addWorkflowStep);
$("workflow-save").addEventListener("click", async () => {
  $("new-job-error").textContent = "";
  try { await saveWorkflow(); } catch (error) { $("new-job-error").textContent = error.message; }
});

// -- wiring --------------------------------------------------------------------------------

$("kind").addEventListener("change", () => { showKindForm(); });
$("filters").addEventListener("change", () => loadJobs());
$("filters").addEventListener("submit", (event) => { event.preventDefault(); loadJobs(); });
let searchTimer = null;
$("filter-q").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => loadJobs(), 250); });
$("load-more").addEventListener("click", () => loadMore());
$("new-job").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("new-job-error").textContent = "";
  const form = $("new-job");
  const kind = $("kind").value;
  try {
    let job;
    if (kind === "workflow") job = await startWorkflow();
    else {
      const invalid = [...$("params").querySelectorAll("input, select, textarea")].find((i) => !i.checkValidity());
      if (invalid) { invalid.reportValidity(); throw new Error(`${invalid.labels?.[0]?.textContent || invalid.name}: ${invalid.validationMessage}`); }
      const params = readParams($("params"));
      ({ job } = await api("/api/jobs", { method: "POST", body: { kind, params } }));
    }
    if (matchesFilters(job) && !rows.has(job.id)) { addRow(job, { prepend: true }); loadedTop += 1; totalTop += 1; showShown(); }
    scheduleCounts();
    form.dataset.lastJob = String(job.id);
  } catch (error) {
    $("new-job-error").textContent = error.message;
  }
});

if (parentFilter) {
  $("parent-filter").hidden = false;
  $("parent-filter").replaceChildren(`Child jobs of `, el("a", { href: `/jobs/${parentFilter}`, text: `job #${parentFilter}` }), " · ",
    el("a", { href: "/", text: "show all jobs" }));
}

setInterval(() => {
  for (const row of rows.values()) if (!row.model.terminal) tick(row);
}, 1000);

if (conn) {
  conn.subscribeAll(onAnyJobMessage);
  loadKinds().then(loadJobs).catch((error) => { $("new-job-error").textContent = error.message; });
}
