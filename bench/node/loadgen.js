// socket.io-client load generator for Herald's benchmarks (Herald or the Node reference).
//
//   node loadgen.js '<json config>'
//
// Config: url, token (or tokens: one per socket, round robin), clients, concurrency,
// jobs (socket i subscribes to jobs[i % n] with last_seq) or subscribe_all (subscribe
// {all: true}), deflate (offer permessage-deflate, as browsers do), reconnect.
//
// Connects `clients` sockets (at most `concurrency` connecting at once), optionally
// subscribes socket i to jobs[i % jobs.length], prints {"event":"ready",...} and then obeys
// commands on stdin, one per line, answering each with one JSON line:
//   measure <seconds>   count and time every message received in the window
//   arm                 start watching for a server restart (reconnect storm)
//   resumed <timeout>   wait until every socket has reconnected and re-subscribed
//   quit                close everything and exit
// Latency is receive time minus the message's `timestamp` (same clock, ms resolution).
"use strict";

const { io } = require("socket.io-client");
const WebSocket = require("ws");
const readline = require("readline");

const cfg = Object.assign(
  {
    url: "http://127.0.0.1:5000",
    token: "bench",
    clients: 100,
    concurrency: 100,
    jobs: [],
    deflate: false,
    reconnect: false,
    connectTimeout: 60000,
  },
  JSON.parse(process.argv[2] || "{}"),
);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function cpuSeconds() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function percentile(hist, total, p) {
  if (!total) return null;
  const want = Math.ceil(total * p);
  let seen = 0;
  for (let ms = 0; ms < hist.length; ms++) {
    seen += hist[ms];
    if (seen >= want) return ms;
  }
  return hist.length;
}

// -- receiving ------------------------------------------------------------------------
const hist = new Uint32Array(120000);
let received = 0;
let durable = 0;
let lost = 0;
let ticks = 0;
const byType = {};
const seqSeen = new Set();
let latencyCount = 0;

function onMessage(socket, event, msg) {
  received++;
  byType[event] = (byType[event] || 0) + 1;
  if (!msg || typeof msg !== "object") return;
  if (msg.job_id != null && msg.seq != null) {
    durable++;
    seqSeen.add(msg.seq);
    const last = socket.herald.lastSeq.get(msg.job_id) || 0;
    if (last && msg.seq > last + 1) lost += msg.seq - last - 1; // a gap: events never delivered
    if (msg.seq > last) socket.herald.lastSeq.set(msg.job_id, msg.seq);
  } else if (msg.job_id != null) {
    ticks++;
  }
  if (msg.job_id != null && msg.timestamp) {
    const lat = Date.now() - Date.parse(msg.timestamp);
    hist[Math.max(0, Math.min(hist.length - 1, lat))]++;
    latencyCount++;
  }
}

function resetCounters() {
  hist.fill(0);
  received = durable = ticks = latencyCount = lost = 0;
  for (const k of Object.keys(byType)) delete byType[k];
  seqSeen.clear();
}

// -- connecting -----------------------------------------------------------------------
const sockets = [];
const connectMs = [];
let refused = 0;
let armed = false;
let resumedCount = 0;
let lastResumedAt = 0;
let firstResumedAt = 0;

function subscribe(socket) {
  const jobId = socket.herald.job;
  if (jobId == null) return Promise.resolve(true);
  const payload = jobId === "all" ? { all: true } : { job_id: jobId };
  const last = socket.herald.lastSeq.get(jobId);
  if (jobId !== "all") payload.last_seq = last != null ? last : 0;
  return socket
    .timeout(cfg.connectTimeout)
    .emitWithAck("subscribe", payload)
    .then((ack) => !!(ack && ack.ok))
    .catch(() => false);
}

// A plain-WebSocket client (Herald's /ws, the reference's /ws): the same JSON messages as
// Socket.IO, sent as text frames; subscribe is {"type":"subscribe","job_id","last_seq"}.
function openPlain(index) {
  return new Promise((resolve) => {
    const started = performance.now();
    const token = cfg.tokens ? cfg.tokens[index % cfg.tokens.length] : cfg.token;
    const base = cfg.url.replace(/^http/, "ws") + cfg.plain;
    const ws = new WebSocket(`${base}?token=${encodeURIComponent(token)}`, { perMessageDeflate: !!cfg.deflate });
    const socket = { herald: { job: cfg.jobs.length ? cfg.jobs[index % cfg.jobs.length] : null, lastSeq: new Map() } };
    socket.close = () => ws.terminate();
    Object.defineProperty(socket, "connected", { get: () => ws.readyState === WebSocket.OPEN });
    let settled = false;
    const finish = (value) => {
      if (!settled) {
        settled = true;
        resolve(value);
      }
    };
    ws.on("open", () => {
      connectMs.push(performance.now() - started);
      if (socket.herald.job == null) return finish(socket);
      ws.send(JSON.stringify({ type: "subscribe", job_id: socket.herald.job, last_seq: 0 }));
    });
    ws.on("message", (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw.toString());
      } catch {
        return;
      }
      if (msg.type === "subscribed") return finish(socket);
      if (msg.type === "error" && !settled) {
        refused++;
        return finish(null);
      }
      onMessage(socket, msg.type, msg);
    });
    ws.on("error", () => {
      if (!settled) refused++;
      finish(null);
    });
    sockets.push(socket);
  });
}

