// The /websocket-test page: sign in, ping, echo, subscribe, start a demo job.
import { api, clearTokens, getToken, HeraldConnection, login } from "./herald.js";

const $ = (id) => document.getElementById(id);
let conn = null;
let currentJob = null;

function logLine(text) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $("message-log").prepend(li);
  while ($("message-log").children.length > 200) $("message-log").lastChild.remove();
}

function showState({ state, retryIn, error }) {
  $("connection-state").textContent =
    state === "reconnecting" ? `reconnecting in ${retryIn} s` : state;
  if (error) logLine(`connection: ${error}`);
}

function showJob(message) {
  const data = message.data || {};
  if (message.type.endsWith("progress")) {
    const percent = data.percent ?? 0;
    $("job-progress").value = percent;
    $("job-percent").textContent = `${Math.round(percent)}%`;
    $("job-rate").textContent = data.rate != null ? `${data.rate}/s` : "–";
    $("job-eta").textContent = data.eta != null ? `${data.eta} s` : "–";
  }
  if (message.type === "job_status") $("job-status").textContent = data.status;
}

function showSnapshot(job) {
  $("job-status").textContent = job.status;
  if (job.progress) showJob({ type: "job_progress", data: job.progress });
}

async function subscribe(jobId) {
  currentJob = Number(jobId);
  $("job-id").value = currentJob;
  const ack = await conn.subscribe(currentJob, showJob, { lastSeq: 0, onSnapshot: showSnapshot });
  logLine(ack.ok ? `subscribed to job ${currentJob}` : `subscribe refused: ${ack.error.message}`);
}

function start() {
  $("login-panel").hidden = true;
  $("tools").hidden = false;
  api("/api/auth/me").then(({ user }) => { $("who").textContent = user.username; })
    .catch(() => { clearTokens(); location.reload(); });
  conn = new HeraldConnection({
    onState: showState,
    onMessage: (event, message) => logLine(`${event} ${JSON.stringify(message.data ?? message)}`),
  });
  conn.socket.on("pong", (message) => {
    const sent = message.data?.echo?.t;
    if (sent) $("rtt").textContent = `${Math.round(performance.now() - sent)} ms`;
  });
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  try {
    await login(form.get("username"), form.get("password"));
    start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
});
$("logout").addEventListener("click", () => { clearTokens(); location.reload(); });
$("ping").addEventListener("click", () => conn.socket.emit("ping", { t: performance.now() }));
$("echo").addEventListener("click", () => conn.socket.emit("echo", { text: $("echo-text").value }));
$("subscribe").addEventListener("click", () => subscribe($("job-id").value));
$("start-job").addEventListener("click", async () => {
  try {
    const { job } = await api("/api/jobs", {
      method: "POST", body: { kind: "simulate", params: { steps: 50, interval: 0.1 } },
    });
    logLine(`started job ${job.id}`);
    await subscribe(job.id);
  } catch (error) {
    logLine(`could not start: ${error.message}`);
  }
});

if (getToken()) start(); else $("login-panel").hidden = false;
