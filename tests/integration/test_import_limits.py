"""Import limits against the real server: an XLSX bomb is refused quickly and nobody else
notices, and a legitimate large workbook is imported without holding the event loop.

A second user pings over Socket.IO the whole time (``probes.PingProbe``).
"""

from __future__ import annotations

import csv
import html
import io
import time
from pathlib import Path
from typing import Any

import openpyxl
import requests

from tests.data_helpers import write_shared_strings_bomb, write_xlsx
from tests.helpers import wait_for

from .probes import PingProbe, RssSampler, p99


def upload_file(server: Any, token: str, path: Path, upload_id: str) -> None:
    with open(path, "rb") as fh:
        response = server.api(
            "POST", "/api/uploads", token, data={"upload_id": upload_id}, files={"file": (path.name, fh)}
        )
    assert response.status_code == 201, response.text


def finished_job(server: Any, token: str, job_id: int, timeout: float) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        job = server.api("GET", f"/api/jobs/{job_id}", token).json()["job"]
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    return dict(wait_for(final, timeout=timeout, interval=0.05))


def test_xlsx_bomb_fails_fast_while_another_user_stays_served(server, tmp_path: Path):
    alice, bob = server.login("alice"), server.login("bob")
    bomb = tmp_path / "bomb.xlsx"
    write_shared_strings_bomb(bomb)  # 1 GiB of shared strings in about 1 MiB
    upload_file(server, alice, bomb, "bomb")
    probe = PingProbe(server, bob)
    memory = RssSampler(server.proc.pid)
    time.sleep(0.5)  # some round trips before the import, for a baseline

    started = time.monotonic()
    job = server.submit(alice, "data_import", upload_id="bomb", dataset="bomb")
    health = requests.get(server.url + "/health", timeout=2)
    job = finished_job(server, alice, job["id"], timeout=10)
    took = time.monotonic() - started
    time.sleep(0.5)
    round_trips, growth = probe.stop(), memory.stop()

    assert health.ok
    assert job["status"] == "failed" and job["error"]["code"] == "file_too_large", job
    assert "IMPORT_XLSX_MAX_RATIO" in job["error"]["message"]
    assert took < 5
    assert server.api("GET", "/api/datasets/bomb", alice).status_code == 404
    assert len(round_trips) > 20 and p99(round_trips) < 0.1, round_trips[-10:]
    assert growth < 100 * 1024 * 1024


def test_large_workbook_imports_while_another_user_stays_served(server, tmp_path: Path):
    alice, bob = server.login("alice"), server.login("bob")
    book = tmp_path / "people.xlsx"
    rows = 40_000
    write_xlsx(book, [["id", "name", "city"]] + [[i, f"person number {i}", f"city {i % 500}"] for i in range(rows)])
    upload_file(server, alice, book, "people")
    probe = PingProbe(server, bob)
    time.sleep(0.5)

    job = server.submit(alice, "data_import", upload_id="people", dataset="people")
    job = finished_job(server, alice, job["id"], timeout=240)
    round_trips = probe.stop()

    assert job["status"] == "completed", job["error"]
    assert job["result"]["imported_rows"] == rows
    # The loop is never held for long: the bound is looser than for the bomb because an
    # inline import shares the interpreter with the loop (p99 ~50 ms alone, up to ~240 ms
    # while make test loads both cores); JOB_EXECUTOR=celery takes such jobs off it.
    assert len(round_trips) > 20 and p99(round_trips) < 0.3, sorted(round_trips)[-10:]


FORMULAS = ["=1+1", " =1+1", "\uff1d1+1", "@SUM(A1)", "\u3000\uff1dx", "+x", "-x", '=HYPERLINK("http://x")']


