"""``flask run-cases`` (run YAML cases locally, seed-003 stream, JUnit) and ``flask watch``."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import click
from flask import current_app
from flask.cli import with_appcontext
from tqdm import tqdm

from ..realtime.pipeline import ProgressState
from .engine import Emit, EventFilter, run_case
from .hosts import normalise_hosts
from .spec import CaseError, parse_case_yaml, websocket_options
from .stream import EventStream

FINAL = {"completed", "failed", "cancelled"}


@dataclass
class CaseFile:
    """One YAML file: its checked case, or why it could not be read."""

    path: Path
    case: dict[str, Any] | None = None
    error: str | None = None
    outcome: dict[str, Any] | None = field(default=None)


def collect_files(paths: tuple[Path, ...]) -> list[Path]:
    """Files as given; directories contribute their ``*.yaml`` / ``*.yml``, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        else:
            found.append(path)
    return found


def load_case_file(path: Path) -> CaseFile:
    """Read and check one file (errors name the file and line)."""
    try:
        return CaseFile(path, case=parse_case_yaml(path.read_text(encoding="utf-8")))
    except CaseError as exc:
        return CaseFile(path, error=f"{path}: {exc.message}")
    except (OSError, UnicodeDecodeError) as exc:
        return CaseFile(path, error=f"{path}: cannot read: {exc}")


def stream_settings(
    files: list[CaseFile], ws_server: bool | None, ws_host: str | None, ws_port: int | None
) -> tuple[bool, str, int]:
    """Whether to serve the stream and where: CLI flags win over ``config.websocket``."""
    options = [websocket_options(f.case) for f in files if f.case is not None]
    from_yaml = next((o for o in options if o["enabled"]), None)
    enabled = ws_server if ws_server is not None else from_yaml is not None
    base = from_yaml or (options[0] if options else websocket_options({}))
    return enabled, ws_host or str(base["host"]), int(ws_port or base["port"])


def write_junit(files: list[CaseFile], target: Path, duration_s: float) -> None:
    """A JUnit XML report: one testcase per case, failures carry the failed steps."""
    failures = sum(1 for f in files if f.outcome is not None and f.outcome["status"] != "passed")
    errors = sum(1 for f in files if f.error is not None)
    suite = ET.Element(
        "testsuite",
        name="herald run-cases",
        tests=str(len(files)),
        failures=str(failures),
        errors=str(errors),
        time=f"{duration_s:.3f}",
    )
    for item in files:
        name = item.case["name"] if item.case else item.path.stem
        seconds = (item.outcome or {}).get("duration_ms", 0) / 1000
        case = ET.SubElement(suite, "testcase", classname=str(item.path), name=name, time=f"{seconds:.3f}")
        if item.error is not None:
            ET.SubElement(case, "error", message=item.error).text = item.error
        elif item.outcome is not None and item.outcome["status"] != "passed":
            failed = [s for s in item.outcome["steps"] if s["status"] == "failed"]
            lines = [f"{s['name']}: {s['error']['code']}: {s['error']['message']}" for s in failed if s.get("error")]
            ET.SubElement(case, "failure", message=lines[0] if lines else "failed").text = "\n".join(lines)
    target.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(target, encoding="utf-8", xml_declaration=True)


def seed003_progress(publish: Emit) -> Emit:
    """Seed 003's ``progress`` ``{current, total, percent, percentage, eta_seconds}`` from the
    engine's facts, derived by the same ``ProgressState`` that computes a job's ticks: a run
    has no pipeline, but percent and ETA have one definition. One per case."""
    state = ProgressState(job_id=0, owner_id=0)

    def emit(type_: str, data: dict[str, Any]) -> None:
        if type_ == "progress":
            state.current, state.total = data["current"], data["total"]
            tick = state.payload(time.monotonic())
            # ``percentage`` is what the document's web example reads.
            data = {**data, "percent": tick["percent"], "percentage": tick["percent"], "eta_seconds": tick["eta"]}
        publish(type_, data)

    return emit


@click.command("run-cases")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--ws-server/--no-ws-server", default=None, help="Serve the seed-003 event stream (beats the YAML).")
@click.option("--ws-host", default=None, help="Stream host (default: YAML config.websocket.host or localhost).")
@click.option("--ws-port", type=int, default=None, help="Stream port (default: YAML config.websocket.port or 8765).")
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="Write a JUnit XML report here.")
@with_appcontext
def run_cases_command(
    paths: tuple[Path, ...], ws_server: bool | None, ws_host: str | None, ws_port: int | None, report: Path | None
) -> None:
    """Run API test cases from FILE_OR_DIR... here; exit 1 when any case fails."""
    files = [load_case_file(path) for path in collect_files(paths)]
    if not files:
        raise click.ClickException("no .yaml/.yml test cases found")
    enabled, host, port = stream_settings(files, ws_server, ws_host, ws_port)
    stream: EventStream | None = None
    if enabled:
        try:
            stream = EventStream(host, port).start()
        except OSError as exc:
            raise click.ClickException(f"cannot serve the event stream on {host}:{port}: {exc}") from None
        click.echo(f"event stream: ws://{host}:{port}", err=True)
    allowed = normalise_hosts(current_app.config["API_TEST_ALLOWED_HOSTS"])
    total_steps = sum(len(f.case["steps"]) for f in files if f.case is not None)
    started = time.monotonic()
    bar = tqdm(total=total_steps, unit="step", file=sys.stderr, dynamic_ncols=True, leave=True)
    try:
        for item in files:
            if item.case is None:
                bar.write(f"ERROR {item.error}")
                continue
            case = item.case
            publish = EventFilter.for_case(case, seed003_progress(stream.publish)) if stream is not None else None

            def emit(type_: str, data: dict[str, Any], publish: Any = publish, name: str = case["name"]) -> None:
                if publish is not None:
                    publish(type_, data)
                if type_ == "step_complete":
                    bar.set_postfix_str(f"{name}: {data['name']}", refresh=False)
                    bar.update(1)
                elif type_ == "error":
                    bar.write(f"  ✗ {name} / {data.get('step')}: {data['message']}")

            item.outcome = run_case(case, allowed_hosts=allowed, emit=emit)
            mark = "PASS" if item.outcome["status"] == "passed" else "FAIL"
            o = item.outcome
            bar.write(f"{mark} {case['name']} ({o['passed']} passed, {o['failed']} failed, {o['duration_ms']:.0f} ms)")
    finally:
        bar.close()
        if stream is not None:
            stream.close()
    duration = time.monotonic() - started
    passed = sum(1 for f in files if f.outcome is not None and f.outcome["status"] == "passed")
    failed = len(files) - passed
    click.echo(f"{len(files)} case(s): {passed} passed, {failed} failed in {duration:.1f}s")
    if report is not None:
        write_junit(files, report, duration)
        click.echo(f"JUnit report: {report}")
    if failed:
        sys.exit(1)


