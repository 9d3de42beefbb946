"""The example plugin on real servers: ``python wsgi.py`` under eventlet with the inline
executor, gunicorn web processes with a Celery worker (PostgreSQL + Redis), and the
one-line refusal of a module that cannot be used."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PLUGIN_ENV, REPO

from app.webhooks.signing import verify
from tests.helpers import wait_for
from tests.integration.clients import Recorder
from tests.integration.cluster import Cluster
from tests.integration.conftest import ServerProcess, free_port, launch
from tests.webhook_receiver import Receiver

FINAL = {"completed", "failed", "cancelled"}
TEXT = ("alpha beta gamma\n" * 3000 + "omega\n").encode()
BIG = os.urandom(1_000_000)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A real server with users alice and bob, loading the plugin from ``HERALD_JOB_MODULES``."""
    yield from launch(tmp_path, **PLUGIN_ENV)


def upload(server: ServerProcess, token: str, content: bytes, filename: str, upload_id: str) -> None:
    response = server.api(
        "POST", "/api/uploads", token, data={"upload_id": upload_id}, files={"file": (filename, content)}
    )
    assert response.status_code == 201, response.text


def final(server: ServerProcess, token: str, job_id: int) -> dict[str, Any] | None:
    job = server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]
    return job if job["status"] in FINAL else None


def history(server: ServerProcess, token: str, job_id: int) -> list[dict[str, Any]]:
    return list(server.api("GET", f"/api/jobs/{job_id}/events?limit=10000", token).json()["events"])


def check_word_count_run(server: ServerProcess, token: str) -> int:
    """Run ``word_count`` watched over Socket.IO: live progress, durable logs and counts,
    the artifact; returns the job id."""
    upload(server, token, TEXT, "words.txt", "words")
    watcher = Recorder(server, token)
    try:
        job = server.submit(token, "word_count", upload_id="words", top=2)
        assert watcher.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)["ok"]
        done = wait_for(lambda: final(server, token, job["id"]), timeout=60)
        wait_for(lambda: watcher.job_finished(job["id"]), timeout=10)
        ticks = watcher.of_type("job_progress", job["id"])
    finally:
        watcher.close()
    assert done["status"] == "completed", done
    assert done["counts"] == {"lines": 3001, "words": 9001, "distinct_words": 4, "bytes_done": len(TEXT)}
    assert done["result"]["top"] == [{"word": "alpha", "count": 3000}, {"word": "beta", "count": 3000}]
    assert ticks and ticks[-1]["data"]["current"] == len(TEXT)
    types = [e["type"] for e in history(server, token, job["id"])]
    assert types.count("job_log") == 2 and "job_counts" in types
    with server.api("GET", f"/api/jobs/{job['id']}/artifacts/top_words.csv", token) as artifact:
        assert artifact.text.splitlines() == ["word,count", "alpha,3000", "beta,3000"]
    return int(job["id"])


def check_cancelled_checksum(server: ServerProcess, token: str) -> None:
    """A throttled ``checksum_uploads`` is cancelled mid-file: it ends ``cancelled``, its
    counts stop short and it leaves no artifact."""
    upload(server, token, BIG, "big.txt", "big")
    job = server.submit(token, "checksum_uploads", upload_ids=["big"], max_bytes_per_second=100_000)
    wait_for(
        lambda: (server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["progress"] or {}).get("current")
    )
    assert server.api("POST", f"/api/jobs/{job['id']}/cancel", token).status_code in (200, 202)
    done = wait_for(lambda: final(server, token, job["id"]), timeout=30)
    assert done["status"] == "cancelled", done
    assert done["progress"]["current"] < len(BIG)
    assert server.api("GET", f"/api/jobs/{job['id']}/artifacts", token).json()["artifacts"] == []


def test_plugin_kinds_run_inline_on_the_eventlet_server(server: ServerProcess):
    token = server.login("alice")
    kinds = {k["kind"] for k in server.api("GET", "/api/kinds", token).json()["kinds"]}
    assert {"checksum_uploads", "word_count", "simulate"} <= kinds
    check_word_count_run(server, token)
    check_cancelled_checksum(server, token)
    upload(server, token, b"abc", "abc.txt", "abc")
    job = server.submit(token, "checksum_uploads", upload_ids=["abc"], algorithm="md5")
    done = wait_for(lambda: final(server, token, job["id"]), timeout=30)
    assert done["result"]["files"][0]["md5"] == hashlib.md5(b"abc").hexdigest()


