// Upload page: pick or drop a file; the browser's own upload progress (XHR) and the
// server's file_upload_progress (sent to this tab's client room) side by side; then an
// import of the upload and a report on the dataset, one click each.
import {
  api, clientId, el, formatBytes, formatPercent, formatSeconds, getToken, setProgress, startPage,
} from "./herald.js";
import { JobModel, JobSummary, isProgress } from "./jobview.js";

const $ = (id) => document.getElementById(id);
let upload = null;
let dataset = null;
let chosenFile = null;

const conn = startPage();

function showServerProgress(message) {
  const d = message.data || {};
  if (upload && d.upload_id && d.upload_id !== upload.upload_id) return;
  setProgress($("server-progress"), d.percent);
  $("server-percent").textContent = formatPercent(d.percent);
  $("server-detail").textContent =
    `${formatBytes(d.received_bytes)} of ${formatBytes(d.total_bytes)} · ${d.rate != null ? formatBytes(d.rate) + "/s" : "–"} · ETA ${formatSeconds(d.eta)}`;
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

function showUpload(info) {
  $("upload-info").hidden = false;
  $("upload-name").textContent = info.filename;
  $("upload-size").textContent = formatBytes(info.size);
  $("upload-sha").textContent = info.sha256 || "";
  $("upload-status").textContent = info.status || "";
}

/** A live job summary with a link to its page; onDone(model) when it finishes. */
function followJob(job, container, onDone) {
  const summary = new JobSummary(job.id);
  const model = new JobModel(job);
  container.replaceChildren(el("p", {}, el("a", { href: `/jobs/${job.id}`, text: `Job #${job.id} (${job.kind})` })),
    summary.node);
  summary.update(model);
  let done = false;
  const finish = () => {
    if (done || !model.terminal) return;
    done = true;
    conn.unsubscribe(job.id);
    onDone?.(model);
  };
  conn.subscribe(job.id, (message) => {
    if (model.applyMessage(message) || isProgress(message)) summary.update(model);
    finish();
  }, { lastSeq: job.last_seq ?? 0, onSnapshot: (snap) => { model.applySnapshot(snap); summary.update(model); finish(); } });
}

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
    ({ upload } = await send(file));
    showUpload(upload);
    setProgress($("server-progress"), 100); // the 201 means every byte is stored
    $("server-percent").textContent = "100%";
    $("dataset").value ||= file.name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9_.-]+/g, "_");
    $("start-import").disabled = false;
  } catch (error) {
    $("upload-error").textContent = error.message;
  } finally {
    $("upload-button").disabled = false;
  }
});

$("import-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("job-error").textContent = "";
  const params = { upload_id: upload.upload_id, dataset: $("dataset").value, mode: $("mode").value };
  try {
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: "data_import", params } });
    dataset = params.dataset;
    followJob(job, $("import-job"), (model) => {
      const columns = model.job.result?.columns || [];
      $("columns").replaceChildren(...columns.map((c) => el("option", { value: typeof c === "string" ? c : c.name })));
      if (columns.length && !$("group-by").value) $("group-by").value = typeof columns[0] === "string" ? columns[0] : columns[0].name;
      $("start-report").disabled = model.job.status !== "completed";
    });
  } catch (error) { $("job-error").textContent = error.message; }
});

$("report-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("job-error").textContent = "";
  const groupBy = $("group-by").value.trim();
  const metric = { op: $("metric-op").value };
  if ($("metric-column").value.trim()) metric.column = $("metric-column").value.trim();
  const report = { name: "summary", group_by: groupBy ? [groupBy] : [], metrics: [metric] };
  const params = { dataset, reports: [report], formats: ["csv", "html"] };
  try {
    const { job } = await api("/api/jobs", { method: "POST", body: { kind: "batch_report", params } });
    followJob(job, $("report-job"));
  } catch (error) { $("job-error").textContent = error.message; }
});

if (conn) conn.socket.on("file_upload_progress", showServerProgress);
