"""Stopping the server: Ctrl+C (SIGINT) or SIGTERM ends it with status 0 and a goodbye
line, also mid-job and under ``make run``; the console shows one line per request."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.helpers import wait_for

from .conftest import ROOT, ServerProcess, free_port, launch

GOODBYE = re.compile(r"^Herald stopped \((SIGINT|SIGTERM)\)\. Goodbye\.$", re.MULTILINE)


@pytest.fixture
def server(tmp_path: Path):
    yield from launch(tmp_path)


def stopped(server: ServerProcess, sig: signal.Signals) -> tuple[int, str]:
    assert server.proc is not None
    server.proc.send_signal(sig)
    code = server.proc.wait(15)
    return code, server.log_path.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_ends_the_server_with_status_0_and_a_goodbye_line(server, sig):
    code, log = stopped(server, sig)
    assert code == 0, log[-2000:]
    assert GOODBYE.search(log).group(1) == sig.name
    assert "Traceback" not in log


def test_ctrl_c_while_a_job_keeps_the_loop_busy_still_stops_the_server(server):
    token = server.login("alice")
    job = server.submit(token, steps=1_000_000, interval=0)
    wait_for(lambda: server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]["status"] == "running")
    code, log = stopped(server, signal.SIGINT)
    assert code == 0, log[-2000:]
    assert GOODBYE.search(log)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_logs_each_request_and_stops_on_ctrl_c_without_a_make_error(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'herald.db'}",
        "UPLOAD_DIR": str(tmp_path / "uploads"),
        "ARTIFACT_DIR": str(tmp_path / "artifacts"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("HERALD_ENV", None)
    output = tmp_path / "make.log"
    with open(output, "wb") as out:
        # -o: never reinstall the venv from here. A session of its own: Ctrl+C reaches the
        # whole foreground group (make and the server), as in a terminal.
        make = subprocess.Popen(
            ["make", "-o", ".venv/.runtime", "run", "HOST=127.0.0.1", f"PORT={port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(url + "/health", timeout=1).ok
            except requests.RequestException:
                return False

        wait_for(up, timeout=90, interval=0.2)
        requests.get(url + "/api/jobs?token=eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl", timeout=5)
        wait_for(lambda: "GET /api/jobs" in output.read_text(), timeout=10)
        os.killpg(make.pid, signal.SIGINT)
        make.wait(20)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait(10)
    log = output.read_text()
    assert re.search(r"INFO herald\.request: GET /api/jobs\?token=\[redacted\] 401 [\d.]+ ms", log), log[-2000:]
    assert "eyJhbGci" not in log
    assert GOODBYE.search(log), log[-2000:]
    assert "make: ***" not in log, log[-2000:]
    # make itself then ends by the SIGINT it got, silently, as a shell expects of Ctrl+C.


def test_a_second_server_on_a_taken_port_stops_saying_so(server):
    second = subprocess.run(
        [sys.executable, "wsgi.py"], cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"Herald cannot listen on 127.0.0.1:{server.port}: Address already in use" in second.stderr
    assert "Traceback" not in second.stderr + second.stdout
    assert requests.get(server.url + "/health", timeout=5).ok  # the first one serves on, alone
