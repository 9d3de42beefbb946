"""The Celery example (``examples/celery/nightly.py``): a Celery app that is not Herald's,
its worker a real ``celery worker`` process on a real Redis, reports into a real Herald
server through the Python client. Runs in the PostgreSQL + Redis pass with the other
several-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from tests.engines import RedisServer
from tests.helpers import wait_for

from .conftest import PASSWORD, ROOT, ServerProcess, _running, launch

pytestmark = [pytest.mark.eventlet_only, pytest.mark.scale_out]

EXAMPLE = ROOT / "examples" / "celery"
BIN = Path(sys.executable).parent


class ExampleWorker:
    """``celery -A nightly worker`` in the example's folder, in its own process group."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.log_path = workdir / "nightly-worker.log"
        path = os.pathsep.join([str(ROOT / "clients" / "python"), os.environ.get("PYTHONPATH", "")])
        self.env = {**os.environ, **env, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ExampleWorker:
        args = [str(BIN / "celery"), "-A", "nightly", "worker", "--pool", "threads", "--concurrency", "2"]
        args += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=EXAMPLE, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    """A Redis of the example's own: Herald's message queue is none of its business."""
    redis = RedisServer().start()
    yield redis
    redis.stop()


@pytest.fixture
def herald(tmp_path: Path) -> Iterator[ServerProcess]:
    yield from launch(tmp_path)


def jobs_of_alice(server: ServerProcess, token: str) -> list[dict[str, Any]]:
    return list(server.api("GET", "/api/jobs?kind=external", token).json()["jobs"])


def test_a_celery_task_outside_herald_reports_into_an_external_job(
    tmp_path: Path, broker: RedisServer, herald: ServerProcess
) -> None:
    env = {"CELERY_BROKER_URL": broker.url(0), "HERALD_URL": herald.url, "HERALD_USERNAME": "alice"}
    worker = ExampleWorker(tmp_path, {**env, "HERALD_PASSWORD": PASSWORD}).start()
    _running.append(worker)  # a failed test's report carries its log
    sender = Celery("sender", broker=broker.url(0))
    try:
        sender.send_task("nightly.import_rows", args=[300])
        token = herald.login("alice")

        def finished() -> dict[str, Any] | None:
            jobs = jobs_of_alice(herald, token)
            return jobs[0] if jobs and jobs[0]["status"] in ("completed", "failed", "cancelled") else None

        job = wait_for(finished, timeout=90, interval=0.2)
    finally:
        sender.close()
        worker.stop()
        _running.remove(worker)
    assert job["status"] == "completed", worker.log_path.read_text()[-3000:]
    assert job["params"] == {"name": "nightly import of 300 rows", "total": 300}
    assert job["result"] == {"rows": 300, "rejected": 3}
    assert job["counts"] == {"imported": 297, "rejected": 3}
    assert job["progress"]["current"] == 300 and job["progress"]["percent"] == 100.0
    events = herald.api("GET", f"/api/jobs/{job['id']}/events", token).json()["events"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["data"]["message"] for e in events if e["type"] == "job_log"] == [
        f"row {n} rejected: no customer id" for n in (97, 194, 291)
    ]
    assert [e["data"]["status"] for e in events if e["type"] == "job_status"] == ["pending", "running", "completed"]