function openOne(index) {
  if (cfg.plain) return openPlain(index);
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = io(cfg.url, {
      transports: ["websocket"],
      auth: { token: cfg.tokens ? cfg.tokens[index % cfg.tokens.length] : cfg.token },
      perMessageDeflate: cfg.deflate ? { threshold: 1024 } : false,
      reconnection: cfg.reconnect,
      reconnectionDelay: 500,
      reconnectionDelayMax: 2000,
      timeout: cfg.connectTimeout,
      forceNew: true,
    });
    const job = cfg.subscribe_all ? "all" : cfg.jobs.length ? cfg.jobs[index % cfg.jobs.length] : null;
    socket.herald = { job, lastSeq: new Map(), up: false };
    socket.onAny((event, msg) => onMessage(socket, event, msg));
    let settled = false;
    socket.on("connect", () => {
      if (!settled) {
        settled = true;
        connectMs.push(performance.now() - started);
        socket.herald.up = true;
        subscribe(socket).then(() => resolve(socket));
        return;
      }
      // A reconnect after a server restart: resume from the last seq seen (retrying a
      // subscribe that timed out or was refused while the server was swamped).
      const resume = () =>
        subscribe(socket).then((ok) => {
          if (!ok) {
            if (socket.connected) setTimeout(resume, 500);
            return;
          }
          if (armed && !socket.herald.resumed) {
            socket.herald.resumed = true;
            resumedCount++;
            lastResumedAt = Date.now();
            if (!firstResumedAt) firstResumedAt = lastResumedAt;
          }
        });
      resume();
    });
    socket.on("connect_error", () => {
      if (!settled && !cfg.reconnect) {
        settled = true;
        refused++;
        resolve(null);
      }
    });
    sockets.push(socket);
  });
}

async function connectAll() {
  const t0 = performance.now();
  const cpu0 = cpuSeconds();
  let next = 0;
  async function worker() {
    while (next < cfg.clients) {
      const i = next++;
      await openOne(i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency, cfg.clients) }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const sorted = connectMs.slice().sort((a, b) => a - b);
  const pct = (p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)] : null);
  out({
    event: "ready",
    connected: connectMs.length,
    refused,
    seconds,
    connects_per_s: connectMs.length / seconds,
    connect_p50_ms: pct(0.5),
    connect_p99_ms: pct(0.99),
    generator_cpu_s: cpuSeconds() - cpu0,
  });
}

// -- commands -------------------------------------------------------------------------
async function measure(seconds) {
  resetCounters();
  const cpu0 = cpuSeconds();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsed = (performance.now() - t0) / 1000;
  const subscribed = sockets.filter((s) => s.herald.job != null && s.connected).length;
  // Only meaningful when every subscriber watches the same single job.
  const single = cfg.subscribe_all ? !cfg.tokens || cfg.tokens.length === 1 : new Set(cfg.jobs).size === 1;
  out({
    event: "measured",
    seconds: elapsed,
    received,
    durable,
    lost,
    ticks,
    durable_per_subscriber_per_s: subscribed ? durable / subscribed / elapsed : null,
    by_type: Object.assign({}, byType),
    deliveries_per_s: received / elapsed,
    // Durable messages each subscriber should have had: distinct seqs seen x its share.
    durable_expected: single ? seqSeen.size * subscribed : null,
    latency_p50_ms: percentile(hist, latencyCount, 0.5),
    latency_p99_ms: percentile(hist, latencyCount, 0.99),
    latency_max_ms: percentile(hist, latencyCount, 1),
    generator_cpu_pct: ((cpuSeconds() - cpu0) / elapsed) * 100,
    generator_rss_mb: process.memoryUsage().rss / 1048576,
  });
}

async function waitResumed(timeout) {
  const t0 = Date.now();
  const want = sockets.length;
  while (resumedCount < want && Date.now() - t0 < timeout * 1000) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const withSeq = sockets.filter((s) => s.herald.job != null && s.herald.lastSeq.has(s.herald.job)).length;
  out({
    event: "resumed",
    resumed: resumedCount,
    clients: want,
    with_last_seq: withSeq,
    first_resumed_at_ms: firstResumedAt || null,
    last_resumed_at_ms: lastResumedAt || null,
  });
}

const rl = readline.createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  const [cmd, arg] = line.trim().split(/\s+/);
  if (cmd === "measure") await measure(Number(arg || 5));
  else if (cmd === "arm") {
    armed = true;
    resumedCount = 0;
    lastResumedAt = firstResumedAt = 0;
    for (const s of sockets) s.herald.resumed = false;
    out({ event: "armed" });
  } else if (cmd === "resumed") await waitResumed(Number(arg || 30));
  else if (cmd === "quit") {
    for (const s of sockets) s.close();
    out({ event: "bye" });
    setTimeout(() => process.exit(0), 50);
  }
});
rl.on("close", () => process.exit(0));

connectAll();
