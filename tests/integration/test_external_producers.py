"""External producers against the real server: a producer process using the Python client,
a Socket.IO watcher, idempotent retries, the producer token's scope on every read route and
socket, its end with the job and with its TTL, and the curl example."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import wait_for

from .clients import Recorder, durable_messages
from .conftest import PASSWORD, ROOT, ServerProcess, launch
from .test_token_matrix import refused_over_plain, refused_over_socketio

PRODUCER = Path(__file__).with_name("external_producer.py")
CLIENT_PATH = ROOT / "clients" / "python"
FINAL = {"completed", "failed", "cancelled"}


def producer_env() -> dict[str, str]:
    """The environment of a process outside Herald that has the client installed."""
    path = os.pathsep.join(p for p in (str(CLIENT_PATH), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def start_producer(server: ServerProcess, mode: str) -> tuple[subprocess.Popen[str], int]:
    """The producer process (``external_producer.py``) and the id of the job it created."""
    proc = subprocess.Popen(
        [sys.executable, str(PRODUCER), server.url, "alice", PASSWORD, mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=producer_env(),
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.strip().isdigit(), f"the producer printed {first!r}"
    return proc, int(first)


def go(proc: subprocess.Popen[str]) -> str:
    """Let the producer report; returns its last line once it has exited."""
    out, _ = proc.communicate("go\n", timeout=120)
    assert proc.returncode == 0, out
    return out.strip().splitlines()[-1]


def create_external(server: ServerProcess, token: str, name: str = "external") -> dict[str, Any]:
    response = server.api("POST", "/api/jobs", token, json={"kind": "external", "name": name})
    assert response.status_code == 202, response.text
    return dict(response.json())


def report(server: ServerProcess, producer: str, job_id: int, items: list[dict[str, Any]]) -> requests.Response:
    return server.api("POST", f"/api/jobs/{job_id}/report", producer, json={"items": items})


def history(server: ServerProcess, token: str, job_id: int) -> list[dict[str, Any]]:
    response = server.api("GET", f"/api/jobs/{job_id}/events?limit=10000", token)
    assert response.status_code == 200, response.text
    return list(response.json()["events"])


def job_of(server: ServerProcess, token: str, job_id: int) -> dict[str, Any]:
    return dict(server.api("GET", f"/api/jobs/{job_id}", token).json()["job"])


def test_a_producer_process_reports_10000_updates_and_100_lines_that_a_socketio_client_sees_live(
    server: ServerProcess,
) -> None:
    token = server.login("alice")
    proc, job_id = start_producer(server, "progress")
    watcher = Recorder(server, token)
    try:
        ack = watcher.client.call("subscribe", {"job_id": job_id, "last_seq": 0}, timeout=10)
        assert ack["ok"] is True
        assert go(proc) == "completed"
        wait_for(lambda: watcher.job_finished(job_id), timeout=30)
    finally:
        watcher.close()
    stored = history(server, token, job_id)
    seen = watcher.of_job(job_id)
    # Every durable event, once, in seq order, exactly as stored.
    assert durable_messages(seen) == durable_messages(stored)
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))
    logs = [e["data"]["message"] for e in stored if e["type"] == "job_log"]
    assert logs == [f"line {i}" for i in range(100)]
    statuses = [e["data"]["status"] for e in stored if e["type"] == "job_status"]
    assert statuses == ["pending", "running", "completed"]
    # The final status carries the result, and the counters as they ended (as every job's does).
    assert stored[-1]["data"] == {"status": "completed", "result": {"rows": 10_000}, "counts": {"rows": 10_000}}
    # Progress arrived as coalesced ticks while the producer worked, never going back.
    ticks = [m["data"]["current"] for m in seen if m["type"] == "job_progress"]
    assert len(set(ticks)) >= 2 and ticks == sorted(ticks) and ticks[-1] == 10_000
    last_tick = max(i for i, m in enumerate(seen) if m["type"] == "job_progress")
    first_final = next(i for i, m in enumerate(seen) if m.get("data", {}).get("status") == "completed")
    assert last_tick < first_final  # the last tick goes out before the final status
    job = job_of(server, token, job_id)
    assert job["status"] == "completed" and job["counts"] == {"rows": 10_000}
    assert job["progress"]["current"] == 10_000 and job["progress"]["percent"] == 100.0


def test_a_cancel_in_herald_stops_the_producers_loop(server: ServerProcess) -> None:
    token = server.login("alice")
    proc, job_id = start_producer(server, "cancel")
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    wait_for(lambda: (job_of(server, token, job_id).get("progress") or {}).get("current", 0) > 0, timeout=30)
    assert server.api("POST", f"/api/jobs/{job_id}/cancel", token).status_code == 202
    assert go(proc) == "cancelled"
    statuses = [e["data"]["status"] for e in history(server, token, job_id) if e["type"] == "job_status"]
    assert statuses == ["pending", "running", "cancelled"]


def test_the_same_batch_sent_twice_changes_nothing(server: ServerProcess) -> None:
    token = server.login("alice")
    created = create_external(server, token)
    job_id, producer = created["job"]["id"], created["producer_token"]
    batch = [
        {"n": 1, "type": "log", "message": "first"},
        {"n": 2, "type": "progress", "current": 5, "total": 10},
        {"n": 3, "type": "counts", "counts": {"rows": 5}},
        {"n": 4, "type": "message", "message": "halfway"},
        {"n": 5, "type": "progress", "current": 6},
    ]
    first = report(server, producer, job_id, batch)
    assert first.json() == {"applied": 5, "skipped": 0, "last_n": 5, "status": "running"}
    before = history(server, token, job_id)
    again = report(server, producer, job_id, batch)
    assert again.json() == {"applied": 0, "skipped": 5, "last_n": 5, "status": "running"}
    assert history(server, token, job_id) == before
    assert [e["type"] for e in before] == ["job_status", "job_status", "job_log", "job_counts", "job_message"]


def _fill(rule: str, job_id: int) -> str:
    """A concrete path for a GET rule: ids are the producer's own job, names are any name."""
    import re

    def value(match: re.Match[str]) -> str:
        return str(job_id) if match.group(1) in ("id", "int") else "anything"

    return re.sub(r"<(?:(\w+):)?\w+>", value, rule)


