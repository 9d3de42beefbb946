"""Isolation: user B probes user A's jobs and data 10,000 times and gets zero bytes of them.

Alice owns real things: an upload, a dataset imported from it, a report with an artifact,
a test case and its run, a workflow and a running execution, and a long simulate job that
keeps publishing while Bob probes. Bob sends hypothesis-generated ids (Alice's real ones,
their neighbours, random ids in ``1..2^63-1`` and out-of-range ones) over every way in:
REST (read, history, artifacts, cancel, run, update, delete), Socket.IO (``subscribe``,
seed 001's ``subscribe_test``, seed 000's ``subscribe_batch``, and ``subscribe {all}``),
plain ``/ws`` (``subscribe``, ``subscribe_batch``), seed 002's ``/ws/<Alice's client id>``
and seed 004's execution socket. Everything Bob receives is searched for strings only
Alice's data contains and, parsed, for Alice's job ids or owner id; afterwards Alice's
things are exactly as they were (nothing cancelled, renamed or deleted).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
import requests
import socketio
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.helpers import wait_for

from .plain_ws import KindsServer, start_server

#: Strings that only Alice's data holds (Bob never sends them), case-insensitively.
SECRET = "zqxsecret"
PROBES = 10_000
BATCH = 100
#: Threads sending Bob's REST probes (each with its own keep-alive connection).
REST_THREADS = 3
#: Upload ids and dataset names per batch (string-keyed REST routes).
NAMES = 4
INT64_MAX = 2**63 - 1
FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KindsServer]:
    # No inbound rate limit: Bob pipelines a hundred probes per socket at once.
    yield from start_server(tmp_path_factory.mktemp("isolation"), SOCKET_RATE_LIMIT="0")


def _finished(server: KindsServer, token: str, job_id: int) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        job = server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]
        return job if job["status"] in FINAL else None

    return dict(wait_for(final, timeout=60, interval=0.1))


@pytest.fixture(scope="module")
def alice(server: KindsServer) -> dict[str, Any]:
    """Alice's data, the ids and names Bob will aim at, and how it all looks now."""
    token = server.login("alice")
    csv = f"city,{SECRET}_amount\n{SECRET.upper()}CITY,10\n{SECRET.upper()}TOWN,5\n".encode()
    upload = server.api(
        "POST",
        "/api/uploads?client_id=tab-a",
        token,
        data={"upload_id": "alice-upload"},
        files={"file": (f"{SECRET}-file.csv", csv)},
    )
    assert upload.status_code == 201, upload.text
    imported = server.submit(token, "data_import", upload_id="alice-upload", dataset="alice_sales")
    assert _finished(server, token, imported["id"])["status"] == "completed"
    report = server.submit(
        token,
        "batch_report",
        dataset="alice_sales",
        formats=["csv"],
        reports=[{"name": "by_city", "group_by": ["city"], "metrics": [{"op": "count"}]}],
    )
    assert _finished(server, token, report["id"])["status"] == "completed"
    case = server.api(
        "POST",
        "/api/test-cases",
        token,
        json={
            "name": f"{SECRET} case",
            "steps": [{"name": f"{SECRET} step", "request": {"url": "http://127.0.0.1:9/"}}],
        },
    ).json()["test_case"]
    run = server.api("POST", f"/api/test-cases/{case['id']}/run", token).json()["job"]
    _finished(server, token, run["id"])
    workflow = server.api(
        "POST",
        "/api/workflows",
        token,
        json={"name": f"{SECRET}-wf", "steps": [{"kind": "simulate", "params": {"steps": 100_000, "interval": 0.05}}]},
    ).json()["workflow"]
    execution = server.api("POST", "/api/v1/executions", token, json={"workflow_id": workflow["id"]}).json()
    live = server.submit(token, "simulate", steps=100_000, interval=0.02)
    wait_for(lambda: server.api("GET", f"/api/jobs/{live['id']}", token).json()["job"]["status"] == "running")
    jobs = server.api("GET", "/api/jobs?limit=500", token).json()["jobs"]
    return {
        "token": token,
        "user_id": live["owner_id"],
        "job_ids": sorted(job["id"] for job in jobs),
        "report_id": report["id"],
        "case_id": case["id"],
        "workflow_id": workflow["id"],
        "execution_id": execution["id"],
        "live_ids": [live["id"], execution["id"]],
        "names": ["alice-upload", "alice_sales"],
        "state": _state(server, token, case["id"], workflow["id"]),
    }


