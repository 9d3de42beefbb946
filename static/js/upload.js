// Upload page: pick or drop a file; the browser's own upload progress (XHR) and the
// server's file_upload_progress (sent to this tab's client room) side by side; then an
// import (asking before it appends to a dataset that exists, above all one this file went
// into already) with its outcome here — imported and rejected rows, the first rejects with
// line and reason, a CSV of them — and a report built from the dataset's columns, whose
// files download right here.
import {
  api, clientId, el, formatPercent, getToken, setProgress, startPage,
} from "./herald.js";
import { formatBytes, formatCount, formatDuration, formatRate, plural } from "./format.js";
import { loadChoices, paramFields, readParams } from "./forms.js";
import { JobModel, JobSummary, isProgress } from "./jobview.js";

const $ = (id) => document.getElementById(id);
let upload = null;
let chosenFile = null;
let uploads = [];
let reportKind = null;
let kindTitles = { data_import: "Data import", batch_report: "Batch report" };
let lastImport = null;

const conn = startPage();

function showServerProgress(message) {
  const d = message.data || {};
  if (upload && d.upload_id && d.upload_id !== upload.upload_id) return;
  setProgress($("server-progress"), d.percent);
  $("server-percent").textContent = formatPercent(d.percent);
  $("server-detail").textContent =
    `${formatBytes(d.received_bytes)} of ${formatBytes(d.total_bytes)} · ${formatRate(d.rate, "bytes")} · ETA ${formatDuration(d.eta)}`;
}

function showBrowserProgress(loaded, total) {
  const percent = total ? (loaded * 100) / total : 0;
  setProgress($("browser-progress"), percent);
  $("browser-percent").textContent = formatPercent(percent);
}

/** XHR, not fetch: only XHR reports upload progress. The token goes in a header. */
function send(file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/uploads?client_id=${encodeURIComponent(clientId())}`);
    xhr.setRequestHeader("Authorization", `Bearer ${getToken()}`);
    xhr.upload.addEventListener("progress", (e) => showBrowserProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new Error(body?.error?.message || `upload failed (${xhr.status})`));
    });
    xhr.addEventListener("error", () => reject(new Error("upload failed: network error")));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

function useUpload(info) {
  upload = info;
  $("upload-info").hidden = false;
  $("upload-name").textContent = info.filename;
  $("upload-size").textContent = `${formatBytes(info.size)} (${plural(info.size, "byte")})`;
  $("upload-sha").textContent = info.sha256 || "";
  $("upload-status").textContent = info.status || "";
  $("dataset").value ||= info.filename.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_.-]+/g, "_");
  $("start-import").disabled = info.status !== "completed";
}

async function loadUploads() {
  ({ uploads } = await api("/api/uploads?limit=100"));
  $("earlier-upload").replaceChildren(el("option", { value: "", text: "—" }),
    ...uploads.filter((u) => u.status === "completed").map((u) =>
      el("option", { value: u.upload_id, text: `${u.filename} · ${formatBytes(u.size)} · ${u.created_at?.slice(0, 16).replace("T", " ")}` })));
}

/** A live job summary with a link to its page; onDone(model) when it finishes. */
function followJob(job, container, onDone, { showError = true } = {}) {
  const summary = new JobSummary(job.id, { showError });
  const model = new JobModel(job);
  container.replaceChildren(el("p", {}, el("a", { href: `/jobs/${job.id}`, text: `Job #${job.id} · ${kindTitles[job.kind] || job.kind}` })),
    summary.node);
  summary.update(model);
  let done = false;
  const finish = async () => {
    if (done || !model.terminal) return;
    done = true;
    conn.unsubscribe(job.id);
    try { // the stored row: outcome and result as the server has them
      const { job: stored } = await api(`/api/jobs/${job.id}`);
      if (model.applySnapshot(stored)) summary.update(model);
    } catch { /* the live state stays */ }
    onDone?.(model);
  };
  conn.subscribe(job.id, (message) => {
    if (model.applyMessage(message) || isProgress(message)) summary.update(model);
    finish();
  }, { lastSeq: job.last_seq ?? 0, onSnapshot: (snap) => { model.applySnapshot(snap); summary.update(model); finish(); } });
}