def test_hostile_files_fail_clearly_with_memory_flat_and_a_bystander_fast(server, tmp_path: Path):
    """Issue 12, test 12: a sheet declaring 30 million rows, one really holding them (780 MB
    of XML in 2 MB), a CSV row of a million columns: each import fails at once with the
    limit it hit; traversal names are stored as bare names; formula cells (also after a
    space, and full-width ``＝``) come out escaped in every report format; meanwhile the
    server's memory stays flat and a bystander's pings stay fast."""
    from tests.data_helpers import write_tall_sheet

    alice, bob = server.login("alice"), server.login("bob")
    declared, tall, wide = tmp_path / "declared.xlsx", tmp_path / "tall.xlsx", tmp_path / "wide.csv"
    write_xlsx(declared, [["a"], [1]], dimension="A1:A30000000")
    write_tall_sheet(tall, 30_000_000)
    wide.write_bytes(b"a,b\n1,2\n" + b"1," * 999_999 + b"1\n")
    formulas = io.StringIO()
    csv.writer(formulas).writerows([["name", "qty"], *([text, n] for n, text in enumerate(FORMULAS))])
    uploads = {
        "declared": (declared.read_bytes(), "../../../etc/cron.d/declared.xlsx"),
        "tall": (tall.read_bytes(), "..\\..\\windows\\tall.xlsx"),
        "wide": (wide.read_bytes(), "/absolute/wide.csv"),
        "formulas": (formulas.getvalue().encode(), "./../formulas.csv"),
    }
    for upload_id, (content, name) in uploads.items():
        response = server.api(
            "POST", "/api/uploads", alice, data={"upload_id": upload_id}, files={"file": (name, content)}
        )
        assert response.status_code == 201, response.text
        stored = response.json()["upload"]["filename"]
        assert "/" not in stored and "\\" not in stored and not stored.startswith("."), stored
    assert all(path.parent == tmp_path / "uploads" for path in (tmp_path / "uploads").rglob("*"))

    probe = PingProbe(server, bob)
    memory = RssSampler(server.proc.pid)
    time.sleep(0.3)
    expected = {
        "declared": "declares 29,999,999 rows",
        "tall": "(IMPORT_XLSX_MAX_",
        "wide": "a record is longer than 1,048,576 characters (IMPORT_MAX_RECORD_CHARS)",
    }
    for upload_id, message in expected.items():
        started = time.monotonic()
        job = server.submit(alice, "data_import", upload_id=upload_id, dataset=upload_id)
        job = finished_job(server, alice, job["id"], timeout=20)
        assert job["status"] == "failed" and job["error"]["code"] == "file_too_large", job
        assert message in job["error"]["message"], job["error"]
        assert time.monotonic() - started < 5
        assert server.api("GET", f"/api/datasets/{upload_id}", alice).status_code == 404
    job = server.submit(alice, "data_import", upload_id="formulas", dataset="formulas")
    assert finished_job(server, alice, job["id"], timeout=20)["status"] == "completed"
    report = {"name": "by_name", "group_by": ["name"], "metrics": [{"op": "sum", "column": "qty"}]}
    job = server.submit(alice, "batch_report", dataset="formulas", reports=[report], formats=["csv", "html", "xlsx"])
    job = finished_job(server, alice, job["id"], timeout=30)
    round_trips, growth = probe.stop(), memory.stop()

    assert job["status"] == "completed", job["error"]
    urls = {
        a["name"]: a["url"] for a in server.api("GET", f"/api/jobs/{job['id']}/artifacts", alice).json()["artifacts"]
    }
    csv_cells = [row[0] for row in csv.reader(io.StringIO(server.api("GET", urls["by_name.csv"], alice).text))][1:]
    assert sorted(csv_cells) == sorted("'" + text for text in FORMULAS)
    book = openpyxl.load_workbook(io.BytesIO(server.api("GET", urls["by_name.xlsx"], alice).content))
    cells = [row[0] for row in book.active.iter_rows(min_row=2, values_only=True)]
    assert sorted(cells) == sorted("'" + text for text in FORMULAS)
    assert all(cell.data_type != "f" for row in book.active.iter_rows() for cell in row)
    page = server.api("GET", urls["by_name.html"], alice).text
    assert "<script" not in page and all("'" + text in html.unescape(page) for text in FORMULAS)
    assert growth < 100 * 1024 * 1024, f"RSS grew {growth / 1e6:.1f} MB"
    assert len(round_trips) > 20 and p99(round_trips) < 0.1, round_trips[-10:]
