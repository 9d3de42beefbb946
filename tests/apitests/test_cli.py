"""``flask run-cases``: exit codes, JUnit, and the seed-003 WebSocket stream with the seed's own client."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import websockets

from tests.target_service import gated_case_yaml, login_case_yaml

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_run_cases_exits_1_and_writes_junit_when_a_case_fails(app, tmp_path, target):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "a_flow.yaml").write_text(login_case_yaml(target.url))
    (tmp_path / "cases" / "b_ok.yml").write_text(gated_case_yaml(target.url, "ok"))
    target.gate.set()
    report = tmp_path / "junit.xml"
    result = app.test_cli_runner().invoke(args=["run-cases", str(tmp_path / "cases"), "--report", str(report)])
    assert result.exit_code == 1, result.output
    assert "2 case(s): 1 passed, 1 failed" in result.output
    suite = ET.parse(report).getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "1", "0")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["user flow", "ok"]
    failure = cases[0].find("failure")
    assert failure is not None and failure.get("message") == "items: assertion_failed: $.count: expected eq 4, got 3"
    assert cases[1].find("failure") is None


def test_run_cases_exits_0_when_every_case_passes(app, tmp_path, target):
    (tmp_path / "ok.yaml").write_text(gated_case_yaml(target.url))
    target.gate.set()
    result = app.test_cli_runner().invoke(args=["run-cases", str(tmp_path / "ok.yaml")])
    assert result.exit_code == 0, result.output


def test_invalid_case_file_is_reported_with_its_line_and_fails_the_run(app, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsteps:\n  - name: a\n    requets: {url: /}\n")
    result = app.test_cli_runner().invoke(args=["run-cases", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}: line 4: steps[0].requets: unknown key 'requets'" in result.output


async def seed_003_client(uri: str, received: list[dict[str, Any]], connected: threading.Event) -> int | None:
    """The seed document's demo client, plus retries while the CLI starts and a record of events."""
    for _ in range(300):
        try:
            websocket = await websockets.connect(uri)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("the event stream never came up")
    async with websocket:
        connected.set()
        async for message in websocket:
            event = json.loads(message)
            print(f"Event: {event['type']}")
            print(f"Data: {event['data']}")
            received.append(event)
    return websocket.close_code


def test_ws_server_streams_test_start_to_test_complete_to_the_seed_client(tmp_path, target):
    case_file = tmp_path / "case.yaml"
    case_file.write_text(gated_case_yaml(target.url))
    port = free_port()
    env = {**os.environ, "HERALD_ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", "run-cases", str(case_file), "--ws-server"]
        + ["--ws-host", "127.0.0.1", "--ws-port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    received: list[dict[str, Any]] = []
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    def client() -> None:
        outcome["close_code"] = asyncio.run(seed_003_client(f"ws://127.0.0.1:{port}", received, connected))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        assert connected.wait(60), "the seed client could not connect"
        target.gate.set()  # the case can finish only now that the client is connected
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    thread.join(30)
    assert proc.returncode == 0, output.decode()
    assert outcome["close_code"] == 1000
    assert all(set(event) == {"type", "data"} for event in received)
    assert [event["type"] for event in received] == [
        "test_start",
        "step_start",
        "step_complete",
        "step_start",
        "step_complete",
        "test_complete",
    ]
    assert received[0]["data"] == {"name": "gated", "total_steps": 2}
    assert received[-1]["data"]["status"] == "passed"


def test_yaml_websocket_config_enables_the_stream_and_cli_flags_win(tmp_path):
    from app.apitests.cli import CaseFile, stream_settings
    from app.apitests.spec import parse_case_yaml

    enabled_in_yaml = parse_case_yaml(
        "name: w\nconfig: {websocket: {enabled: true, host: 0.0.0.0, port: 9100}}\n"
        "steps: [{name: s, request: {url: 'http://localhost/'}}]\n"
    )
    plain = parse_case_yaml("name: p\nsteps: [{name: s, request: {url: 'http://localhost/'}}]\n")
    files = [CaseFile(tmp_path / "p.yaml", case=plain), CaseFile(tmp_path / "w.yaml", case=enabled_in_yaml)]
    assert stream_settings(files, None, None, None) == (True, "0.0.0.0", 9100)
    assert stream_settings(files, False, None, None)[0] is False
    assert stream_settings(files, True, "127.0.0.1", 9000) == (True, "127.0.0.1", 9000)
    assert stream_settings(files[:1], None, None, None) == (False, "localhost", 8765)


def test_the_stream_renders_seed_003_progress_from_the_engines_facts():
    from app.apitests.cli import seed003_progress

    sent: list[tuple[str, dict[str, Any]]] = []
    emit = seed003_progress(lambda type_, data: sent.append((type_, data)))
    emit("test_start", {"name": "x", "total_steps": 2})
    time.sleep(0.06)  # long enough for a rate, as a real step takes
    emit("progress", {"current": 1, "total": 2})
    emit("progress", {"current": 2, "total": 2})
    assert sent[0] == ("test_start", {"name": "x", "total_steps": 2})
    half, done = sent[1][1], sent[2][1]
    assert set(half) == {"current", "total", "percent", "percentage", "eta_seconds"}
    assert half["percent"] == half["percentage"] == 50.0 and half["eta_seconds"] > 0
    assert done["percent"] == 100.0 and done["eta_seconds"] == 0.0
