"""The Python client (``clients/python``) against a stub server on loopback: batches are
sent again unchanged after a 5xx or a dropped connection, a cancel reaches the producer,
values that are not JSON are refused at the call, a refused batch or a failed sending
thread ends the job failed, a lower batch limit splits batches, an expired login is renewed."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
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
        #: Items a report may carry (more: 400 batch_too_large), None for no limit.
        self.max_items: int | None = None
        #: The one access token ``/api/jobs`` accepts (None: any); a login sets it.
        self.accepted: str | None = None
        self.logins = 0
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
            if self.path == "/api/auth/login":
                with state.lock:
                    state.logins += 1
                    state.accepted = f"access-{state.logins}"
                self.answer(200, {"access_token": state.accepted})
                return
            if self.path == "/api/jobs" and state.accepted not in (None, self.headers["Authorization"][7:]):
                self.answer(401, {"error": {"code": "token_expired", "message": "the token has expired"}})
                return
            if self.path == "/api/jobs":
                job = {"id": 7, "kind": "external", "status": "pending"}
                self.answer(202, {"job": job, "producer_token": "p", "report_url": "/api/jobs/7/report"})
                return
            with state.lock:
                state.reports.append(body["items"])
                failure = state.failures.pop(0) if state.failures else None
                status = state.status
            if state.max_items is not None and len(body["items"]) > state.max_items:
                details = {"max_items": state.max_items, "items": len(body["items"])}
                self.answer(400, {"error": {"code": "batch_too_large", "message": "too many", "details": details}})
                return
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
    final = state.reports[-1]
    assert final[0]["status"] == "failed" and final[0]["error"]["code"] == "reporting_failed"
    assert "try later" in final[0]["error"]["message"]  # the refusal, for the job's page to show
    assert final[0]["n"] > max(item["n"] for batch in state.reports[:-1] for item in batch)
    assert job.status == "failed"


def test_a_result_that_is_not_json_is_refused_at_the_call(stub):
    state, url = stub
    with Herald(url, token="t").job("import", flush_interval=0.05) as job:
        job.log("hi")
        with pytest.raises(TypeError, match="the result cannot be sent to Herald as JSON.*datetime"):
            job.result({"when": datetime.now()})
        with pytest.raises(TypeError, match="progress current"):
            job.progress(float("nan"))
    items = [item for batch in state.reports for item in batch]
    assert [item["type"] for item in items] == ["status", "log", "status"]
    assert items[-1]["status"] == "completed" and job.status == "completed"


def test_a_failure_of_the_sending_thread_is_raised_and_ends_the_job_failed(stub):
    state, url = stub
    job = Herald(url, token="t").job("import", flush_interval=0.05)
    post = job._post
    calls: list[int] = []

    def broken_once(batch: list[dict[str, Any]]) -> dict[str, Any]:
        calls.append(len(batch))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return post(batch)

    job._post = broken_once  # type: ignore[method-assign]
    job.start()
    deadline = time.monotonic() + 10
    while job.status != "failed" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.status == "failed"
    (final,) = state.reports[-1]
    assert final["error"]["code"] == "reporting_failed" and "RuntimeError: boom" in final["error"]["message"]
    with pytest.raises(HeraldError, match="RuntimeError: boom") as raised:
        job.log("next")
    assert raised.value.code == "client_error"
    with pytest.raises(HeraldError, match="RuntimeError: boom"):
        job.complete()


def test_a_lower_batch_limit_in_herald_splits_the_batches(stub):
    state, url = stub
    state.max_items = 3
    job = Herald(url, token="t").job("import", flush_interval=60).start()
    for i in range(10):
        job.log(f"line {i}")
    job.complete()
    assert job.status == "completed"
    accepted = [batch for batch in state.reports if len(batch) <= 3]
    assert len(state.reports) - len(accepted) == 1  # one refusal, then parts
    items = [item for batch in accepted for item in batch]
    assert [item["n"] for item in items] == list(range(1, 13))
    assert items[-1] == {"n": 12, "type": "status", "status": "completed"}


def test_an_expired_access_token_is_renewed_by_logging_in_again(stub):
    state, url = stub
    herald = Herald(url, username="alice", password="secret")
    assert state.logins == 1 and herald.token == "access-1"
    state.accepted = "a token minted later"  # access-1 has expired
    job = herald.job("import", flush_interval=0.05).start()
    assert job.id == 7 and state.logins == 2 and herald.token == "access-2"
    job.complete()
