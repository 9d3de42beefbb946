"""Uploads, imports and reports end to end against the real server (eventlet, then gevent).

Progress is observed with the real python-socketio client; the upload is sent slowly with
a fixed Content-Length over a raw connection so that progress can be seen to leave the
server while the body is still arriving.
"""

from __future__ import annotations

import csv
import hashlib
import html.parser
import io
import os
import random
import socket
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers import wait_for
from tests.integration.clients import Recorder, kill_restart_and_check_interrupted
from tests.integration.conftest import KILLED_JOBS_SETTLE_WITHIN, launch

BOUNDARY = "herald-test-boundary-7f3a"


def multipart_parts(filename: str, fields: dict[str, str] | None = None) -> tuple[bytes, bytes]:
    """The bytes before and after a file's content in a multipart body."""
    head = b""
    for name, value in (fields or {}).items():
        head += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    head += (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, f"\r\n--{BOUNDARY}--\r\n".encode()


def open_upload(server, token: str, length: int, query: str = "") -> socket.socket:
    """A raw connection with the request line and headers of an upload sent."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        (
            f"POST /api/uploads{query} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
        ).encode()
    )
    return sock


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status code and body of one response (by its Content-Length: the server may keep
    reading, and discarding, a body it refused before the socket closes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")),
        None,
    )
    while length is not None and len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.is_dir() else []


def upload(server, token: str, content: bytes, filename: str, upload_id: str) -> requests.Response:
    return server.api("POST", "/api/uploads", token, data={"upload_id": upload_id}, files={"file": (filename, content)})


def run_job(server, token: str, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    job = server.submit(token, kind, **params)

    def final() -> dict[str, Any] | None:
        snapshot = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
        return snapshot if snapshot["status"] in ("completed", "failed", "cancelled") else None

    return dict(wait_for(final, timeout=60, interval=0.1))


# -- 1. upload progress while the body arrives ------------------------------------------


def test_upload_progress_grows_while_the_body_arrives_and_sha256_matches(server):
    token = server.login("alice")
    listener = Recorder(server, token, client_id="tab-1")
    content = random.Random(1).randbytes(4 * 1024 * 1024)
    head, tail = multipart_parts("big.txt", {"upload_id": "big"})
    total = len(head) + len(content) + len(tail)
    sock = open_upload(server, token, total, "?client_id=tab-1")
    sock.sendall(head)
    sent = len(head)
    quarter = len(content) // 4
    for start in range(0, len(content), quarter):
        sock.sendall(content[start : start + quarter])
        sent += len(content[start : start + quarter])
        if sent < total - len(tail):  # the server reads in 64 KiB steps; wait until it saw this quarter
            wait_for(
                lambda sent=sent: any(
                    m["data"]["received_bytes"] >= sent - 128 * 1024 for m in listener.of_type("file_upload_progress")
                ),
                timeout=30,
            )
    before_end = [m["data"]["received_bytes"] for m in listener.of_type("file_upload_progress")]
    sock.sendall(tail)
    status, body = read_response(sock)
    sock.close()
    assert status == 201, body
    partial = [b for b in before_end if b < total]
    assert len(partial) >= 3 and partial == sorted(partial) and len(set(partial)) >= 3
    uploaded = requests.get(server.url + "/api/uploads/big", headers={"Authorization": f"Bearer {token}"}).json()
    assert uploaded["upload"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert uploaded["upload"]["size"] == len(content)
    last = listener.of_type("file_upload_progress")[-1]["data"]
    assert last["upload_id"] == "big" and last["filename"] == "big.txt" and last["total_bytes"] == total
    listener.close()


def test_client_disconnect_mid_upload_leaves_a_failed_upload_and_no_file(server, tmp_path: Path):
    token = server.login("alice")
    head, tail = multipart_parts("cut.txt", {"upload_id": "cut"})
    sock = open_upload(server, token, len(head) + 2_000_000 + len(tail))
    sock.sendall(head + b"x" * 500_000)
    wait_for(lambda: server.api("GET", "/api/uploads/cut", token).status_code == 200, timeout=20)
    sock.close()
    upload_ = wait_for(
        lambda: (u := server.api("GET", "/api/uploads/cut", token).json()["upload"])["status"] == "failed" and u,
        timeout=30,
    )
    # The upload's row is failed first, then the job's end is committed (the journal's next
    # group commit, a few milliseconds later).
    job = wait_for(
        lambda: (
            (j := server.api("GET", f"/api/jobs/{upload_['job_id']}", token).json()["job"])["status"] != "running" and j
        ),
        timeout=10,
    )
    assert job["status"] == "failed" and job["error"]["code"] == "client_disconnected"
    assert files_in(tmp_path / "uploads") == []


def test_upload_cut_by_a_killed_server_is_failed_and_cleaned_at_restart(server, tmp_path: Path):
    token = server.login("alice")
    head, tail = multipart_parts("crash.txt", {"upload_id": "crash"})
    sock = open_upload(server, token, len(head) + 2_000_000 + len(tail))
    sock.sendall(head + b"x" * 500_000)
    wait_for(lambda: server.api("GET", "/api/uploads/crash", token).status_code == 200, timeout=20)
    server.kill()
    sock.close()
    assert [name for name in files_in(tmp_path / "uploads") if name.endswith(".part")]
    server.start()
    # Cleaned before anyone asks: at start-up on SQLite, once the lease expired on PostgreSQL.
    wait_for(lambda: files_in(tmp_path / "uploads") == [], timeout=KILLED_JOBS_SETTLE_WITHIN)
    token = server.login("alice")
    upload_ = server.api("GET", "/api/uploads/crash", token).json()["upload"]
    assert upload_["status"] == "failed"
    job = server.api("GET", f"/api/jobs/{upload_['job_id']}", token).json()["job"]
    assert job["status"] == "failed" and job["error"]["code"] == "interrupted"


def test_import_cut_by_a_killed_server_leaves_no_dataset_and_can_run_again(server):
    token = server.login("alice")
    content, good, _ = sales_csv(300_000, bad_every=1000)
    assert upload(server, token, content, "big.csv", "big").status_code == 201
    watcher = Recorder(server, token)
    job = server.submit(token, "data_import", upload_id="big", dataset="big")
    assert watcher.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)["ok"] is True

    def importing() -> bool:
        snapshot = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
        return snapshot["status"] == "running" and bool((snapshot.get("progress") or {}).get("current"))

    wait_for(importing, timeout=30, interval=0.05)
    token = kill_restart_and_check_interrupted(server, watcher, job["id"])
    # Once the job is settled interrupted, its half-written dataset goes too.
    wait_for(lambda: server.api("GET", "/api/datasets", token).json()["datasets"] == [], timeout=10)
    assert server.api("GET", "/api/datasets/big/rows?limit=1", token).status_code == 404
    again = run_job(server, token, "data_import", {"upload_id": "big", "dataset": "big"})  # no mode needed
    assert again["status"] == "completed", again
    assert again["result"]["imported_rows"] == len(good)


def test_report_cut_by_a_killed_server_ends_interrupted_with_only_whole_artifacts(server):
    """Artifacts are listed once written whole: a report cut off mid-file shows none of it."""
    token = server.login("alice")
    content, _good, _ = sales_csv(100_000, bad_every=1000)
    assert upload(server, token, content, "sales.csv", "sales").status_code == 201
    assert run_job(server, token, "data_import", {"upload_id": "sales", "dataset": "sales"})["status"] == "completed"
    reports = [
        {"name": f"r{n}", "group_by": ["region"], "metrics": [{"op": "count"}, {"op": "sum", "column": "qty"}]}
        for n in range(20)
    ]
    watcher = Recorder(server, token)
    job = server.submit(token, "batch_report", dataset="sales", reports=reports, formats=["csv"])
    assert watcher.client.call("subscribe", {"job_id": job["id"], "last_seq": 0}, timeout=10)["ok"] is True
    wait_for(lambda: watcher.of_type("batch_report_progress", job["id"]), timeout=30, interval=0.01)
    token = kill_restart_and_check_interrupted(server, watcher, job["id"])
    listed = server.api("GET", f"/api/jobs/{job['id']}/artifacts", token).json()["artifacts"]
    assert len(listed) < len(reports)  # it was cut off before the end
    for artifact in listed:
        body = server.api("GET", artifact["url"], token).content
        assert len(body) == artifact["size"] and body.startswith(b"region,count,sum_qty")


def test_cancelling_the_upload_job_stops_the_upload_and_leaves_no_file(server, tmp_path: Path):
    token = server.login("alice")
    listener = Recorder(server, token, client_id="tab-2")
    head, tail = multipart_parts("slow.txt", {"upload_id": "slow"})
    size = 8 * 1024 * 1024
    sock = open_upload(server, token, len(head) + size + len(tail), "?client_id=tab-2")
    sock.sendall(head + b"x" * 65536)
    job_id = wait_for(lambda: (p := listener.of_type("file_upload_progress")) and p[-1]["job_id"], timeout=20)
    assert server.api("POST", f"/api/jobs/{job_id}/cancel", token).status_code == 202
    sent = 65536
    try:
        while sent < size:  # keep the server reading: it looks for the cancel between reads
            sock.sendall(b"x" * 32768)
            sent += 32768
            if server.api("GET", "/api/uploads/slow", token).json()["upload"]["status"] != "receiving":
                break
        status, body = read_response(sock)
        assert status == 409 and b"upload_cancelled" in body
    except OSError:
        pass  # the server may close before the client stops sending
    finally:
        sock.close()
        listener.close()
    assert sent < size
    assert server.api("GET", "/api/uploads/slow", token).json()["upload"]["status"] == "cancelled"
    assert server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]["status"] == "cancelled"
    assert files_in(tmp_path / "uploads") == []


# -- 2. limits, names, ownership ------------------------------------------------------------


def test_over_limit_upload_is_413_json_before_the_body_and_nothing_on_disk(server, tmp_path: Path):
    token = server.login("alice")
    sock = open_upload(server, token, 200 * 1024 * 1024)  # over the 100 MiB default; no body sent
    status, body = read_response(sock)
    sock.close()
    assert status == 413
    assert b'"upload_too_large"' in body
    assert files_in(tmp_path / "uploads") == []
    assert server.api("GET", "/api/uploads", token).json()["uploads"] == []


def test_chunked_upload_is_refused_with_411(server):
    token = server.login("alice")
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(
        (
            f"POST /api/uploads HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ).encode()
    )
    status, body = read_response(sock)
    sock.close()
    assert status == 411 and b'"length_required"' in body


def test_traversal_filename_is_stored_safely_and_other_user_cannot_touch_it(server, tmp_path: Path):
    alice, bob = server.login("alice"), server.login("bob")
    response = upload(server, alice, b"a,b\n1,2\n", "../../etc/passwd.csv", "trav")
    assert response.status_code == 201, response.text
    assert response.json()["upload"]["filename"] == "passwd.csv"
    stored = files_in(tmp_path / "uploads")
    assert len(stored) == 1 and (tmp_path / "uploads" / stored[0]).read_bytes() == b"a,b\n1,2\n"
    assert server.api("GET", "/api/uploads/trav", bob).status_code == 404
    assert server.api("DELETE", "/api/uploads/trav", bob).status_code == 404
    refused = server.api(
        "POST", "/api/jobs", bob, json={"kind": "data_import", "params": {"upload_id": "trav", "dataset": "x"}}
    )
    assert refused.status_code == 400  # an upload that is not yours is an unknown reference
    assert refused.json()["error"]["details"] == {"path": "params.upload_id"}
    assert server.api("GET", "/api/uploads/trav", alice).status_code == 200


# -- 3. import with bad rows, live progress -------------------------------------------------


def sales_csv(rows: int, bad_every: int, seed: int = 3) -> tuple[bytes, list[tuple[str, int, float]], list[int]]:
    """A CSV with some bad rows; returns it, the good rows, and the file lines of bad ones."""
    rnd = random.Random(seed)
    out = io.StringIO()
    out.write("region,qty,price\n")
    good, bad_lines = [], []
    for i in range(rows):
        line = i + 2
        region, qty, price = (
            rnd.choice(["north", "south", "east", "west", "=evil"]),
            rnd.randint(-9, 99),
            round(rnd.uniform(0, 500), 2),
        )
        if i % bad_every == bad_every - 1:
            out.write(f"{region},not-a-number,{price}\n")
            bad_lines.append(line)
        else:
            out.write(f"{region},{qty},{price}\n")
            good.append((region, qty, price))
    return out.getvalue().encode(), good, bad_lines


@pytest.fixture
def fine_server(tmp_path: Path):
    """Like ``server``, with progress ticks every 10 ms so that a fast import shows several."""
    yield from launch(tmp_path, PROGRESS_INTERVAL="0.01")


@pytest.fixture
def imported(fine_server):
    """Alice's dataset ``sales`` imported from a CSV with bad rows, with its progress events."""
    server = fine_server
    token = server.login("alice")
    content, good, bad_lines = sales_csv(60_000, bad_every=997)
    assert upload(server, token, content, "sales.csv", "sales").status_code == 201
    listener = Recorder(server, token)
    assert listener.client.call("subscribe", {"all": True}, timeout=10)["ok"] is True
    job = run_job(
        server, token, "data_import", {"upload_id": "sales", "dataset": "sales", "schema": {"qty": "integer"}}
    )
    wait_for(
        lambda: (
            listener.of_type("job_status", job["id"])
            and listener.of_type("job_status", job["id"])[-1]["data"]["status"] == "completed"
        ),
        timeout=30,
    )
    progress = [m["data"] for m in listener.of_type("data_import_progress", job["id"])]
    listener.close()
    return token, job, good, bad_lines, progress


def test_import_stores_good_rows_and_reports_bad_ones_with_line_numbers(fine_server, imported):
    server = fine_server
    token, job, good, bad_lines, _progress = imported
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    assert result["imported_rows"] == len(good) and result["rejected_rows"] == len(bad_lines)
    assert [e["row"] for e in result["errors"]] == bad_lines[:100]
    assert {e["column"] for e in result["errors"]} == {"qty"}
    dataset = server.api("GET", "/api/datasets/sales", token).json()["dataset"]
    assert dataset["row_count"] == len(good)
    page = server.api("GET", "/api/datasets/sales/rows?limit=3&offset=0", token).json()["rows"]
    assert [(r["region"], r["qty"], r["price"]) for r in page] == good[:3]


def test_import_progress_grows_and_ends_at_100_with_counts_that_add_up(imported):
    _token, _job, good, bad_lines, progress = imported
    processed = [p["processed_rows"] for p in progress]
    assert len(set(processed)) >= 2 and processed == sorted(processed)  # it grew while the import ran
    last = progress[-1]
    assert last["percent"] == 100.0
    assert last["processed_rows"] == last["total_rows"] == len(good) + len(bad_lines)
    assert last["imported_rows"] + last["rejected_rows"] == last["processed_rows"]
    assert last["rejected_rows"] == len(bad_lines)


# -- 4. batch report ------------------------------------------------------------------------


class TableCells(html.parser.HTMLParser):
    """Collects the text of every <td>/<th> row of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def expected_by_region(good: list[tuple[str, int, float]]) -> dict[str, tuple[int, int, float, float]]:
    """count, sum(qty), avg(price), max(price) per region, computed here from the source rows."""
    groups: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for region, qty, price in good:
        if qty >= 0:  # the report's filter
            groups[region].append((qty, price))
    return {
        region: (len(v), sum(q for q, _ in v), sum(p for _, p in v) / len(v), max(p for _, p in v))
        for region, v in groups.items()
    }


def test_batch_report_aggregates_are_correct_in_csv_and_html_and_owner_only(fine_server, imported):
    server = fine_server
    token, _job, good, _bad, _progress = imported
    report = {
        "name": "by_region",
        "group_by": ["region"],
        "metrics": [
            {"op": "count"},
            {"op": "sum", "column": "qty"},
            {"op": "avg", "column": "price"},
            {"op": "max", "column": "price"},
        ],
        "filters": [{"column": "qty", "op": "gte", "value": 0}],
    }
    job = run_job(server, token, "batch_report", {"dataset": "sales", "reports": [report], "formats": ["csv", "html"]})
    assert job["status"] == "completed", job["error"]
    expected = expected_by_region(good)
    listing = server.api("GET", f"/api/jobs/{job['id']}/artifacts", token).json()["artifacts"]
    urls = {a["name"]: a["url"] for a in listing}
    assert set(urls) == {"by_region.csv", "by_region.html"}

    csv_response = server.api("GET", urls["by_region.csv"], token)
    assert csv_response.headers["Content-Type"].startswith("text/csv")
    assert "by_region.csv" in csv_response.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(csv_response.text)))
    assert rows[0] == ["region", "count", "sum_qty", "avg_price", "max_price"]
    got = {r[0]: (int(r[1]), int(r[2]), float(r[3]), float(r[4])) for r in rows[1:]}
    assert set(got) == {("'" + k if k.startswith("=") else k) for k in expected}
    for region, (count, total, avg, peak) in expected.items():
        key = "'" + region if region.startswith("=") else region
        assert got[key][:2] == (count, total)
        assert got[key][2] == pytest.approx(avg) and got[key][3] == pytest.approx(peak)

    html_response = server.api("GET", urls["by_region.html"], token)
    assert html_response.headers["Content-Type"].startswith("text/html")
    assert "<svg" in html_response.text and "<script" not in html_response.text
    parser = TableCells()
    parser.feed(html_response.text)
    table = [r for r in parser.rows if r]
    assert table[0] == ["region", "count", "sum_qty", "avg_price", "max_price"]
    for cells in table[1:]:
        count, total, avg, peak = expected[cells[0].lstrip("'")]
        assert int(cells[1].replace(",", "")) == count and int(cells[2].replace(",", "")) == total
        assert float(cells[3].replace(",", "")) == pytest.approx(avg, abs=1e-5)
        assert float(cells[4].replace(",", "")) == pytest.approx(peak, abs=1e-5)

    bob = server.login("bob")
    assert server.api("GET", f"/api/jobs/{job['id']}/artifacts", bob).status_code == 404
    assert server.api("GET", urls["by_region.csv"], bob).status_code == 404
