"""The Python client (``clients/python``) against a stub server on loopback: batches are
sent again unchanged after a 5xx or a dropped connection, and a cancel reaches the producer."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "clients" / "python"))

from herald_client import Herald, HeraldError  # noqa: E402


class Stub:
    """A stand-in for Herald's two producer routes; ``failures`` answers come first."""

    def __init__(self) -> None:
        self.reports: list[list[dict[str, Any]]] = []
        self.failures: list[int] = []
        self.status = "running"
        self.lock = threading.Lock()


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/jobs":
                job = {"id": 7, "kind": "external", "status": "pending"}
                self.answer(202, {"job": job, "producer_token": "p", "report_url": "/api/jobs/7/report"})
                return
            with state.lock:
                state.reports.append(body["items"])
                failure = state.failures.pop(0) if state.failures else None
                status = state.status
            if failure == 0:
                self.connection.shutdown(2)  # the connection drops without an answer
                return
            if failure is not None:
                self.answer(failure, {"error": {"code": "unavailable", "message": "try later"}})
            elif status == "cancelled":
                details = {"status": "cancelled", "last_n": 0}
                self.answer(409, {"error": {"code": "job_finished", "message": "ended", "details": details}})
            else:
                ended = [item["status"] for item in body["items"] if item.get("type") == "status"]
                status = ended[-1] if ended else status
                self.answer(200, {"applied": len(body["items"]), "skipped": 0, "last_n": 0, "status": status})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_batch_is_sent_again_unchanged_after_a_5xx_and_a_dropped_connection(stub):
    state, url = stub
    state.failures = [503, 0]
    with Herald(url, token="t").job("import", flush_interval=0.05) as job:
        job.log("one")
        job.progress(1, 2)
        assert job.flush(timeout=30)
    first, second, third = state.reports[:3]
    assert first == second == third  # the same items, the same n, three times
    assert [item["type"] for item in first] == ["status", "log", "progress"]
    assert [item["n"] for item in first] == [1, 2, 3]
    assert state.reports[-1][-1] == {"n": 4, "type": "status", "status": "completed"}
    assert job.status == "completed"


def test_progress_is_coalesced_and_counts_merge(stub):
    state, url = stub
    job = Herald(url, token="t").job("import", flush_interval=60).start()
    for i in range(1, 1001):
        job.progress(i, 1000)
    job.count(rows=1)
    job.count(rejected=2)
    job.log("x" * 5000)
    job.complete()
    items = [item for batch in state.reports for item in batch]
    assert [i for i in items if i["type"] == "progress"] == [
        {"n": 1001, "type": "progress", "current": 1000, "total": 1000}
    ]
    assert [i["counts"] for i in items if i["type"] == "counts"] == [{"rows": 1, "rejected": 2}]
    assert [i["n"] for i in items] == sorted(i["n"] for i in items)
    (line,) = [i["message"] for i in items if i["type"] == "log"]
    assert len(line) == 4096 and line.endswith(" […]")  # a long line is cut, not refused


def test_a_cancel_in_herald_ends_the_loop_without_an_error(stub):
    state, url = stub
    state.status = "cancelled"
    with Herald(url, token="t").job("import", flush_interval=0.05) as job:
        for _ in job.track(iter(int, 1)):  # endless: only the cancel ends it
            pass
    assert job.cancelled
    assert not any(item.get("status") == "completed" for batch in state.reports for item in batch)


def test_an_exception_in_the_block_fails_the_job_and_is_not_swallowed(stub):
    state, url = stub
    with pytest.raises(ZeroDivisionError):
        with Herald(url, token="t").job("import", flush_interval=0.05):
            1 / 0  # noqa: B018
    final = state.reports[-1][-1]
    assert final["status"] == "failed" and final["error"]["message"].startswith("ZeroDivisionError")


def test_a_refused_report_stops_sending_and_says_why(stub):
    state, url = stub
    state.failures = [400]
    job = Herald(url, token="t").job("import", flush_interval=0.05).start()
    with pytest.raises(HeraldError) as refused:
        job.complete()
    assert refused.value.status == 400