def _state(server: KindsServer, token: str, case_id: int, workflow_id: int) -> dict[str, Any]:
    """What Bob must not change: Alice's jobs' statuses, her case, workflow, upload, dataset."""
    jobs = server.api("GET", "/api/jobs?limit=500", token).json()["jobs"]
    return {
        "jobs": {job["id"]: job["status"] for job in jobs},
        "case": server.api("GET", f"/api/test-cases/{case_id}", token).json(),
        "workflow": server.api("GET", f"/api/workflows/{workflow_id}", token).json(),
        "upload": server.api("GET", "/api/uploads/alice-upload", token).json()["upload"]["sha256"],
        "dataset": server.api("GET", "/api/datasets/alice_sales/rows", token).json()["rows"],
    }


class Leaks:
    """Everything Bob received, searched for Alice's secrets, job ids and owner id."""

    def __init__(self, alice: dict[str, Any]) -> None:
        self.job_ids = set(alice["job_ids"])
        self.owner_id = alice["user_id"]
        self.received = 0
        self.found: list[str] = []

    def scan(self, where: str, text: str) -> None:
        self.received += len(text)
        if SECRET in text.lower():
            self.found.append(f"{where}: secret string in {text[:300]}")
        try:
            document = json.loads(text)
        except ValueError:
            return
        self._walk(where, document)

    def scan_object(self, where: str, document: Any) -> None:
        self.scan(where, json.dumps(document))

    def _walk(self, where: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("job_id", "test_id", "batch_execution_id", "execution_id") and value in self.job_ids:
                    self.found.append(f"{where}: Alice's job {value} under {key!r} in {json.dumps(node)[:300]}")
                if key == "owner_id" and value == self.owner_id:
                    self.found.append(f"{where}: Alice's owner_id in {json.dumps(node)[:300]}")
                self._walk(where, value)
        elif isinstance(node, list):
            for item in node:
                self._walk(where, item)


def ids_strategy(alice: dict[str, Any]) -> st.SearchStrategy[int]:
    real = alice["job_ids"] + [alice["case_id"], alice["workflow_id"]]
    neighbours = sorted({i + d for i in real for d in (-2, -1, 1, 2) if i + d > 0})
    return st.one_of(
        st.sampled_from(real),
        st.sampled_from(neighbours),
        st.integers(1, INT64_MAX),
        st.integers(INT64_MAX + 1, 2**70),
        st.integers(-(2**64), 0),
    )


def names_strategy(alice: dict[str, Any]) -> st.SearchStrategy[str]:
    alphabet = st.characters(whitelist_categories=("Ll", "Nd"), whitelist_characters="-_")
    return st.one_of(st.sampled_from(alice["names"]), st.text(alphabet, min_size=1, max_size=20))


#: REST probes by id: (method, path, JSON body or None).
REST_BY_ID: list[tuple[str, str, Any]] = [
    ("GET", "/api/jobs/{id}", None),
    ("GET", "/api/jobs/{id}/events?after=0", None),
    ("GET", "/api/jobs/{id}/artifacts", None),
    ("GET", "/api/jobs/{id}/artifacts/by_city.csv", None),
    ("POST", "/api/jobs/{id}/cancel", None),
    ("GET", "/api/v1/executions/{id}", None),
    ("GET", "/api/test-cases/{id}", None),
    ("GET", "/api/test-cases/{id}/results", None),
    ("PUT", "/api/test-cases/{id}", {"name": "bob's", "steps": [{"name": "s", "request": {"url": "/"}}]}),
    ("POST", "/api/test-cases/{id}/run", None),
    ("DELETE", "/api/test-cases/{id}", None),
    ("GET", "/api/workflows/{id}", None),
    ("DELETE", "/api/workflows/{id}", None),
]
REST_BY_NAME: list[tuple[str, str]] = [
    ("GET", "/api/uploads/{name}"),
    ("DELETE", "/api/uploads/{name}"),
    ("GET", "/api/datasets/{name}"),
    ("GET", "/api/datasets/{name}/rows"),
]
SOCKETIO_EVENTS = [
    ("subscribe", lambda i: {"job_id": i, "last_seq": 0}),
    ("subscribe_test", lambda i: {"test_id": i}),
    ("subscribe_batch", lambda i: {"batch_execution_id": i}),
]
PLAIN_COMMANDS = [
    lambda i: {"type": "subscribe", "job_id": i, "last_seq": 0},
    lambda i: {"type": "subscribe_batch", "batch_execution_id": i},
]


async def _open(url: str) -> Any:
    return await websockets.connect(url, open_timeout=20)


class Bob:
    """Bob's clients, kept open for the whole run: many probes per connection."""

    def __init__(self, server: KindsServer, token: str, leaks: Leaks) -> None:
        self.server = server
        self.leaks = leaks
        self.counts: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.rest_runner = ThreadPoolExecutor(1)
        self.sessions: list[requests.Session] = []
        self.local = threading.local()
        self.auth_header = f"Bearer {token}"
        self.pool = ThreadPoolExecutor(REST_THREADS)
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("*", lambda event, *args: leaks.scan_object(f"socket.io {event}", args))
        self.sio.connect(server.url, auth={"token": token, "client_id": "tab-a"}, transports=["websocket"])
        assert self.sio.call("subscribe", {"all": True}, timeout=10)["ok"] is True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        ws_url = server.ws_url
        self.ws = self._run(_open(f"{ws_url}/ws?token={token}"))
        # Alice's client id on seed 002's endpoint: Bob's socket there hears only Bob.
        self.tab = self._run(_open(f"{ws_url}/ws/tab-a?token={token}"))
        self.token = token

    def _run(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def rest(self, method: str, path: str, body: Any = None) -> None:
        """One request on this thread's keep-alive session."""
        http = getattr(self.local, "http", None)
        if http is None:
            http = self.local.http = requests.Session()
            http.headers["Authorization"] = self.auth_header
            self.sessions.append(http)
        response = http.request(method, self.server.url + path, json=body, timeout=30)
        self.leaks.scan(f"{method} {path} → {response.status_code}", response.text)
        with self.lock:
            self.counts["rest"] += 1

    def rest_batch(self, requests_: list[tuple[str, str, Any]]) -> Future[None]:
        """Send REST probes from ``REST_THREADS`` threads while the sockets probe too."""

        def run() -> None:
            began = time.monotonic()
            list(self.pool.map(lambda probe: self.rest(*probe), requests_))
            self.seconds["rest"] += time.monotonic() - began

        return self.rest_runner.submit(run)

    def socketio_batch(self, probes: list[tuple[str, dict[str, Any]]]) -> None:
        """Emit every probe at once, then wait for every acknowledgement (and a ping's)."""
        done = threading.Semaphore(0)

        def acked(event: str) -> Callable[..., None]:
            def callback(*args: Any) -> None:
                self.leaks.scan_object(f"socket.io ack of {event}", args)
                done.release()

            return callback

        began = time.monotonic()
        for event, payload in probes:
            self.sio.emit(event, payload, callback=acked(event))
        for _ in probes:
            assert done.acquire(timeout=30), "a Socket.IO probe was never acknowledged"
        self.counts["socketio"] += len(probes)
        self.seconds["socketio"] += time.monotonic() - began

    def plain_batch(self, frames: list[dict[str, Any]]) -> None:
        """Send every probe on ``/ws`` at once; read until the pong that follows them."""

        async def exchange() -> None:
            for frame in frames:
                await self.ws.send(json.dumps(frame))
            await self.ws.send(json.dumps({"type": "ping", "data": "barrier"}))
            while True:
                text = await asyncio.wait_for(self.ws.recv(), 30)
                self.leaks.scan("/ws", text)
                if '"barrier"' in text and '"pong"' in text:
                    return

        began = time.monotonic()
        self._run(exchange())
        self.counts["plain /ws"] += len(frames)
        self.seconds["plain /ws"] += time.monotonic() - began

    def execution_socket(self, execution_id: int) -> None:
        """Seed 004: one connection per probe (the id is in the URL)."""

        async def probe() -> None:
            url = f"{self.server.ws_url}/api/v1/ws/executions/{execution_id}?token={self.token}"
            async with websockets.connect(url) as ws:
                try:
                    while True:
                        self.leaks.scan("execution socket", await asyncio.wait_for(ws.recv(), 10))
                except websockets.ConnectionClosed:
                    return

        began = time.monotonic()
        self._run(probe())
        self.counts["plain execution"] += 1
        self.seconds["plain execution"] += time.monotonic() - began

    def drain_tab(self) -> None:
        """Whatever reached Bob's socket on Alice's client id (a ping proves it is served)."""

        async def drain() -> None:
            await self.tab.send(json.dumps({"type": "ping"}))
            while True:
                text = await asyncio.wait_for(self.tab.recv(), 10)
                self.leaks.scan("/ws/tab-a", text)
                if json.loads(text).get("type") == "pong":
                    return

        self._run(drain())
        self.counts["plain /ws/<client_id>"] += 1

    def close(self) -> None:
        self._run(self.ws.close())
        self._run(self.tab.close())
        self.sio.disconnect()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
        self.pool.shutdown()
        self.rest_runner.shutdown()
        for http in self.sessions:
            http.close()


def test_the_scan_finds_alice_s_data_when_alice_asks(server, alice):
    """The control: the same probes from Alice herself would be caught as leaks."""
    leaks = Leaks(alice)
    token = alice["token"]
    paths = [
        "/api/datasets/alice_sales/rows",
        "/api/uploads/alice-upload",
        f"/api/jobs/{alice['live_ids'][0]}",
        f"/api/jobs/{alice['report_id']}/artifacts/by_city.csv",
    ]
    for path in paths:
        before = len(leaks.found)
        leaks.scan(path, server.api("GET", path, token).text)
        assert len(leaks.found) > before, f"{path} would not be caught"


def generated_batches(alice: dict[str, Any]) -> list[tuple[list[int], list[str]]]:
    """``PROBES`` ids from hypothesis in batches of ``BATCH``, each with ``NAMES`` names.

    Drawn before any client runs: hypothesis refuses to generate while other threads (the
    Socket.IO client's) use the ``random`` module, and what it drew is what was sent.
    """
    batches: list[tuple[list[int], list[str]]] = []

    @settings(
        max_examples=PROBES // BATCH,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(ids_strategy(alice), min_size=BATCH, max_size=BATCH),
        st.lists(names_strategy(alice), min_size=NAMES, max_size=NAMES),
    )
    def collect(ids: list[int], names: list[str]) -> None:
        batches.append((ids, names))

    collect()
    return batches


def test_bob_probes_alice_s_things_10_000_times_and_gets_nothing(server, alice):
    began = time.monotonic()
    batches = generated_batches(alice)
    print(f"\ngenerated in {time.monotonic() - began:.1f} s")
    bob_token = server.login("bob")
    leaks = Leaks(alice)
    bob = Bob(server, bob_token, leaks)
    started = time.monotonic()
    try:
        for number, (ids, names) in enumerate(batches):
            rest: list[tuple[str, str, Any]] = [
                (method, path.format(name=name), None) for (method, path), name in zip(REST_BY_NAME, names, strict=True)
            ]
            socketio_probes: list[tuple[str, dict[str, Any]]] = []
            plain_frames: list[dict[str, Any]] = []
            for index, probe_id in enumerate(ids[NAMES:]):
                slot = (number + index) % 20
                if slot < 5:  # REST: a quarter
                    method, path, body = REST_BY_ID[(number + index) % len(REST_BY_ID)]
                    rest.append((method, path.format(id=probe_id), body))
                elif slot < 12:  # Socket.IO: a third
                    event, payload = SOCKETIO_EVENTS[index % len(SOCKETIO_EVENTS)]
                    socketio_probes.append((event, payload(probe_id)))
                elif slot < 19 or number % 4:  # plain /ws: the rest
                    plain_frames.append(PLAIN_COMMANDS[index % len(PLAIN_COMMANDS)](probe_id))
                else:  # seed 004's socket, a new connection per probe
                    bob.execution_socket(probe_id)
            rest_done = bob.rest_batch(rest)
            bob.socketio_batch(socketio_probes)
            bob.plain_batch(plain_frames)
            rest_done.result(120)
            assert not leaks.found, leaks.found[:5]
        bob.drain_tab()
        for path in ("/api/jobs", "/api/uploads", "/api/datasets", "/api/test-cases", "/api/workflows"):
            bob.rest("GET", path)
        bob.rest("GET", "/api/v1/executions")
    finally:
        bob.close()
    elapsed = time.monotonic() - started
    total = sum(bob.counts.values())
    seconds = {name: round(value, 1) for name, value in bob.seconds.items()}
    print(f"\n{total} probes in {elapsed:.1f} s: {dict(bob.counts)}; {leaks.received:,} characters scanned")
    print(f"busy seconds by surface (REST overlaps the sockets): {seconds}")
    assert not leaks.found, leaks.found[:5]
    assert total >= PROBES and bob.counts["plain execution"] > 0
    after = _state(server, alice["token"], alice["case_id"], alice["workflow_id"])
    before = alice["state"]
    after["jobs"] = {job_id: after["jobs"].get(job_id) for job_id in before["jobs"]}  # her workflow may add steps
    assert after == before, "Bob changed something of Alice's"
    for job_id in alice["live_ids"]:
        assert after["jobs"][job_id] == "running", "Alice's live jobs were not cancelled"
    for job_id in alice["live_ids"]:
        server.api("POST", f"/api/jobs/{job_id}/cancel", alice["token"])