def api_get_routes() -> list[tuple[str, Any, bool]]:
    """``(rule, endpoint, needs_auth)`` of every GET route under ``/api``, read from the app."""
    from app import create_app

    app = create_app(
        {"ENV_NAME": "testing", "SQLALCHEMY_DATABASE_URI": "sqlite://", "SOCKETIO_ASYNC_MODE": "threading"}
    )
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api") or "GET" not in (rule.methods or ()):
            continue
        operation = getattr(app.view_functions[rule.endpoint], "__herald_operation__", None)
        routes.append((rule.rule, rule.endpoint, operation is None or bool(operation.auth)))
    return sorted(routes)


def test_the_producer_token_reads_nothing_and_reports_into_its_own_job_only(server: ServerProcess) -> None:
    alice = server.login("alice")
    created = create_external(server, alice)
    job_id, producer = created["job"]["id"], created["producer_token"]
    assert report(server, producer, job_id, [{"n": 1, "type": "log", "message": "mine"}]).status_code == 200

    routes = api_get_routes()
    assert len([r for r in routes if r[2]]) >= 15
    checked = []
    for rule, endpoint, needs_auth in routes:
        path = _fill(rule, job_id)
        if endpoint.startswith("ws."):
            frames, close_code = refused_over_plain(server, path, producer, "query")
            assert [(f["type"], f["code"]) for f in frames] == [("error", "token_invalid")], path
            assert close_code == 1008
        elif needs_auth:
            for way in ("header", "query"):
                headers = {"Authorization": f"Bearer {producer}"} if way == "header" else {}
                params = {"token": producer} if way == "query" else {}
                response = requests.get(server.url + path, headers=headers, params=params, timeout=10)
                assert response.status_code == 401, (path, way, response.text)
                assert response.json()["error"]["code"] == "token_invalid", (path, way)
        checked.append(path)
    assert f"/api/jobs/{job_id}" in checked and f"/api/jobs/{job_id}/events" in checked

    for path in ("/ws", "/ws/tab-1"):
        frames, close_code = refused_over_plain(server, path, producer, "first_frame")
        assert [(f["type"], f["code"]) for f in frames] == [("error", "token_invalid")] and close_code == 1008
    for query in (False, True):
        assert refused_over_socketio(server, producer, query=query) == "token_invalid"

    # Another job, of its own user or of another, is not its to report into.
    other = create_external(server, alice)["job"]["id"]
    bobs = create_external(server, server.login("bob"))["job"]["id"]
    for target in (other, bobs):
        refused = report(server, producer, target, [{"n": 1, "type": "log", "message": "not mine"}])
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_invalid"
        assert [e["type"] for e in history(server, alice if target == other else server.login("bob"), target)] == [
            "job_status"
        ]
    # Nor may it cancel or create anything.
    assert server.api("POST", f"/api/jobs/{job_id}/cancel", producer).status_code == 401
    assert server.api("POST", "/api/jobs", producer, json={"kind": "external", "name": "x"}).status_code == 401