// -- import ---------------------------------------------------------------------------

/** Why to ask before importing into ``name``, or null for a new dataset. */
async function existingDataset(name) {
  let dataset;
  try {
    ({ dataset } = await api(`/api/datasets/${encodeURIComponent(name)}`));
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
  const sameFile = [];
  for (const jobId of dataset.imports || []) {
    try {
      const { job } = await api(`/api/jobs/${jobId}`);
      const from = uploads.find((u) => u.upload_id === job.params?.upload_id);
      if (job.params?.upload_id === upload.upload_id || (from && from.sha256 && from.sha256 === upload.sha256)) sameFile.push(jobId);
    } catch { /* an import job we cannot read */ }
  }
  return { dataset, sameFile };
}

function askHowToImport(name, { dataset, sameFile }) {
  const rows = plural(dataset.row_count, "row");
  $("import-confirm-text").textContent = sameFile.length
    ? `This file is already in dataset "${name}" (imported by job #${sameFile.join(", #")}); it has ${rows}. Appending imports the same rows again.`
    : `Dataset "${name}" already exists with ${rows}. Append this file's rows to it, or replace them?`;
  $("import-confirm").hidden = false;
  $("import-keep").focus();
  return new Promise((resolve) => {
    const answer = (mode) => () => {
      $("import-confirm").hidden = true;
      for (const id of ["import-append", "import-replace", "import-keep"]) $(id).onclick = null;
      resolve(mode);
    };
    $("import-append").onclick = answer("append");
    $("import-replace").onclick = answer("replace");
    $("import-keep").onclick = answer(null);
  });
}

function showImportOutcome(model) {
  const job = model.job;
  const r = job.result;
  $("import-outcome").hidden = false;
  if (!r) {
    $("import-counts").textContent = job.error ? `Nothing imported: ${job.error.message}` : `Import ${job.status}.`;
    $("rejects").hidden = true;
    return;
  }
  $("import-counts").replaceChildren(
    el("strong", { text: `Imported ${formatCount(r.imported_rows)} of ${plural(r.processed_rows, "row")}` }),
    ` into "${r.dataset}" (${r.mode}) · `,
    el("span", { class: r.rejected_rows ? "error" : "", text: `${formatCount(r.rejected_rows)} rejected` }));
  const errors = r.errors || [];
  $("rejects").hidden = errors.length === 0;
  $("rejects-table").tBodies[0].replaceChildren(...errors.slice(0, 10).map((e) =>
    el("tr", {}, el("td", { class: "num", text: formatCount(e.row) }), el("td", { text: e.column || "–" }), el("td", { text: e.reason }))));
  const filed = r.rejects_artifact ? r.rejects_filed ?? r.rejected_rows : errors.length;
  $("rejects-download").textContent = r.rejects_artifact ? "Download all rejects (CSV)" : "Download the listed rejects (CSV)";
  $("rejects-note").textContent = filed < r.rejected_rows
    ? `The file has ${formatCount(filed)} of ${formatCount(r.rejected_rows)} rejects.`
    : `${plural(r.rejected_rows, "reject")}, each with its line, column and reason.`;
  lastImport = { ...r, jobId: job.id };
}

function csvCell(value) {
  const text = value == null ? "" : String(value);
  return /[",\n\r]|^[=+\-@]/.test(text) ? `"${text.replace(/^([=+\-@])/, "'$1").replace(/"/g, '""')}"` : text;
}

$("rejects-download").addEventListener("click", () => {
  if (!lastImport) return;
  if (lastImport.rejects_artifact) { // every reject, as the server wrote them
    download(`/api/jobs/${lastImport.jobId}/artifacts/${encodeURIComponent(lastImport.rejects_artifact)}`,
      `${lastImport.dataset}-rejects.csv`);
    return;
  }
  const lines = ["line,column,reason", ...(lastImport.errors || []).map((e) => [e.row, e.column, e.reason].map(csvCell).join(","))];
  saveBlob(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }), `${lastImport.dataset}-rejects.csv`);
});

$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("job-error").textContent = "";
  if (!$("import-form").reportValidity() || !upload) return;
  const name = $("dataset").value.trim();
  const params = { upload_id: upload.upload_id, dataset: name };
  if ($("max-rejected").value !== "") params.max_rejected_rows = Number($("max-rejected").value);
  try {
    const existing = await existingDataset(name);
    if (existing) {
      const mode = await askHowToImport(name, existing);
      if (!mode) return;
      params.mode = mode;
    }
    $("import-outcome").hidden = true;
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: "data_import", params } });
    followJob(job, $("import-job"), async (model) => {
      showImportOutcome(model);
      if (model.job.status === "completed") await showReportForm(name);
    }, { showError: false }); // the outcome below says why nothing was imported
  } catch (error) { $("job-error").textContent = error.message; }
});

// -- report -----------------------------------------------------------------------------

async function showReportForm(datasetName = null) {
  const choices = await loadChoices();
  $("dataset-names").replaceChildren(...choices.datasets.map((d) => el("option", { value: d.name })));
  if (!reportKind) return;
  const fields = paramFields(reportKind.schema, "report", choices, "batch_report");
  $("report-fields").replaceChildren(...fields);
  const select = $("report-dataset");
  if (datasetName && select) {
    select.value = datasetName;
    select.dispatchEvent(new Event("change"));
  }
  $("start-report").disabled = !choices.datasets.length;
}

async function showReportFiles(jobId) {
  const { artifacts } = await api(`/api/jobs/${jobId}/artifacts`);
  $("report-files").replaceChildren(...artifacts.map((a) => el("li", {},
    el("a", { href: a.url, download: a.name, text: a.name, onclick: (e) => { e.preventDefault(); download(a.url, a.name); } }),
    " ", el("span", { class: "muted", text: `${formatBytes(a.size)}` }))));
  $("report-downloads").hidden = !artifacts.length;
}

$("report-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("job-error").textContent = "";
  $("report-downloads").hidden = true;
  try {
    const params = readParams($("report-fields"));
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: "batch_report", params } });
    followJob(job, $("report-job"), (model) => { if (model.job.status === "completed") showReportFiles(job.id); });
  } catch (error) { $("job-error").textContent = error.message; }
});

// -- downloads (the token goes as a header, never in a URL) -------------------------------

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function download(url, name) {
  const response = await fetch(url, { headers: { Authorization: `Bearer ${getToken()}` } });
  if (!response.ok) { $("job-error").textContent = `download failed (${response.status})`; return; }
  saveBlob(await response.blob(), name);
}

// -- file choice and upload -------------------------------------------------------------

$("file").addEventListener("change", () => { chosenFile = $("file").files[0] || null; });
const zone = $("drop-zone");
zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
zone.addEventListener("dragleave", () => zone.classList.remove("over"));
zone.addEventListener("drop", (e) => {
  e.preventDefault();
  zone.classList.remove("over");
  if (e.dataTransfer.files.length) {
    chosenFile = e.dataTransfer.files[0];
    $("file").files = e.dataTransfer.files;
  }
});
$("earlier-upload").addEventListener("change", () => {
  const chosen = uploads.find((u) => u.upload_id === $("earlier-upload").value);
  if (chosen) { $("dataset").value = ""; useUpload(chosen); }
});

$("upload-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("upload-error").textContent = "";
  const file = chosenFile || $("file").files[0];
  if (!file) { $("upload-error").textContent = "Choose a file first."; return; }
  upload = null;
  showBrowserProgress(0, 1);
  setProgress($("server-progress"), 0);
  $("server-percent").textContent = "0%";
  $("upload-button").disabled = true;
  try {
    const { upload: info } = await send(file);
    setProgress($("server-progress"), 100); // the 201 means every byte is stored
    $("server-percent").textContent = "100%";
    useUpload(info);
    loadUploads().catch(() => {});
  } catch (error) {
    $("upload-error").textContent = error.message;
  } finally {
    $("upload-button").disabled = false;
  }
});

if (conn) {
  conn.socket.on("file_upload_progress", showServerProgress);
  loadUploads().catch(() => {});
  api("/api/kinds").then(({ kinds }) => {
    reportKind = kinds.find((k) => k.kind === "batch_report");
    kindTitles = Object.fromEntries(kinds.map((k) => [k.kind, k.title || k.kind]));
    return showReportForm();
  }).catch((error) => { $("job-error").textContent = error.message; });
}
