// The /websocket-test page: ping (round trip), echo, subscribe to a job, start a demo job.
// It uses the tab's token; without one the browser goes to /login first.
import { api, formatPercent, setProgress, startPage } from "./herald.js";
import { formatDuration, formatRate } from "./format.js";

const $ = (id) => document.getElementById(id);
let currentJob = null;
/** Messages are numbered as they arrive; a number never moves to another message. */
let received = 0;

function logLine(text) {
  received += 1;
  const li = document.createElement("li");
  li.value = received; // newest first, each keeping its own number
  li.dataset.n = String(received);
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("message-log").prepend(li);
  while ($("message-log").children.length > 200) $("message-log").lastChild.remove();
}

function showJob(message) {
  const data = message.data || {};
  if (message.seq == null && message.type.endsWith("progress")) {
    setProgress($("job-progress"), data.percent ?? 0);
    $("job-percent").textContent = formatPercent(data.percent);
    $("job-rate").textContent = formatRate(data.rate, "steps");
    $("job-eta").textContent = formatDuration(data.eta);
  }
  if (message.type === "job_status") $("job-status").textContent = data.status;
}

function showSnapshot(job) {
  $("job-status").textContent = job.status;
  if (job.progress) showJob({ type: "job_progress", seq: null, data: job.progress });
}

const conn = startPage({
  onState: ({ error }) => { if (error) logLine(`connection: ${error}`); },
  onMessage: (event, message) => logLine(`${event} ${JSON.stringify(message?.data ?? message)}`),
});

async function subscribe(jobId) {
  if (currentJob != null && currentJob !== Number(jobId)) conn.unsubscribe(currentJob);
  currentJob = Number(jobId);
  $("job-id").value = currentJob;
  const ack = await conn.subscribe(currentJob, showJob, { lastSeq: 0, onSnapshot: showSnapshot });
  logLine(ack?.ok ? `subscribed to job ${currentJob}` : `subscribe refused: ${ack?.error?.message}`);
}

if (conn) {
  conn.socket.on("pong", (message) => {
    const sent = message.data?.echo?.t;
    if (sent) $("rtt").textContent = `${Math.round(performance.now() - sent)} ms`;
  });
  conn.socket.on("echo", (message) => { $("echo-result").textContent = message.data?.text ?? JSON.stringify(message.data); });
  $("ping").addEventListener("click", () => conn.socket.emit("ping", { t: performance.now() }));
  $("echo").addEventListener("click", () => conn.socket.emit("echo", { text: $("echo-text").value }));
  $("subscribe").addEventListener("click", () => subscribe($("job-id").value));
  $("start-job").addEventListener("click", async () => {
    try {
      const { job } = await api("/api/jobs", {
        method: "POST", body: { kind: "simulate", params: { steps: 50, interval: 0.1, log_every: 5 } },
      });
      logLine(`started job ${job.id}`);
      await subscribe(job.id);
    } catch (error) {
      logLine(`could not start: ${error.message}`);
    }
  });
}
