"""Past one machine: web processes and Celery workers on real PostgreSQL and Redis.

Each test builds its own cluster (``cluster.py``): its own database, its own
``redis-server``, gunicorn eventlet web processes and, where it says so, a Celery worker.
Leases are short here (4 s, heartbeat 1 s) so that dead workers are noticed quickly.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import websockets

from tests.helpers import wait_for

from .clients import Recorder
from .cluster import Cluster
from .conftest import ROOT, ServerProcess

pytestmark = [pytest.mark.eventlet_only, pytest.mark.scale_out]

FINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def cluster(tmp_path: Path, postgres_database: str) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, postgres_database)
    try:
        yield cluster
    finally:
        cluster.stop()


class PlainRecorder:
    """A plain ``/ws`` client in a thread: subscribes from seq 0 and records every frame."""

    def __init__(self, server: ServerProcess, token: str, job_id: int) -> None:
        self.frames: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        url = server.url.replace("http://", "ws://") + f"/ws?token={token}"
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run(url, job_id)), daemon=True)
        self.thread.start()
        assert self.subscribed.wait(20), "the /ws client did not subscribe"

    async def _run(self, url: str, job_id: int) -> None:
        async with websockets.connect(url, open_timeout=20) as ws:
            await ws.send(json.dumps({"type": "subscribe", "job_id": job_id, "last_seq": 0}))
            while not self._stop.is_set():
                try:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 0.2))
                except TimeoutError:
                    continue
                if frame.get("type") == "subscribed":
                    self.subscribed.set()
                self.frames.append(frame)

    def durable(self, job_id: int) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("job_id") == job_id and f.get("seq") is not None]

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)


def durable(messages: list[dict[str, Any]], job_id: int) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("job_id") == job_id and m.get("seq") is not None]


def history(server: ServerProcess, token: str, job_id: int) -> list[dict[str, Any]]:
    response = server.api("GET", f"/api/jobs/{job_id}/events?limit=10000", token)
    return list(response.json()["events"])


def job_of(server: ServerProcess, token: str, job_id: int) -> dict[str, Any]:
    return dict(server.api("GET", f"/api/jobs/{job_id}", token).json()["job"])


def finished(server: ServerProcess, token: str, job_id: int) -> dict[str, Any] | None:
    job = job_of(server, token, job_id)
    return job if job["status"] in FINAL else None


def assert_one_terminal_event_last(events: list[dict[str, Any]]) -> None:
    terminal = [i for i, e in enumerate(events) if e["type"] == "job_status" and e["data"]["status"] in FINAL]
    assert terminal == [len(events) - 1], f"terminal events at {terminal} of {len(events)}"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_a_job_submitted_on_a_runs_on_the_worker_and_clients_on_b_get_every_event(cluster: Cluster):
    cluster.env["JOB_EXECUTOR"] = "celery"
    web_a, web_b = cluster.web(), cluster.web()
    worker = cluster.worker()
    token = web_a.login("alice")
    job = web_a.submit(token, steps=30, interval=0.03, log_every=1)
    sio = Recorder(web_b, token)
    assert sio.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)["ok"]
    plain = PlainRecorder(web_b, token, job["id"])
    try:
        done = wait_for(lambda: finished(web_a, token, job["id"]), timeout=60)
        wait_for(lambda: sio.job_finished(job["id"]), timeout=10)
        wait_for(lambda: any(f.get("data", {}).get("status") == "completed" for f in plain.durable(job["id"])), 10)
    finally:
        sio.close()
        plain.close()
    assert done["status"] == "completed", cluster.logs()
    ran_on = cluster.job_row(job["id"])["worker_id"]
    assert ran_on not in {web_a.worker_id(), web_b.worker_id()}, "the job ran on the Celery worker"
    stored = history(web_a, token, job["id"])
    assert_one_terminal_event_last(stored)
    assert len(stored) > 30
    assert durable(sio.messages, job["id"]) == stored
    assert plain.durable(job["id"]) == stored
    assert "herald.run_job" in worker.log()


def test_cancel_through_b_stops_a_job_running_on_the_worker_within_a_second(cluster: Cluster):
    cluster.env["JOB_EXECUTOR"] = "celery"
    web_a, web_b = cluster.web(), cluster.web()
    cluster.worker()
    token = web_a.login("alice")
    job = web_a.submit(token, steps=600, interval=0.05)
    sio = Recorder(web_b, token)
    try:
        assert sio.client.call("subscribe", {"job_id": job["id"]}, timeout=10)["ok"]
        wait_for(lambda: job_of(web_b, token, job["id"])["status"] == "running", timeout=30)
        asked = time.monotonic()
        assert web_b.api("POST", f"/api/jobs/{job['id']}/cancel", token).status_code == 202
        wait_for(lambda: sio.of_type("job_status", job["id"]) and sio.job_finished(job["id"]), timeout=10)
        took = time.monotonic() - asked
    finally:
        sio.close()
    assert sio.of_type("job_status", job["id"])[-1]["data"]["status"] == "cancelled"
    assert took < 1.0, f"cancel took {took:.2f} s"
    assert_one_terminal_event_last(history(web_a, token, job["id"]))


def test_kill_9_of_the_worker_mid_job_ends_it_interrupted_within_the_lease(cluster: Cluster):
    cluster.env["JOB_EXECUTOR"] = "celery"
    web = cluster.web()
    worker = cluster.worker()
    token = web.login("alice")
    job = web.submit(token, steps=600, interval=0.05)
    sio = Recorder(web, token)
    try:
        assert sio.client.call("subscribe", {"job_id": job["id"]}, timeout=10)["ok"]
        wait_for(lambda: job_of(web, token, job["id"])["status"] == "running", timeout=30)
        worker.kill()
        killed = time.monotonic()
        done = wait_for(lambda: finished(web, token, job["id"]), timeout=20)
        detected = time.monotonic() - killed
        wait_for(lambda: sio.job_finished(job["id"]), timeout=5)
    finally:
        sio.close()
    assert done["status"] == "failed" and done["error"]["code"] == "interrupted"
    assert detected < 4 + 2 + 1, f"detected after {detected:.1f} s (lease 4 s, heartbeat 1 s)"
    assert sio.of_type("job_status", job["id"])[-1]["data"]["error"]["code"] == "interrupted"
    assert_one_terminal_event_last(history(web, token, job["id"]))


def test_a_worker_paused_past_its_lease_writes_nothing_after_the_end(cluster: Cluster):
    cluster.env["JOB_EXECUTOR"] = "celery"
    web = cluster.web()
    worker = cluster.worker()
    token = web.login("alice")
    job = web.submit(token, steps=400, interval=0.02, log_every=1)
    wait_for(lambda: job_of(web, token, job["id"])["status"] == "running", timeout=30)
    time.sleep(0.5)
    worker.signal(signal.SIGSTOP)
    try:
        done = wait_for(lambda: finished(web, token, job["id"]), timeout=20)
    finally:
        worker.signal(signal.SIGCONT)
    time.sleep(4)  # the resumed worker tries to go on: every write of it must be refused
    after = job_of(web, token, job["id"])
    events = history(web, token, job["id"])
    assert done["status"] == after["status"] == "failed" and after["error"]["code"] == "interrupted"
    assert_one_terminal_event_last(events)
    assert after["last_seq"] == events[-1]["seq"]
    assert "lease lost" in worker.log() or "settled by another worker" in worker.log()


def test_a_pending_job_left_by_a_killed_process_runs_to_completion_elsewhere(cluster: Cluster):
    web_a = cluster.web(ServerProcess, MAX_CONCURRENT_JOBS="1")
    token = web_a.login("alice")
    busy = web_a.submit(token, steps=600, interval=0.05)
    waiting = web_a.submit(token, steps=5, interval=0.02)
    wait_for(lambda: job_of(web_a, token, busy["id"])["status"] == "running", timeout=20)
    assert job_of(web_a, token, waiting["id"])["status"] == "pending"
    web_a.kill()
    web_b = cluster.web(ServerProcess)
    done = wait_for(lambda: finished(web_b, token, waiting["id"]), timeout=30)
    interrupted = wait_for(lambda: finished(web_b, token, busy["id"]), timeout=30)
    assert done["status"] == "completed"
    assert interrupted["status"] == "failed" and interrupted["error"]["code"] == "interrupted"


@pytest.mark.skipif(sys.platform != "linux", reason="pid namespaces are Linux")
def test_same_hostname_in_separate_pid_namespaces_fails_no_live_job(cluster: Cluster):
    if subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --pid needs privileges this machine does not give")
    a, b = cluster.web(NamespacedServer), cluster.web(NamespacedServer)
    assert a.worker_id().split(":")[:2] == b.worker_id().split(":")[:2], "same hostname, same pid (1)"
    token = a.login("alice")
    jobs = [server.submit(token, steps=50, interval=0.2) for server in (a, b, a, b)]
    wait_for(lambda: all(job_of(a, token, j["id"])["status"] == "running" for j in jobs), timeout=30)
    time.sleep(4 * 2)  # two leases: a peer that misjudged liveness would have failed them by now
    statuses = [job_of(b, token, j["id"]) for j in jobs]
    assert all(job["status"] == "running" for job in statuses), statuses
    for job in jobs:
        a.api("POST", f"/api/jobs/{job['id']}/cancel", token)


class NamespacedServer(ServerProcess):
    """``python wsgi.py`` as pid 1 of a new pid namespace (like a container), same hostname."""

    def command(self) -> list[str]:
        return ["unshare", "--pid", "--fork", "--kill-child", sys.executable, str(ROOT / "wsgi.py")]

    def stop(self) -> None:
        """``unshare --fork`` waits out a SIGTERM (stop() then waited 10 s for nothing):
        kill it, and ``--kill-child`` takes the server with it."""
        self.kill()


def test_redis_stopped_for_5_s_mid_job_loses_nothing_for_clients_on_the_other_process(cluster: Cluster):
    runner_web = cluster.web(ServerProcess)
    watcher_web = cluster.web(ServerProcess, MAX_CONCURRENT_JOBS="0")  # runs nothing: the job stays on the first
    token = runner_web.login("alice")
    job = runner_web.submit(token, steps=120, interval=0.06, log_every=1)
    sio = Recorder(watcher_web, token)
    assert sio.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)["ok"]
    plain = PlainRecorder(watcher_web, token, job["id"])
    try:
        wait_for(lambda: len(durable(sio.messages, job["id"])) > 10, timeout=30)
        cluster.redis.proc.terminate()
        cluster.redis.proc.wait(10)
        time.sleep(1.5)
        ready = requests.get(watcher_web.url + "/ready", timeout=5)
        time.sleep(3.5)
        cluster.redis.start()
        done = wait_for(lambda: finished(runner_web, token, job["id"]), timeout=60)
        wait_for(lambda: sio.job_finished(job["id"]), timeout=15)
        wait_for(lambda: any(f.get("data", {}).get("status") in FINAL for f in plain.durable(job["id"])), 15)
    finally:
        sio.close()
        plain.close()
    assert ready.status_code == 503 and ready.json()["message_queue"]["status"] == "degraded", ready.text
    assert done["status"] == "completed"
    stored = history(runner_web, token, job["id"])
    assert_one_terminal_event_last(stored)
    assert durable(sio.messages, job["id"]) == stored
    assert plain.durable(job["id"]) == stored


def test_gunicorn_binds_loopback_unless_host_says_otherwise():
    env = {"PATH": "/usr/bin:/bin", "PORT": "5999"}
    bind = subprocess.run(
        [sys.executable, "-c", "import runpy; print(runpy.run_path('gunicorn.conf.py')['bind'])"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert bind == "127.0.0.1:5999"