@click.command("watch")
@click.argument("job_id", type=int)
@click.option("--server", required=True, envvar="HERALD_SERVER", help="Herald base URL, e.g. http://127.0.0.1:5000")
@click.option("--token", envvar="HERALD_TOKEN", default=None, help="Access token (or log in with username/password).")
@click.option("--username", envvar="HERALD_USERNAME", default=None)
@click.option("--password", envvar="HERALD_PASSWORD", default=None)
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds.")
def watch_command(
    job_id: int, server: str, token: str | None, username: str | None, password: str | None, timeout: float | None
) -> None:
    """Follow job JOB_ID on a running server with a live progress bar; exit 1 unless it completes."""
    from ..client import HeraldClient, HeraldClientError

    client = HeraldClient(server, token=token)
    try:
        if token is None:
            if not username or not password:
                raise click.ClickException("give --token, or --username and --password (or HERALD_* variables)")
            client.login(username, password)
        job = client.job(job_id)
    except HeraldClientError as exc:
        raise click.ClickException(str(exc)) from None
    # The bar is the job's percent; the figures after it are the job's own (items, items/s,
    # ETA), never tqdm's rate of percent points ("%/s").
    bar = tqdm(
        total=100,
        file=sys.stderr,
        dynamic_ncols=True,
        desc=f"job {job_id} ({job['kind']})",
        bar_format="{desc}: |{bar}| {percentage:3.0f}%{postfix}",  # tqdm puts ", " before the postfix
    )
    final: dict[str, Any] = {}
    try:
        for message in client.events(job_id, timeout=timeout):
            data = message.get("data") or {}
            if message.get("seq") is None:
                if data.get("percent") is not None:
                    bar.set_postfix_str(progress_text(data), refresh=False)
                    _move(bar, float(data["percent"]))
                continue
            if message["type"] == "step_complete" and data.get("total_steps"):
                _move(bar, 100.0 * (int(data.get("index", 0)) + 1) / int(data["total_steps"]))
            elif message["type"] == "job_counts" and data.get("total_count"):
                done = int(data.get("success_count", 0)) + int(data.get("failed_count", 0))
                _move(bar, 100.0 * done / int(data["total_count"]))
            if message["type"] == "job_status":
                bar.write(f"[{message['seq']}] status: {data['status']}")
                if data["status"] in FINAL:
                    final = data
            elif message["type"] in ("step_complete", "case_result", "test_complete", "job_log", "log", "error"):
                bar.write(f"[{message['seq']}] {message['type']}: {_short(data)}")
    except HeraldClientError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if final.get("status") == "completed":
            _move(bar, 100.0)
        bar.close()
    if not final:
        raise click.ClickException(f"job {job_id} did not finish in time")
    result = final.get("result")
    click.echo(f"job {job_id} {final['status']}" + (f": {final['error']['message']}" if final.get("error") else ""))
    failed_test = isinstance(result, dict) and result.get("status") == "failed"
    if final["status"] != "completed" or failed_test:
        sys.exit(1)


def progress_text(data: dict[str, Any]) -> str:
    """A progress tick as text: ``1,200/4,000 · 350/s · ETA 8s · message``."""
    parts = []
    if data.get("total"):
        parts.append(f"{int(data.get('current') or 0):,}/{int(data['total']):,}")
    rate = data.get("rate")
    if isinstance(rate, int | float):
        parts.append(f"{rate:,.0f}/s" if rate >= 10 else f"{rate:.1f}/s")
    eta = data.get("eta")
    if isinstance(eta, int | float):
        minutes, seconds = divmod(round(eta), 60)
        parts.append(f"ETA {minutes}m {seconds:02d}s" if minutes else f"ETA {seconds}s")
    if data.get("message"):
        parts.append(str(data["message"]))
    return " · ".join(parts)


def _move(bar: tqdm, percent: float) -> None:
    bar.n = round(min(max(percent, 0.0), 100.0), 1)
    bar.refresh()


def _short(data: dict[str, Any]) -> str:
    keys = ("name", "status", "message", "passed", "failed", "retries", "duration_ms")
    return ", ".join(f"{k}={data[k]}" for k in keys if data.get(k) is not None)
