"""Herald benchmarks: each scenario against Herald (``python wsgi.py``, eventlet) and the Node
socket.io 4.8 reference, in the same invocation, so every figure is also a ratio.

    python bench/run.py SCENARIO [--quick|--full]      # one scenario
    python bench/run.py all --quick                    # every scenario, small sizes

Servers are pinned to core 0 and the Node load generator to core 1 (``taskset``, when the
machine has two cores or more); everything runs on loopback and every step is bounded in
time. Each scenario prints a table and writes ``bench/results/<scenario>-<time>.json``.
See ``bench/README.md`` for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NODE_DIR = BENCH / "node"
RESULTS = BENCH / "results"
PYTHON = sys.executable
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
SERVER_CORE, GENERATOR_CORE = "0", "1"

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# -- processes -------------------------------------------------------------------------


def pinned(cmd: list[str], core: str) -> list[str]:
    """Prefix ``cmd`` with ``taskset`` when there is a core to pin to."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", core, *cmd]
    return cmd


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_kb(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Server:
    """A server under test on a free port, pinned to the server core."""

    name = "server"

    def __init__(self, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, "PORT": str(self.port), "HOST": "127.0.0.1", **self.extra_env}

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 60.0) -> None:
        log = open(self.workdir / f"{self.name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.proc = subprocess.Popen(
            pinned(self.command(), SERVER_CORE), env=self.environment(), stdout=log, stderr=log
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early; see {self.workdir / self.name}.log")
            try:
                if requests.get(self.url + "/health", timeout=2).ok:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class NodeServer(Server):
    """The reference: socket.io 4.8 with the same rooms and message shape (bench/node/server.js)."""

    name = "node"

    def command(self) -> list[str]:
        return ["node", str(NODE_DIR / "server.js")]

    def tokens(self, users: int) -> list[str]:
        return ["reference"] * users


class HeraldServer(Server):
    """Herald as deployed: ``python wsgi.py`` under eventlet, SQLite with persistence on."""

    name = "herald"

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, *, users: int = 1) -> None:
        super().__init__(workdir, env)
        self.database_url = f"sqlite:///{workdir / 'herald.db'}"
        self._tokens = prepare_herald_database(self.database_url, users)

    def command(self) -> list[str]:
        return [PYTHON, str(ROOT / "wsgi.py")]

    def environment(self) -> dict[str, str]:
        env = {
            **os.environ,
            "HERALD_ENV": "testing",
            "SOCKETIO_ASYNC_MODE": "eventlet",
            "DATABASE_URL": self.database_url,
            "UPLOAD_DIR": str(self.workdir / "uploads"),
            "ARTIFACT_DIR": str(self.workdir / "artifacts"),
            "MAX_CONNECTIONS": "12000",
            "MAX_CONCURRENT_JOBS": "1000",
            # Load comes from few users with many sockets each, and floods nobody.
            "MAX_CONNECTIONS_PER_USER": "0",
            "SOCKET_RATE_LIMIT": "0",
            "PYTHONUNBUFFERED": "1",
        }
        env.update({"PORT": str(self.port), "HOST": "127.0.0.1", **self.extra_env})
        return env

    def tokens(self, users: int) -> list[str]:
        return self._tokens[:users]

    def submit(self, token: str, kind: str = "simulate", **params: Any) -> dict[str, Any]:
        response = requests.post(
            self.url + "/api/jobs",
            json={"kind": kind, "params": params},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        response.raise_for_status()
        return dict(response.json()["job"])

    def cancel(self, token: str, job_id: int) -> None:
        requests.post(f"{self.url}/api/jobs/{job_id}/cancel", headers=_bearer(token), timeout=60)

    def kinds(self, token: str) -> set[str]:
        response = requests.get(self.url + "/api/kinds", headers={"Authorization": f"Bearer {token}"}, timeout=30)
        body = response.json() if response.ok else {}
        items = body.get("kinds", body) if isinstance(body, dict) else body
        return {item.get("name", item.get("kind")) if isinstance(item, dict) else str(item) for item in items}


def prepare_herald_database(database_url: str, users: int) -> list[str]:
    """Migrate a fresh database, add users ``bench1..N`` and mint an access token for each."""
    from flask_jwt_extended import create_access_token
    from flask_migrate import upgrade
    from werkzeug.security import generate_password_hash

    from app import create_app
    from app.extensions import db
    from app.models import User

    app = create_app(
        {"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": database_url, "SOCKETIO_ASYNC_MODE": "threading"}
    )
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        password_hash = generate_password_hash("password123")  # one hash for all: hashing is slow
        people = [User(username=f"bench{i}", password_hash=password_hash) for i in range(1, users + 1)]
        db.session.add_all(people)
        db.session.commit()
        tokens = [create_access_token(identity=str(user.id)) for user in people]
        db.session.remove()
    return tokens


class LoadGen:
    """The Node socket.io-client generator (bench/node/loadgen.js), pinned to the other core."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            pinned(["node", str(NODE_DIR / "loadgen.js"), json.dumps(config)], GENERATOR_CORE),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def read(self, event: str, timeout: float = 300.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("load generator exited")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if message.get("event") == event:
                return dict(message)
        raise TimeoutError(f"no {event!r} from the load generator in {timeout}s")

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


@contextmanager
def loadgen(config: dict[str, Any]) -> Iterator[LoadGen]:
    gen = LoadGen(config)
    try:
        yield gen
    finally:
        gen.close()


@contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def measure(gen: LoadGen, server: Server, seconds: float) -> dict[str, Any]:
    """Let the generator count for ``seconds``; add the server's CPU share in that window.

    With ``HERALD_BENCH_PROFILE=1`` Herald is sampled by py-spy meanwhile and a summary of
    where its time went is saved beside the results.
    """
    spy = start_profile(server, seconds)
    cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
    gen.send(f"measure {seconds}")
    result = gen.read("measured", timeout=seconds + 120)
    if spy is not None:
        result["profile"] = finish_profile(*spy)
    result["server_cpu_pct"] = (cpu_seconds(server.pid) - cpu0) / (time.monotonic() - t0) * 100
    result["server_rss_mb"] = rss_kb(server.pid) / 1024
    return result


def start_profile(server: Server, seconds: float) -> tuple[subprocess.Popen[bytes], Path] | None:
    py_spy = Path(PYTHON).parent / "py-spy"
    mode = os.environ.get("HERALD_BENCH_PROFILE")
    if mode not in ("1", "gil") or not isinstance(server, HeraldServer) or not py_spy.exists():
        return None
    raw = server.workdir / f"py-spy-{time.monotonic_ns()}.txt"
    cmd = [str(py_spy), "record", "-p", str(server.pid), "-d", str(int(seconds)), "-f", "raw", "-o", str(raw)]
    if mode == "gil":  # only samples holding the GIL: where the CPU goes, without waits
        cmd += ["--gil", "--rate", "400"]
    return subprocess.Popen([*cmd, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw


def finish_profile(proc: subprocess.Popen[bytes], raw: Path, top: int = 40) -> dict[str, Any]:
    """Share of samples per function (``function file``), the heaviest first: inclusive
    (the function or anything it called) and self (the function itself, where the CPU went)."""
    proc.wait(60)
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines() if raw.exists() else []:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():  # a frame name with a line break in it (py-spy keeps them)
            continue
        total += int(count)
        names = [frame.split(" (")[0] + " " + frame.rsplit("/", 1)[-1].split(":")[0] for frame in stack.split(";")]
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + int(count)
        own[names[-1]] = own.get(names[-1], 0) + int(count)

    def ranked(counts: dict[str, int]) -> dict[str, float]:
        heaviest = sorted(counts.items(), key=lambda item: -item[1])[:top]
        return {name: round(count * 100 / total, 1) for name, count in heaviest} if total else {}

    summary = {"inclusive": ranked(inclusive), "self": ranked(own)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    (RESULTS / f"profile-{stamp}.json").write_text(json.dumps(summary, indent=2))
    if raw.exists():  # the collapsed stacks too (flame graphs, call trees): the work dir goes
        shutil.copyfile(raw, RESULTS / f"profile-{stamp}.stacks.txt")
    return summary


# -- reporting -------------------------------------------------------------------------


@dataclass
class Row:
    """One figure for Herald and the reference, and the ratio between them."""

    metric: str
    herald: float | None
    node: float | None
    unit: str = ""
    goal: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.herald is None or self.node in (None, 0):
            return None
        return self.herald / self.node  # type: ignore[operator]


@dataclass
class Report:
    scenario: str
    mode: str
    rows: list[Row] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> Row:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        return row


def fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_report(report: Report) -> None:
    header = ["scenario", "metric", "herald", "node ref", "ratio", "goal", "met"]
    lines = []
    for row in report.rows:
        ratio = "n/a" if row.ratio is None else f"{row.ratio:.2f}x"
        met = "" if row.met is None else ("yes" if row.met else "NO")
        unit = f" {row.unit}" if row.unit else ""
        lines.append(
            [
                report.scenario,
                row.metric + (f" ({row.note})" if row.note else ""),
                fmt(row.herald) + unit,
                fmt(row.node) + unit,
                ratio,
                row.goal,
                met,
            ]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
    sys.stdout.flush()


def save_report(report: Report) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{report.scenario}-{time.strftime('%Y%m%dT%H%M%S')}.json"
    body = {
        "scenario": report.scenario,
        "mode": report.mode,
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "rows": [{**row.__dict__, "ratio": row.ratio} for row in report.rows],
        "raw": report.raw,
    }
    path.write_text(json.dumps(body, indent=2, default=str))
    return path


# -- scenarios -------------------------------------------------------------------------


def scenario_idle(report: Report, work: Path, quick: bool) -> None:
    """Idle connections: RSS per connection, connect rate and connect p99."""
    sizes = [1000] if quick else [1000, 5000, 10000]
    for size in sizes:
        figures: dict[str, dict[str, Any]] = {}
        for server in (HeraldServer(work / f"idle-h{size}"), NodeServer(work / f"idle-n{size}")):
            with running(server):
                time.sleep(1.0)
                base = rss_kb(server.pid)
                config = {"url": server.url, "token": server.tokens(1)[0], "clients": size, "concurrency": 200}
                with loadgen(config) as gen:
                    ready = gen.read("ready", timeout=600)
                    time.sleep(2.0)
                    ready["rss_per_conn_kb"] = (rss_kb(server.pid) - base) / max(1, ready["connected"])
                    ready["server_rss_mb"] = rss_kb(server.pid) / 1024
                figures[server.name] = ready
        h, n = figures["herald"], figures["node"]
        report.raw[f"idle_{size}"] = figures
        report.add(f"{size} connected", h["connected"], n["connected"], goal=f"= {size}", met=h["connected"] == size)
        report.add(
            f"{size}: memory per connection",
            h["rss_per_conn_kb"],
            n["rss_per_conn_kb"],
            "KB",
            goal="<= 2x node" if size == 10000 else "",
            met=(h["rss_per_conn_kb"] <= 2 * n["rss_per_conn_kb"]) if size == 10000 else None,
        )
        report.add(f"{size}: connects/s", h["connects_per_s"], n["connects_per_s"], "/s")
        report.add(f"{size}: connect p99", h["connect_p99_ms"], n["connect_p99_ms"], "ms")
        report.add(f"{size}: generator CPU (connect phase)", h["generator_cpu_s"], n["generator_cpu_s"], "s")


def _fanout(report: Report, work: Path, quick: bool, *, deflate: bool, tag: str) -> None:
    watchers = 500 if quick else 1000
    rates = [50, 100] if quick else [25, 50, 100, 150, 200]
    window = 3.0 if quick else 5.0
    results: dict[str, list[dict[str, Any]]] = {"herald": [], "node": [], "herald_deflate": []}
    servers: list[Server] = [HeraldServer(work / f"{tag}-h"), NodeServer(work / f"{tag}-n")]
    if deflate:  # the control: what a browser costs when Herald lets compression through
        servers.append(HeraldServer(work / f"{tag}-hz", {"WEBSOCKET_COMPRESSION": "1"}))
        servers[-1].name = "herald_deflate"
    for server in servers:
        with running(server):
            herald = isinstance(server, HeraldServer)
            token = server.tokens(1)[0]
            config = {"url": server.url, "token": token, "clients": watchers, "concurrency": 200, "deflate": deflate}
            config["subscribe_all" if herald else "jobs"] = True if herald else [1]
            with loadgen(config) as gen:
                ready = gen.read("ready", timeout=300)
                for rate in rates:
                    duration = window + 2.0
                    job_id = None
                    if isinstance(server, HeraldServer):
                        steps = int(rate * duration)
                        job_id = server.submit(token, steps=steps, interval=round(1.0 / rate, 6), log_every=1)["id"]
                    else:
                        requests.post(f"{server.url}/bench/fanout?job=1&rate={rate}&duration={duration}", timeout=10)
                    time.sleep(0.5)
                    got = measure(gen, server, window)
                    got.update(rate=rate, watchers=ready["connected"])
                    got["complete"] = got["durable"] / (got["durable"] + got["lost"]) if got["durable"] else None
                    results[server.name].append(got)
                    if isinstance(server, HeraldServer) and job_id is not None:
                        server.cancel(token, job_id)  # a slowed-down job would overlap the next rate's
                    time.sleep(duration - window)  # let this job end before the next rate
    report.raw[tag] = results

    def sustained(runs: list[dict[str, Any]]) -> float | None:
        good = [
            r["deliveries_per_s"] for r in runs if (r["complete"] or 0) >= 0.999 and (r["latency_p99_ms"] or 0) <= 1000
        ]
        return max(good) if good else None

    for h, n in zip(results["herald"], results["node"], strict=True):
        label = f"offered {h['rate']} ev/s x {h['watchers']}"
        report.add(
            f"{label}: events published/s",
            h["durable_per_subscriber_per_s"],
            n["durable_per_subscriber_per_s"],
            "/s",
            note="the job slows down when emitting is the bottleneck",
        )
        report.add(f"{label}: deliveries/s", h["deliveries_per_s"], n["deliveries_per_s"], "/s")
        report.add(f"{label}: p99 latency", h["latency_p99_ms"], n["latency_p99_ms"], "ms")
        report.add(f"{label}: server CPU", h["server_cpu_pct"], n["server_cpu_pct"], "%")
        report.add(f"{label}: generator CPU", h["generator_cpu_pct"], n["generator_cpu_pct"], "%")
        report.add(f"{label}: server RSS", h["server_rss_mb"], n["server_rss_mb"], "MB")
    h_best, n_best = sustained(results["herald"]), sustained(results["node"])
    for z, n in zip(results["herald_deflate"], results["node"], strict=False):
        label = f"offered {z['rate']} ev/s x {z['watchers']}, WEBSOCKET_COMPRESSION=1"
        report.add(f"{label}: deliveries/s", z["deliveries_per_s"], n["deliveries_per_s"], "/s")
        report.add(f"{label}: server CPU", z["server_cpu_pct"], n["server_cpu_pct"], "%")
        report.add(f"{label}: server RSS", z["server_rss_mb"], n["server_rss_mb"], "MB")
    goal_row = report.add("max sustained deliveries/s", h_best, n_best, "/s", note="none lost, p99 <= 1 s")
    if deflate:
        goal_row.goal = ">= 0.9x node"
        goal_row.met = bool(goal_row.ratio is not None and goal_row.ratio >= 0.9)


def scenario_fanout(report: Report, work: Path, quick: bool) -> None:
    """One job, many watchers: deliveries/s and p99 at rising publish rates."""
    _fanout(report, work, quick, deflate=False, tag="fanout")


def scenario_browser(report: Report, work: Path, quick: bool) -> None:
    """Fan-out again with every client offering permessage-deflate, as browsers do."""
    _fanout(report, work, quick, deflate=True, tag="browser")


#: Rounds of the many-jobs scenario in a full run, Herald and Node taking turns: on this
#: shared machine one window's server CPU moves by ±10 % from run to run (Herald's and
#: Node's independently), so the table gives each server's median over the rounds.
MANYJOBS_ROUNDS = 3


def scenario_manyjobs(report: Report, work: Path, quick: bool) -> None:
    """200 jobs x 5 watchers, 10 progress updates/s each, through the real job pipeline."""
    rounds: list[dict[str, dict[str, Any]]] = [
        _manyjobs_round(work / f"round-{index}", quick) for index in range(1 if quick else MANYJOBS_ROUNDS)
    ]
    figures = {name: _median_figures([round_[name] for round_ in rounds]) for name in ("herald", "node")}
    h, n = figures["herald"], figures["node"]
    report.raw["manyjobs"] = {**figures, "rounds": rounds}
    cpu = report.add(
        "server CPU",
        h["server_cpu_pct"],
        n["server_cpu_pct"],
        "%",
        goal="<= 1.5x node" if len(rounds) == 1 else f"<= 1.5x node, median of {len(rounds)}",
    )
    cpu.met = bool(cpu.ratio is not None and cpu.ratio <= 1.5)
    report.add(
        "p99 latency",
        h["latency_p99_ms"],
        n["latency_p99_ms"],
        "ms",
        goal="<= 20 ms",
        met=(h["latency_p99_ms"] or 0) <= 20,
    )
    report.add("p50 latency", h["latency_p50_ms"], n["latency_p50_ms"], "ms")
    report.add("deliveries/s", h["deliveries_per_s"], n["deliveries_per_s"], "/s")
    report.add("progress ticks received", h["ticks"], n["ticks"])
    report.add("generator CPU", h["generator_cpu_pct"], n["generator_cpu_pct"], "%")
    if len(rounds) > 1:
        each = ", ".join(f"{r['herald']['server_cpu_pct']:.1f}/{r['node']['server_cpu_pct']:.1f}" for r in rounds)
        print(f"manyjobs rounds, server CPU % herald/node: {each}", file=sys.stderr)


def _median_figures(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each numeric figure's median over the rounds (the rest from the first round)."""
    merged = dict(runs[0])
    for key, value in runs[0].items():
        values = [run.get(key) for run in runs]
        if isinstance(value, int | float) and all(isinstance(v, int | float) for v in values):
            merged[key] = statistics.median(values)
    return merged


def _manyjobs_round(work: Path, quick: bool) -> dict[str, dict[str, Any]]:
    """One window of each server under the same load."""
    jobs, per_job, window = 200, 5, (5.0 if quick else 10.0)
    figures: dict[str, dict[str, Any]] = {}
    for server in (HeraldServer(work / "many-h", users=jobs), NodeServer(work / "many-n")):
        with running(server):
            herald = isinstance(server, HeraldServer)
            tokens = server.tokens(jobs)
            config: dict[str, Any] = {"url": server.url, "clients": jobs * per_job, "concurrency": 200}
            if herald:  # watcher i belongs to user i % jobs and watches all of that user's jobs
                config.update(tokens=tokens, subscribe_all=True)
            else:
                config.update(token=tokens[0], jobs=list(range(1, jobs + 1)))
            with loadgen(config) as gen:
                gen.read("ready", timeout=300)
                duration = window + 4.0
                if isinstance(server, HeraldServer):
                    # One simulate job per user: progress at 10 Hz, a log line each second. Submitting
                    # 200 jobs takes a while, so they run long and the server is stopped after the window.
                    for token in tokens:
                        server.submit(token, steps=int(10 * (duration + 120)), interval=0.1, log_every=10)
                else:
                    requests.post(
                        f"{server.url}/bench/jobs?jobs={jobs}&hz=10&log_every=10&duration={duration}", timeout=10
                    )
                time.sleep(1.5)
                figures[server.name] = measure(gen, server, window)
                time.sleep(max(0.0, duration - window - 1.0))
    return figures


def scenario_storm(report: Report, work: Path, quick: bool) -> None:
    """Restart the server under subscribed clients; time until all resumed with last_seq."""
    clients, jobs = (1000 if quick else 5000), 50
    figures: dict[str, dict[str, Any]] = {}
    for server in (HeraldServer(work / "storm-h"), NodeServer(work / "storm-n")):
        server.start()
        try:
            token = server.tokens(1)[0]
            if isinstance(server, HeraldServer):
                job_ids = [server.submit(token, steps=100_000, interval=0.2, log_every=5)["id"] for _ in range(jobs)]
            else:
                job_ids = list(range(1, jobs + 1))
                requests.post(f"{server.url}/bench/jobs?jobs={jobs}&hz=5&log_every=5&duration=600", timeout=10)
            config = {"url": server.url, "token": token, "clients": clients, "concurrency": 200, "jobs": job_ids}
            with loadgen({**config, "reconnect": True}) as gen:
                ready = gen.read("ready", timeout=600)
                time.sleep(2.5)  # every job publishes a durable event: clients hold a last_seq
                gen.send("arm")
                gen.read("armed")
                server.kill()
                down = time.monotonic()
                server.start()
                while not accepts(server.port):
                    time.sleep(0.01)
                accepting_at_ms = time.time() * 1000
                restart_s = time.monotonic() - down
                spy = start_profile(server, 15)
                # Herald's jobs end as failed (interrupted) with the kill, the reference's timers die
                # with it: both resume into quiet jobs.
                done = gen.read("resumed", timeout=200) if gen.send("resumed 120") is None else {}
                done["resume_s"] = (
                    (done["last_resumed_at_ms"] - accepting_at_ms) / 1000 if done.get("last_resumed_at_ms") else None
                )
                done.update(connected_before=ready["connected"], restart_s=restart_s)
                if spy is not None:
                    done["profile"] = finish_profile(*spy)
                figures[server.name] = done
        finally:
            server.stop()
    h, n = figures["herald"], figures["node"]
    report.raw["storm"] = figures
    report.add("clients resumed", h["resumed"], n["resumed"], goal=f"= {clients}", met=h["resumed"] == clients)
    report.add("clients holding last_seq", h["with_last_seq"], n["with_last_seq"])
    row = report.add("all resumed after accepting again", h["resume_s"], n["resume_s"], "s", goal="<= 10 s")
    row.met = bool(h["resume_s"] is not None and h["resume_s"] <= 10 and h["resumed"] == clients)
    report.add("restart until accepting", h["restart_s"], n["restart_s"], "s")


def _micro(mode: str, calls: int, work: Path) -> dict[str, Any]:
    env = {**os.environ, "HERALD_ENV": "testing", "SOCKETIO_ASYNC_MODE": "eventlet", "PYTHONPATH": str(ROOT)}
    cmd = pinned([PYTHON, str(BENCH / "micro.py"), mode, str(calls), str(work / f"{mode}.db")], SERVER_CORE)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def scenario_progress(report: Report, work: Path, quick: bool) -> None:
    """Job-side hot paths in one job: coalesced progress() calls/s, durable events/s."""
    progress = _micro("progress", 1_000_000 if quick else 5_000_000, work)
    publish = _micro("publish", 2_000 if quick else 10_000, work)
    many = _micro("publish_many", 20_000 if quick else 100_000, work)
    report.raw.update(progress=progress, publish=publish, publish_many=many)
    rate = progress["calls_per_s"]
    report.add("coalesced progress() calls/s", rate, None, "/s", goal=">= 1,000,000", met=rate >= 1_000_000)
    report.add("progress() cost per call", progress["ns_per_call"] / 1000, None, "us", goal="~1 us")
    report.add("ticks emitted during those calls", progress["emits"], None, note=f"{progress['seconds']:.2f} s")
    report.add("durable events/s (ctx.log: commit + emit)", publish["calls_per_s"], None, "/s")
    report.add("durable event cost", publish["ns_per_call"] / 1000, None, "us")
    rate = many["calls_per_s"]
    report.add(
        f"durable events/s, {many['jobs']} jobs logging at once", rate, None, "/s", goal=">= 20,000", met=rate >= 20_000
    )
    lateness = many["loop_lateness_p99_ms"]
    met = lateness is not None and lateness <= 20
    report.add("loop lateness p99 meanwhile", lateness, None, "ms", goal="<= 20", met=met)


def scenario_ack(report: Report, work: Path, quick: bool) -> None:
    """Socket.IO ack round trip on an idle loopback connection (``ping``: a pong and an ack).

    One python-socketio client (websocket transport) calls ``ping`` and waits for its ack,
    one call at a time: what a page's request/response over the socket feels like.
    """
    import socketio

    calls = 300 if quick else 2000
    figures: dict[str, dict[str, Any]] = {}
    for server in (HeraldServer(work / "ack-h"), NodeServer(work / "ack-n")):
        with running(server):
            client = socketio.Client(reconnection=False)
            client.connect(server.url, auth={"token": server.tokens(1)[0]}, transports=["websocket"], wait_timeout=10)
            try:
                for _ in range(20):  # warm-up
                    client.call("ping", {}, timeout=10)
                samples = []
                for _ in range(calls):
                    started = time.perf_counter()
                    client.call("ping", {}, timeout=10)
                    samples.append((time.perf_counter() - started) * 1000)
            finally:
                client.disconnect()
        samples.sort()
        figures[server.name] = {
            "calls": calls,
            "p50_ms": samples[len(samples) // 2],
            "p99_ms": samples[min(len(samples) - 1, int(len(samples) * 0.99))],
        }
    h, n = figures["herald"], figures["node"]
    report.raw["ack"] = figures
    report.add("ack round trip p50", h["p50_ms"], n["p50_ms"], "ms", goal="<= 5 ms", met=h["p50_ms"] <= 5)
    report.add("ack round trip p99", h["p99_ms"], n["p99_ms"], "ms")


def scenario_plainws(report: Report, work: Path, quick: bool) -> None:
    """Plain-WebSocket fan-out (issue 3's ``/ws``): one job, many watchers, one publish rate."""
    watchers, rate, window = (500 if quick else 1000), 100, (3.0 if quick else 5.0)
    herald = HeraldServer(work / "plainws-h", {"MAX_CONCURRENT_JOBS": "1"})
    figures: dict[str, dict[str, Any]] = {}
    with running(herald):
        if not _plain_ws_available(herald):
            report.add("plain-WS fan-out", None, None, note="n/a (not available: no /ws endpoint in this build)")
            return
        token = herald.tokens(1)[0]
        # The gate: a blocker holds the only job slot so the measured job exists (pending)
        # while the watchers subscribe to it; cancelling the blocker starts it.
        blocker = herald.submit(token, steps=1, interval=60, log_every=0)
        job = herald.submit(token, steps=int(rate * (window + 2)), interval=round(1 / rate, 6), log_every=1)
        config = {"url": herald.url, "token": token, "clients": watchers, "concurrency": 200}
        with loadgen({**config, "plain": "/ws", "jobs": [job["id"]]}) as gen:
            ready = gen.read("ready", timeout=300)
            requests.post(f"{herald.url}/api/jobs/{blocker['id']}/cancel", headers=_bearer(token), timeout=30)
            time.sleep(0.5)
            figures["herald"] = {**measure(gen, herald, window), "connected": ready["connected"]}
    node = NodeServer(work / "plainws-n")
    with running(node):
        config = {"url": node.url, "token": "reference", "clients": watchers, "concurrency": 200}
        with loadgen({**config, "plain": "/ws", "jobs": [1]}) as gen:
            ready = gen.read("ready", timeout=300)
            requests.post(f"{node.url}/bench/fanout?job=1&rate={rate}&duration={window + 2}", timeout=10)
            time.sleep(0.5)
            figures["node"] = {**measure(gen, node, window), "connected": ready["connected"]}
    h, n = figures["herald"], figures["node"]
    report.raw["plainws"] = figures
    label = f"offered {rate} ev/s x {watchers}"
    report.add("plain-WS clients subscribed", h["connected"], n["connected"], goal=f"= {watchers}")
    report.add(
        f"{label}: events published/s", h["durable_per_subscriber_per_s"], n["durable_per_subscriber_per_s"], "/s"
    )
    report.add(f"{label}: deliveries/s", h["deliveries_per_s"], n["deliveries_per_s"], "/s")
    report.add(f"{label}: p99 latency", h["latency_p99_ms"], n["latency_p99_ms"], "ms")
    report.add(f"{label}: lost (seq gaps)", h["lost"], n["lost"])
    report.add(f"{label}: server CPU", h["server_cpu_pct"], n["server_cpu_pct"], "%")
    report.add(f"{label}: generator CPU", h["generator_cpu_pct"], n["generator_cpu_pct"], "%")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _plain_ws_available(server: HeraldServer) -> bool:
    """True when ``/ws`` answers a ping (issue 3 has landed in this build)."""
    try:
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{server.port}/ws?token={server.tokens(1)[0]}", open_timeout=10) as ws:
            ws.send(json.dumps({"type": "ping"}))
            for _ in range(5):
                if json.loads(ws.recv(timeout=5)).get("type") == "pong":
                    return True
        return False
    except Exception:
        return False


def scenario_import(report: Report, work: Path, quick: bool) -> None:
    """CSV rows/s into SQLite with the server's peak RSS (issue 4's ``data_import``)."""
    rows = 50_000 if quick else 200_000
    server = HeraldServer(work / "import-h")
    with running(server):
        token = server.tokens(1)[0]
        if "data_import" not in server.kinds(token):
            report.add("import rows/s", None, None, note="n/a (not available: no data_import job kind in this build)")
            return
        csv_path = work / "rows.csv"
        with open(csv_path, "w") as out:
            out.write("id,name,city,amount,score,created,comment\n")
            for i in range(rows):
                out.write(f"{i},name {i},city {i % 97},{i * 3.25:.2f},{i % 1000},2026-01-{1 + i % 28:02d},{'x' * 90}\n")
        base_rss = rss_kb(server.pid)
        with open(csv_path, "rb") as body:
            upload = requests.post(
                f"{server.url}/api/uploads",
                files={"file": ("rows.csv", body, "text/csv")},
                headers=_bearer(token),
                timeout=600,
            )
        upload.raise_for_status()
        upload_id = upload.json()["upload"]["upload_id"]
        job = server.submit(token, "data_import", upload_id=upload_id, dataset="bench_rows", format="csv")
        peak = base_rss
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            peak = max(peak, rss_kb(server.pid))
            state = requests.get(f"{server.url}/api/jobs/{job['id']}", headers=_bearer(token), timeout=30).json()["job"]
            if state["status"] in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.05)
    from datetime import datetime

    started = datetime.fromisoformat(state["started_at"].replace("Z", "+00:00"))
    finished = datetime.fromisoformat(state["finished_at"].replace("Z", "+00:00"))
    seconds = (finished - started).total_seconds()
    report.raw["import"] = {
        "rows": rows,
        "seconds": seconds,
        "job": state,
        "base_rss_kb": base_rss,
        "peak_rss_kb": peak,
    }
    rate = rows / seconds if seconds > 0 and state["status"] == "completed" else None
    report.add(
        f"import {rows:,} CSV rows: rows/s", rate, None, "/s", goal=">= 100,000", met=bool(rate and rate >= 100_000)
    )
    growth = (peak - base_rss) / 1024
    report.add("server RSS growth during import", growth, None, "MB", goal="<= 50 MB", met=growth <= 50)
    report.add("import job status", None, None, note=state["status"])


SCENARIOS: dict[str, Callable[[Report, Path, bool], None]] = {
    "idle": scenario_idle,
    "fanout": scenario_fanout,
    "browser": scenario_browser,
    "manyjobs": scenario_manyjobs,
    "storm": scenario_storm,
    "ack": scenario_ack,
    "plainws": scenario_plainws,
    "progress": scenario_progress,
    "import": scenario_import,
}


def ensure_node_modules() -> None:
    if not (NODE_DIR / "node_modules" / "socket.io").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", default=True, help="small sizes, short windows (default)")
    size.add_argument("--full", action="store_true", help="the sizes the issue names (slower)")
    args = parser.parse_args(argv)
    quick = not args.full
    ensure_node_modules()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    print(f"# Herald bench ({'quick' if quick else 'full'}); load average {os.getloadavg()[0]:.2f}", flush=True)
    reports = []
    for name in names:
        report = Report(name, "quick" if quick else "full")
        with tempfile.TemporaryDirectory(prefix=f"herald-bench-{name}-") as tmp:
            try:
                SCENARIOS[name](report, Path(tmp), quick)
            except Exception as exc:  # one broken scenario must not hide the others' figures
                report.add("scenario failed", None, None, note=f"{type(exc).__name__}: {exc}")
        print_report(report)
        print(f"  -> {save_report(report).relative_to(ROOT)}", flush=True)
        reports.append(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