@pytest.mark.scale_out
@pytest.mark.eventlet_only
def test_plugin_kinds_run_on_a_celery_worker(tmp_path: Path, postgres_database: str):
    cluster = Cluster(tmp_path, postgres_database, JOB_EXECUTOR="celery", **PLUGIN_ENV)
    receiver = Receiver()
    try:
        web = cluster.web()
        cluster.worker()
        token = web.login("alice")
        secret = "plugin-webhook-secret-0123"
        hook = {"url": receiver.url, "events": ["job.completed"], "secret": secret}
        assert web.api("POST", "/api/webhooks", token, json=hook).status_code == 201
        job_id = check_word_count_run(web, token)
        assert cluster.job_row(job_id)["worker_id"] != web.worker_id(), "the job ran on the Celery worker"

        # Its end, committed by the worker, reaches webhooks through the web process's dispatcher.
        def word_count_end() -> list[Any]:  # the upload (a file_upload job) ended first
            return [p for p in receiver.posts() if json.loads(p.body)["job"]["id"] == job_id]

        (post,) = wait_for(word_count_end, timeout=30)
        assert verify(secret, post.headers["Herald-Signature"], post.body)
        assert json.loads(post.body)["job"]["kind"] == "word_count"
        check_cancelled_checksum(web, token)
    finally:
        receiver.close()
        cluster.stop()


def last_line(refused: subprocess.CompletedProcess[str]) -> str:
    """What the operator reads last: the refusal (eventlet's own deprecation notice may come
    before it), and never a traceback."""
    assert "Traceback" not in refused.stderr, refused.stderr
    return refused.stderr.strip().splitlines()[-1]


def start_refused(
    modules: str, tmp_path: Path, *, command: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Start a web process (or ``command``) with ``HERALD_JOB_MODULES=modules``; it must stop."""
    env = {
        **os.environ,
        **PLUGIN_ENV,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), PLUGIN_ENV["PYTHONPATH"]]),
        "HERALD_JOB_MODULES": modules,
        "HERALD_ENV": "testing",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'herald.db'}",
        "PORT": str(free_port()),  # gunicorn listens before its worker loads the app
    }
    return subprocess.run(
        command or [sys.executable, "wsgi.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_module_that_cannot_be_imported_stops_the_start_with_one_line(tmp_path: Path):
    refused = start_refused("herald_example_plugin.jobs,myapp.jobs", tmp_path)
    assert refused.returncode == 4
    assert last_line(refused) == "HERALD_JOB_MODULES: cannot import 'myapp.jobs': No module named 'myapp'"
    (tmp_path / "broken_jobs.py").write_text("def oops(:\n")
    refused = start_refused("broken_jobs", tmp_path)
    assert refused.returncode == 4
    assert last_line(refused).startswith("HERALD_JOB_MODULES: cannot import 'broken_jobs': SyntaxError: ")


def test_a_plugin_kind_named_like_a_built_in_is_refused(tmp_path: Path):
    (tmp_path / "clash_jobs.py").write_text(
        "from app.jobs.registry import job_kind\n\n"
        "@job_kind('simulate', schema={'properties': {}})\n"
        "def simulate(ctx, params):\n    return None\n"
    )
    refused = start_refused("clash_jobs", tmp_path)
    assert refused.returncode == 4
    assert last_line(refused) == (
        "HERALD_JOB_MODULES: 'clash_jobs' registers job kind 'simulate', a built-in kind; rename it"
    )


def test_a_celery_worker_stops_with_the_same_line(tmp_path: Path):
    celery = str(Path(sys.executable).parent / "celery")
    refused = start_refused("myapp.jobs", tmp_path, command=[celery, "-A", "app.worker", "worker", "--pool", "solo"])
    assert refused.returncode == 4
    assert last_line(refused) == "HERALD_JOB_MODULES: cannot import 'myapp.jobs': No module named 'myapp'"


def test_gunicorn_stops_instead_of_starting_workers_that_fail_the_same_way(tmp_path: Path):
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    refused = start_refused(
        "myapp.jobs", tmp_path, command=[gunicorn, "-c", "gunicorn.conf.py", "-k", "eventlet", "-w", "1", "wsgi:app"]
    )
    assert refused.returncode == 4  # gunicorn's "App failed to load": it halts
    assert "HERALD_JOB_MODULES: cannot import 'myapp.jobs': No module named 'myapp'" in refused.stderr.splitlines()
    assert "Traceback" not in refused.stderr
