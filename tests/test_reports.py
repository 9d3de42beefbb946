"""``batch_report`` in-process, and the report helpers: aggregates, CSV/HTML, escaping, artifacts."""

from __future__ import annotations

import csv
import io
import random
from collections import defaultdict

import pytest

from app.data.reports import Aggregator, ReportSpec, escape_cell
from tests.data_helpers import run_job, upload_bytes

COLUMNS = [
    {"name": "region", "type": "string"},
    {"name": "qty", "type": "integer"},
    {"name": "price", "type": "number"},
]


def make_sales(rows: int = 300, seed: int = 7) -> tuple[bytes, list[tuple[str, int, float]]]:
    rnd = random.Random(seed)
    data = [
        (rnd.choice(["north", "south", "east", "=cmd"]), rnd.randint(-5, 50), round(rnd.uniform(1, 100), 2))
        for _ in range(rows)
    ]
    text = "region,qty,price\n" + "".join(f"{r},{q},{p}\n" for r, q, p in data)
    return text.encode(), data


def download(client, url: str, headers: dict[str, str]):
    """GET a file and close the response (send_file keeps it open until then)."""
    response = client.get(url, headers=headers)
    response.get_data()
    response.close()
    return response


@pytest.fixture
def sales(client, auth):
    token = auth.token_for("alice")
    content, data = make_sales()
    upload_bytes(client, token, content, "sales.csv", "sales")
    job = run_job(client, token, "data_import", {"upload_id": "sales", "dataset": "sales"})
    assert job["status"] == "completed" and job["result"]["imported_rows"] == len(data)
    return token, data


REPORTS = [
    {
        "name": "by_region",
        "group_by": ["region"],
        "metrics": [
            {"op": "count"},
            {"op": "sum", "column": "qty"},
            {"op": "avg", "column": "price"},
            {"op": "min", "column": "qty"},
            {"op": "max", "column": "price"},
        ],
    },
    {"name": "big", "metrics": [{"op": "count"}], "filters": [{"column": "qty", "op": "gte", "value": 25}]},
]


def test_report_csv_has_correct_aggregates(client, auth, sales):
    token, data = sales
    job = run_job(client, token, "batch_report", {"dataset": "sales", "reports": REPORTS, "formats": ["csv", "html"]})
    assert job["status"] == "completed", job["error"]
    response = download(client, f"/api/jobs/{job['id']}/artifacts/by_region.csv", auth.headers(token))
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["region", "count", "sum_qty", "avg_price", "min_qty", "max_price"]
    groups: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for region, qty, price in data:
        groups[region].append((qty, price))
    assert sorted(r[0] for r in rows[1:]) == sorted("'" + g if g.startswith("=") else g for g in groups)
    for row in rows[1:]:
        values = groups[row[0].lstrip("'")]
        assert int(row[1]) == len(values)
        assert int(row[2]) == sum(q for q, _ in values)
        assert float(row[3]) == pytest.approx(sum(p for _, p in values) / len(values))
        assert int(row[4]) == min(q for q, _ in values)
        assert float(row[5]) == max(p for _, p in values)
    big = download(client, f"/api/jobs/{job['id']}/artifacts/big.csv", auth.headers(token)).get_data(as_text=True)
    assert big.split() == ["count", str(sum(1 for _, q, _ in data if q >= 25))]


def test_report_artifacts_listed_with_types_and_owner_only(client, auth, sales):
    token, _ = sales
    job = run_job(
        client, token, "batch_report", {"dataset": "sales", "reports": REPORTS[:1], "formats": ["csv", "html", "xlsx"]}
    )
    listing = client.get(f"/api/jobs/{job['id']}/artifacts", headers=auth.headers(token)).get_json()["artifacts"]
    assert {(a["name"], a["content_type"].split(";")[0]) for a in listing} == {
        ("by_region.csv", "text/csv"),
        ("by_region.html", "text/html"),
        ("by_region.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    }
    html = download(client, listing[1]["url"], auth.headers(token))
    assert html.status_code == 200 and "<svg" in html.get_data(as_text=True)
    assert "filename=by_region.html" in html.headers["Content-Disposition"]
    bob = auth.token_for("bob")
    assert client.get(f"/api/jobs/{job['id']}/artifacts", headers=auth.headers(bob)).status_code == 404
    assert client.get(listing[0]["url"], headers=auth.headers(bob)).status_code == 404


def test_report_on_unknown_column_is_refused_at_submit(client, auth, sales):
    token, _ = sales
    bad = [{"name": "r", "group_by": ["nope"], "metrics": [{"op": "count"}]}]
    response = client.post(
        "/api/jobs",
        json={"kind": "batch_report", "params": {"dataset": "sales", "reports": bad}},
        headers=auth.headers(token),
    )
    assert response.status_code == 400 and "nope" in response.get_json()["error"]["message"]


def test_report_on_unknown_dataset_is_a_400_naming_the_field(client, auth):
    token = auth.token_for("alice")
    params = {"dataset": "missing", "reports": [{"name": "r", "metrics": [{"op": "count"}]}]}
    response = client.post("/api/jobs", json={"kind": "batch_report", "params": params}, headers=auth.headers(token))
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "unknown_reference" and error["details"] == {"path": "params.dataset"}


def test_report_progress_ends_with_all_reports_completed(client, auth, sales):
    token, _ = sales
    job = run_job(client, token, "batch_report", {"dataset": "sales", "reports": REPORTS})
    progress = job["progress"]
    assert progress["type"] == "batch_report_progress"
    assert (progress["completed_reports"], progress["total_reports"], progress["percent"]) == (2, 2, 100.0)


@pytest.mark.parametrize(
    "text",
    ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\nx"]  # as typed
    + [" =1+1", "  @x", "\u00a0=x"]  # after leading whitespace
    + ["＝1+1", "＋1", "－1", "＠x", "\u3000＝x"],  # full-width forms
)
def test_formula_like_text_is_escaped(text):
    assert escape_cell(text) == "'" + text


@pytest.mark.parametrize("value", [-1, 3.5, 0, None, True, "plain", "", " plain", "a=b", "x-1"])
def test_numbers_and_plain_text_are_not_escaped(value):
    assert escape_cell(value) == value


def test_aggregator_ignores_nulls_and_counts_rows():
    spec = ReportSpec.parse(
        {
            "name": "r",
            "group_by": [],
            "metrics": [{"op": "count"}, {"op": "count", "column": "qty"}, {"op": "avg", "column": "qty"}],
        },
        COLUMNS,
        "r",
    )
    agg = Aggregator(spec, [c["name"] for c in COLUMNS])
    for row in (["a", 2, 1.0], ["b", None, 1.0], ["c", 4, 1.0]):
        agg.add(row)
    assert spec.headers == ["count", "count_qty", "avg_qty"]
    assert agg.result_rows() == [[3, 2, 3.0]]
