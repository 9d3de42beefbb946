// Reference socket.io 4.8 server for Herald's benchmarks: the same rooms, message shape
// and subscribe/ack protocol as Herald, with no database, auth check or job runner.
// Load is driven over HTTP: POST /bench/fanout and /bench/jobs (see bench/README.md).
"use strict";

const http = require("http");
const { Server } = require("socket.io");
const WebSocket = require("ws");

const port = Number(process.env.PORT || 5100);
const pingInterval = Number(process.env.PING_INTERVAL || 25) * 1000;

function message(type, jobId, seq, data) {
  return { type, job_id: jobId, seq, timestamp: new Date().toISOString(), data };
}

const seqs = new Map(); // job id -> last durable seq
function nextSeq(jobId) {
  const seq = (seqs.get(jobId) || 0) + 1;
  seqs.set(jobId, seq);
  return seq;
}

// Plain-WebSocket subscribers per job (the reference for Herald's /ws endpoint).
const plainRooms = new Map();

function emitTo(jobId, msg) {
  io.to(`job:${jobId}`).to("user:1:jobs").emit(msg.type, msg);
  const plain = plainRooms.get(jobId);
  if (plain && plain.size) {
    const frame = JSON.stringify(msg); // one encode per event, as Socket.IO does
    for (const ws of plain) ws.send(frame);
  }
}

// Emit `rate` durable job_log messages per second to one job for `duration` seconds,
// plus job_progress ticks at 10 Hz (what Herald's coalescer sends).
function fanout(jobId, rate, duration) {
  const started = Date.now();
  let sent = 0;
  const timer = setInterval(() => {
    const elapsed = (Date.now() - started) / 1000;
    if (elapsed >= duration) {
      clearInterval(timer);
      return;
    }
    const due = Math.floor(elapsed * rate) - sent;
    for (let i = 0; i < due; i++) {
      sent++;
      emitTo(jobId, message("job_log", jobId, nextSeq(jobId), { level: "info", message: `reached step ${sent}` }));
    }
  }, 2);
  const ticks = setInterval(() => {
    if ((Date.now() - started) / 1000 >= duration) return clearInterval(ticks);
    emitTo(jobId, message("job_progress", jobId, null, { current: sent, total: rate * duration, message: "step" }));
  }, 100);
}

// `jobs` jobs (ids first..first+jobs-1), each sending progress at `hz` and a log line
// every `logEvery` ticks, for `duration` seconds.
function manyJobs(first, jobs, hz, logEvery, duration) {
  for (let j = 0; j < jobs; j++) {
    const jobId = first + j;
    let step = 0;
    const started = Date.now();
    const steps = Math.round(hz * duration);
    const timer = setInterval(() => {
      step++;
      if (step > steps || Date.now() - started > duration * 1000 + 1000) return clearInterval(timer);
      emitTo(jobId, message("job_progress", jobId, null, { current: step, total: steps, message: `step ${step}` }));
      if (logEvery && step % logEvery === 0) {
        emitTo(jobId, message("job_log", jobId, nextSeq(jobId), { level: "info", message: `reached step ${step}` }));
      }
    }, 1000 / hz);
  }
}

const httpServer = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  const q = (name, dflt) => Number(url.searchParams.get(name) ?? dflt);
  let body = { ok: true };
  if (url.pathname === "/health") {
    body = { status: "ok", connections: { socketio: io.engine.clientsCount } };
  } else if (req.method === "POST" && url.pathname === "/bench/fanout") {
    fanout(q("job", 1), q("rate", 100), q("duration", 5));
  } else if (req.method === "POST" && url.pathname === "/bench/jobs") {
    manyJobs(q("first", 1), q("jobs", 200), q("hz", 10), q("log_every", 10), q("duration", 5));
  } else {
    res.writeHead(404);
    return res.end();
  }
  res.writeHead(200, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
});

const io = new Server(httpServer, { pingInterval, pingTimeout: 20000, maxHttpBufferSize: 1e6, destroyUpgrade: false });

io.use((socket, next) => {
  const token = (socket.handshake.auth && socket.handshake.auth.token) || socket.handshake.query.token;
  if (!token) return next(Object.assign(new Error("unauthorized"), { data: { code: "unauthorized" } }));
  next();
});

io.on("connection", (socket) => {
  socket.join("user:1");
  socket.emit(
    "connection_established",
    message("connection_established", null, null, { sid: socket.id, server_time: new Date().toISOString() }),
  );
  socket.on("ping", (payload, ack) => {
    socket.emit("pong", message("pong", null, null, { echo: payload, server_time: new Date().toISOString() }));
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("subscribe", (payload, ack) => {
    const jobId = Number(payload && payload.job_id);
    socket.join(`job:${jobId}`);
    if (typeof ack === "function") ack({ ok: true, job: { id: jobId, last_seq: seqs.get(jobId) || 0 } });
  });
});

const wss = new WebSocket.Server({ noServer: true, perMessageDeflate: false });
httpServer.on("upgrade", (req, socket, head) => {
  if (!req.url.startsWith("/ws")) return; // socket.io handles its own path
  wss.handleUpgrade(req, socket, head, (ws) => {
    const joined = new Set();
    ws.on("message", (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw.toString());
      } catch {
        return ws.send(JSON.stringify({ type: "error", code: "invalid_json", message: "not JSON" }));
      }
      if (msg.type === "ping") return ws.send(JSON.stringify({ type: "pong" }));
      if (msg.type === "subscribe") {
        const jobId = Number(msg.job_id);
        if (!plainRooms.has(jobId)) plainRooms.set(jobId, new Set());
        plainRooms.get(jobId).add(ws);
        joined.add(jobId);
        ws.send(JSON.stringify(message("subscribed", jobId, null, { job: { id: jobId } })));
      }
    });
    ws.on("close", () => {
      for (const jobId of joined) plainRooms.get(jobId).delete(ws);
    });
  });
});

httpServer.listen(port, "127.0.0.1", () => console.log(`node reference serving on http://127.0.0.1:${port}`));