@pytest.fixture
def short_ttl_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server whose producer tokens live 5 s."""
    yield from launch(tmp_path, PRODUCER_TOKEN_TTL_SECONDS="5")


def test_the_token_dies_with_its_job_and_with_its_ttl(short_ttl_server: ServerProcess) -> None:
    server = short_ttl_server
    token = server.login("alice")
    finished = create_external(server, token)
    producer, ended_id = finished["producer_token"], finished["job"]["id"]
    done = report(server, producer, ended_id, [{"n": 1, "type": "status", "status": "completed"}])
    assert done.json()["status"] == "completed"
    after_end = report(server, producer, ended_id, [{"n": 2, "type": "log", "message": "x"}])
    assert after_end.status_code == 409
    assert after_end.json()["error"]["code"] == "job_finished"
    assert after_end.json()["error"]["details"]["status"] == "completed"

    vanished = create_external(server, token)
    job_id = vanished["job"]["id"]
    assert report(server, vanished["producer_token"], job_id, [{"n": 1, "type": "progress", "current": 1}]).ok
    failed = wait_for(lambda: (j := job_of(server, token, job_id))["status"] in FINAL and j, timeout=30)
    assert failed["status"] == "failed" and failed["error"]["code"] == "producer_expired"
    late = report(server, vanished["producer_token"], job_id, [{"n": 2, "type": "progress", "current": 2}])
    assert late.status_code == 401 and late.json()["error"]["code"] == "token_expired"
    assert history(server, token, job_id)[-1]["data"]["error"]["code"] == "producer_expired"


def test_the_curl_example_runs_a_command_as_an_external_job(server: ServerProcess, tmp_path: Path) -> None:
    token = server.login("alice")
    script = ROOT / "examples" / "curl" / "herald-run.sh"
    command = 'echo "step one"; printf "tab\\there \\"quoted\\" back\\\\slash\\n"; echo "done"'
    env = {**os.environ, "HERALD_URL": server.url, "HERALD_USERNAME": "alice", "HERALD_PASSWORD": PASSWORD}
    ran = subprocess.run(
        ["bash", str(script), "ci build", "--", "bash", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    job_id = int(ran.stderr.split("job ", 1)[1].split(":", 1)[0])
    stored = history(server, token, job_id)
    logs = [e["data"]["message"] for e in stored if e["type"] == "job_log"]
    assert logs == ["step one", 'tab\there "quoted" back\\slash', "done"]
    job = job_of(server, token, job_id)
    assert job["status"] == "completed" and job["params"]["name"] == "ci build"
    assert job["counts"] == {"lines": 3} and job["result"] == {"exit_status": 0}

    failing = subprocess.run(
        ["bash", str(script), "broken build", "--", "bash", "-c", "echo oops; exit 4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failing.returncode == 4, failing.stderr
    job_id = int(failing.stderr.split("job ", 1)[1].split(":", 1)[0])
    job = job_of(server, token, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "exit_status"


def test_a_server_restart_leaves_an_external_job_running_for_its_producer(server: ServerProcess) -> None:
    token = server.login("alice")
    created = create_external(server, token)
    job_id, producer = created["job"]["id"], created["producer_token"]
    assert report(server, producer, job_id, [{"n": 1, "type": "log", "message": "before"}]).ok
    server.kill()
    server.start()
    token = server.login("alice")
    assert job_of(server, token, job_id)["status"] == "running"  # its producer is elsewhere, still working
    after = report(
        server,
        producer,
        job_id,
        [{"n": 1, "type": "log", "message": "before"}, {"n": 2, "type": "log", "message": "after"}],
    )
    assert after.json() == {"applied": 1, "skipped": 1, "last_n": 2, "status": "running"}
    assert [e["data"]["message"] for e in history(server, token, job_id) if e["type"] == "job_log"] == [
        "before",
        "after",
    ]


def test_the_curl_example_stops_its_command_when_the_job_is_cancelled(server: ServerProcess) -> None:
    token = server.login("alice")
    script = ROOT / "examples" / "curl" / "herald-run.sh"
    env = {**os.environ, "HERALD_URL": server.url, "HERALD_USERNAME": "alice", "HERALD_PASSWORD": PASSWORD}
    command = "for i in $(seq 1 100000); do echo line $i; sleep 0.02; done"
    with subprocess.Popen(
        ["bash", str(script), "endless", "--", "bash", "-c", command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None
        job_id = int(proc.stderr.readline().split("job ", 1)[1].split(":", 1)[0])
        wait_for(lambda: len(history(server, token, job_id)) >= 5, timeout=30)
        assert server.api("POST", f"/api/jobs/{job_id}/cancel", token).status_code == 202
        assert proc.wait(60) == 130, proc.stderr.read()
    assert job_of(server, token, job_id)["status"] == "cancelled"


def run_script(server: ServerProcess, name: str, command: str, **env: str) -> subprocess.Popen[str]:
    """``herald-run.sh NAME -- bash -c COMMAND`` as alice, its stderr piped."""
    script = ROOT / "examples" / "curl" / "herald-run.sh"
    environ = {**os.environ, "HERALD_URL": server.url, "HERALD_USERNAME": "alice", "HERALD_PASSWORD": PASSWORD, **env}
    return subprocess.Popen(
        ["bash", str(script), name, "--", "bash", "-c", command],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def job_id_of(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    first = proc.stderr.readline()
    assert "job " in first, first
    return int(first.split("job ", 1)[1].split(":", 1)[0])


def test_the_curl_example_stops_a_silent_command_and_its_whole_group_when_cancelled(
    server: ServerProcess, tmp_path: Path
) -> None:
    import time

    token = server.login("alice")
    marker, child_marker = tmp_path / "prod2-marker", tmp_path / "prod2-child-marker"
    # The command prints one line then nothing; a child of its own would outlive a kill of it alone.
    command = f'(sleep 8; touch "{child_marker}") & echo start; sleep 8; touch "{marker}"'
    with run_script(server, "cancel silent", command) as proc:
        job_id = job_id_of(proc)
        logged = lambda: [e for e in history(server, token, job_id) if e["type"] == "job_log"]  # noqa: E731
        wait_for(logged, timeout=30)
        cancelled_at = time.monotonic()
        assert server.api("POST", f"/api/jobs/{job_id}/cancel", token).status_code == 202
        assert proc.wait(30) == 130
        assert time.monotonic() - cancelled_at < 6  # heard by a poll (every 2 s), not at the command's end
        assert proc.stderr is not None and "cancelled in Herald" in proc.stderr.read()
    time.sleep(max(0.0, cancelled_at + 9 - time.monotonic()))
    assert not marker.exists() and not child_marker.exists()
    assert job_of(server, token, job_id)["status"] == "cancelled"


def test_the_curl_example_kills_a_command_that_ignores_sigterm_after_the_grace(
    server: ServerProcess, tmp_path: Path
) -> None:
    import time

    token = server.login("alice")
    marker = tmp_path / "prod2-stubborn"
    command = f'trap "" TERM; echo start; sleep 8; touch "{marker}"'
    with run_script(server, "stubborn", command, HERALD_STOP_GRACE="1") as proc:
        job_id = job_id_of(proc)
        wait_for(lambda: len(history(server, token, job_id)) >= 3, timeout=30)
        cancelled_at = time.monotonic()
        assert server.api("POST", f"/api/jobs/{job_id}/cancel", token).status_code == 202
        assert proc.wait(30) == 130
        assert proc.stderr is not None and "SIGKILL" in proc.stderr.read()
    time.sleep(max(0.0, cancelled_at + 9 - time.monotonic()))
    assert not marker.exists()


def test_the_curl_example_reports_bytes_that_are_not_utf8_as_replacement_characters(server: ServerProcess) -> None:
    token = server.login("alice")
    with run_script(server, "latin1", r'printf "caf\xe9\n"; printf "caf\xc3\xa9 \xff\xfe!\n"; printf "last"') as proc:
        job_id = job_id_of(proc)
        assert proc.wait(60) == 0, proc.stderr.read() if proc.stderr else ""
    logs = [e["data"]["message"] for e in history(server, token, job_id) if e["type"] == "job_log"]
    assert logs == ["caf\ufffd", "café \ufffd\ufffd!", "last"]
    assert job_of(server, token, job_id)["status"] == "completed"


def test_the_curl_example_ends_the_job_failed_when_a_report_is_refused(server: ServerProcess) -> None:
    token = server.login("alice")
    # The script's cut (5,000 bytes here) is above the server's limit (4,096): the report is refused.
    with run_script(server, "too long", "echo fine; printf 'x%.0s' $(seq 4500); echo", HERALD_MAX_LINE="5000") as proc:
        job_id = job_id_of(proc)
        assert proc.wait(60) == 3
        assert proc.stderr is not None and "report refused (HTTP 400)" in proc.stderr.read()
    job = job_of(server, token, job_id)
    assert job["status"] == "failed" and job["error"]["code"] == "reporting_failed"
    assert "line_too_long" in job["error"]["message"] or "4096" in job["error"]["message"]


def test_the_curl_example_passes_a_ctrl_c_on_to_its_command_and_ends_the_job_cancelled(
    server: ServerProcess, tmp_path: Path
) -> None:
    import signal
    import time

    token = server.login("alice")
    marker = tmp_path / "prod2-interrupted"
    script = ROOT / "examples" / "curl" / "herald-run.sh"
    env = {**os.environ, "HERALD_URL": server.url, "HERALD_USERNAME": "alice", "HERALD_PASSWORD": PASSWORD}
    # A terminal's Ctrl-C goes to the script's process group; the command has a group of its own.
    with subprocess.Popen(
        ["bash", str(script), "interrupted", "--", "bash", "-c", f'echo start; sleep 4; touch "{marker}"'],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        job_id = job_id_of(proc)
        wait_for(lambda: len(history(server, token, job_id)) >= 3, timeout=30)
        interrupted_at = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 130
    time.sleep(max(0.0, interrupted_at + 5 - time.monotonic()))
    assert not marker.exists()
    job = job_of(server, token, job_id)
    assert job["status"] == "cancelled"
