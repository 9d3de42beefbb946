"""``data_import`` in-process: good rows stored, bad rows reported, broken files rolled back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.data_helpers import run_job, upload_bytes, write_shared_strings_bomb, write_xlsx

GOOD_AND_BAD = (
    b"city,amount,ok\n"
    b"Paris,10,true\n"  # line 2
    b"Lyon,x,true\n"  # line 3: amount not an integer
    b"Nice,5,false\n"  # line 4
    b"Metz,7,maybe\n"  # line 5: ok not a boolean
    b"Caen,-3,true\n"  # line 6
)


def rows_of(client, token, name: str) -> list[dict]:
    response = client.get(f"/api/datasets/{name}/rows?limit=1000", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["rows"]


def test_import_keeps_good_rows_and_reports_bad_ones_with_line_and_column(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, GOOD_AND_BAD, "sales.csv", "sales")
    # amount must be declared: inference over a column with "x" would make it text
    job = run_job(
        client,
        token,
        "data_import",
        {"upload_id": "sales", "dataset": "sales", "schema": {"amount": "integer", "ok": "boolean"}},
    )
    assert job["status"] == "completed", job["error"]
    result = job["result"]
    assert (result["processed_rows"], result["imported_rows"], result["rejected_rows"]) == (5, 3, 2)
    assert [(e["row"], e["column"]) for e in result["errors"]] == [(3, "amount"), (5, "ok")]
    assert rows_of(client, token, "sales") == [
        {"city": "Paris", "amount": 10, "ok": True},
        {"city": "Nice", "amount": 5, "ok": False},
        {"city": "Caen", "amount": -3, "ok": True},
    ]


def test_import_infers_column_types_from_the_first_rows(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"name,n,price,flag\na,1,1.5,yes\nb,2,2,no\n", "t.csv", "t")
    job = run_job(client, token, "data_import", {"upload_id": "t", "dataset": "t"})
    types = {c["name"]: c["type"] for c in job["result"]["columns"]}
    assert types == {"name": "string", "n": "integer", "price": "number", "flag": "boolean"}


def test_dataset_lists_schema_and_row_count(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, GOOD_AND_BAD, "sales.csv", "sales")
    run_job(client, token, "data_import", {"upload_id": "sales", "dataset": "sales"})
    dataset = client.get("/api/datasets/sales", headers=auth.headers(token)).get_json()["dataset"]
    assert dataset["row_count"] == 5 and [c["name"] for c in dataset["columns"]] == ["city", "amount", "ok"]
    listed = client.get("/api/datasets", headers=auth.headers(token)).get_json()["datasets"]
    assert [d["name"] for d in listed] == ["sales"]


def test_import_into_existing_dataset_without_mode_is_409(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, GOOD_AND_BAD, "sales.csv", "sales")
    run_job(client, token, "data_import", {"upload_id": "sales", "dataset": "sales"})
    response = client.post(
        "/api/jobs",
        json={"kind": "data_import", "params": {"upload_id": "sales", "dataset": "sales"}},
        headers=auth.headers(token),
    )
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "dataset_exists"


def test_append_adds_rows_and_replace_swaps_them(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"k,v\na,1\nb,2\n", "one.csv", "one")
    upload_bytes(client, token, b"k,v\nc,3\n", "two.csv", "two")
    run_job(client, token, "data_import", {"upload_id": "one", "dataset": "kv"})
    run_job(client, token, "data_import", {"upload_id": "two", "dataset": "kv", "mode": "append"})
    assert [r["k"] for r in rows_of(client, token, "kv")] == ["a", "b", "c"]
    run_job(client, token, "data_import", {"upload_id": "two", "dataset": "kv", "mode": "replace"})
    assert rows_of(client, token, "kv") == [{"k": "c", "v": 3}]
    assert client.get("/api/datasets/kv", headers=auth.headers(token)).get_json()["dataset"]["row_count"] == 1


def test_wrong_column_count_fails_the_import_and_rolls_back(client, auth):
    token = auth.token_for("alice")
    lines = ["a,b"] + [f"{i},{i}" for i in range(5000)] + ["1,2,3"] + ["9,9"]
    upload_bytes(client, token, ("\n".join(lines) + "\n").encode(), "broken.csv", "broken")
    job = run_job(client, token, "data_import", {"upload_id": "broken", "dataset": "broken"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "broken_file" and "line 5002" in job["error"]["message"]
    assert client.get("/api/datasets/broken", headers=auth.headers(token)).status_code == 404


def test_broken_append_leaves_the_dataset_as_it_was(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"a,b\n1,1\n", "ok.csv", "ok")
    upload_bytes(client, token, b"a,b\n" + b"2,2\n" * 3000 + b"\xff\xfe,3\n", "bad.csv", "bad")
    run_job(client, token, "data_import", {"upload_id": "ok", "dataset": "d"})
    job = run_job(client, token, "data_import", {"upload_id": "bad", "dataset": "d", "mode": "append"})
    assert job["status"] == "failed" and "UTF-8" in job["error"]["message"]
    assert rows_of(client, token, "d") == [{"a": 1, "b": 1}]


def test_import_of_jsonl_reports_bad_lines(client, auth):
    token = auth.token_for("alice")
    lines = [
        json.dumps({"name": "a", "n": 1}),
        "{not json",
        json.dumps({"name": "b", "n": "two"}),
        json.dumps({"name": "c", "n": 3}),
    ]
    upload_bytes(client, token, ("\n".join(lines) + "\n").encode(), "x.jsonl", "x")
    job = run_job(client, token, "data_import", {"upload_id": "x", "dataset": "x", "schema": {"n": "integer"}})
    result = job["result"]
    assert (result["imported_rows"], result["rejected_rows"]) == (2, 2)
    assert [e["row"] for e in result["errors"]] == [2, 3]


def test_import_of_xlsx(client, auth, tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["name", "score"])
    sheet.append(["a", 1.5])
    sheet.append(["b", 2])
    book.save(tmp_path / "s.xlsx")
    token = auth.token_for("alice")
    upload_bytes(client, token, (tmp_path / "s.xlsx").read_bytes(), "s.xlsx", "s")
    job = run_job(client, token, "data_import", {"upload_id": "s", "dataset": "s"})
    assert job["status"] == "completed", job["error"]
    assert rows_of(client, token, "s") == [{"name": "a", "score": 1.5}, {"name": "b", "score": 2}]


def test_other_user_cannot_import_or_read_datasets(client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    upload_bytes(client, alice, GOOD_AND_BAD, "sales.csv", "sales")
    response = client.post(
        "/api/jobs",
        json={"kind": "data_import", "params": {"upload_id": "sales", "dataset": "stolen"}},
        headers=auth.headers(bob),
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == {"path": "params.upload_id"}
    run_job(client, alice, "data_import", {"upload_id": "sales", "dataset": "sales"})
    assert client.get("/api/datasets/sales", headers=auth.headers(bob)).status_code == 404
    assert client.get("/api/datasets/sales/rows", headers=auth.headers(bob)).status_code == 404


def test_final_import_progress_is_100_percent_with_counts_that_add_up(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, GOOD_AND_BAD, "sales.csv", "sales")
    params = {"upload_id": "sales", "dataset": "sales", "schema": {"amount": "integer", "ok": "boolean"}}
    progress = run_job(client, token, "data_import", params)["progress"]
    assert progress["type"] == "data_import_progress" and progress["percent"] == 100.0
    assert progress["processed_rows"] == progress["total_rows"] == 5
    assert progress["imported_rows"] + progress["rejected_rows"] == progress["processed_rows"]
    assert len(progress["errors"]) == progress["rejected_rows"] == 2


# -- limits: the job fails with a clear code, nothing stays behind, the upload is untouched -


def stored_files(app) -> dict[str, str]:
    """sha256 of every stored upload, by file name."""
    folder = Path(app.config["UPLOAD_DIR"])
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_xlsx_bomb_fails_the_import_as_file_too_large_and_leaves_nothing(app, client, auth, tmp_path):
    token = auth.token_for("alice")
    write_shared_strings_bomb(tmp_path / "bomb.xlsx")
    upload_bytes(client, token, (tmp_path / "bomb.xlsx").read_bytes(), "bomb.xlsx", "bomb")
    before = stored_files(app)
    job = run_job(client, token, "data_import", {"upload_id": "bomb", "dataset": "bomb"}, timeout=10)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "file_too_large"
    assert "IMPORT_XLSX_MAX_RATIO" in job["error"]["message"] and "rolled back" in job["error"]["message"]
    assert client.get("/api/datasets/bomb", headers=auth.headers(token)).status_code == 404
    assert stored_files(app) == before


def test_rows_past_the_limit_fail_the_import_and_roll_back(app, client, auth):
    app.config["IMPORT_MAX_ROWS"] = 1000
    token = auth.token_for("alice")
    upload_bytes(client, token, b"n\n" + b"1\n" * 1001, "long.csv", "long")
    job = run_job(client, token, "data_import", {"upload_id": "long", "dataset": "long"})
    assert job["status"] == "failed" and job["error"]["code"] == "file_too_large"
    assert "more than 1,000 rows (IMPORT_MAX_ROWS)" in job["error"]["message"]
    assert client.get("/api/datasets/long", headers=auth.headers(token)).status_code == 404


def test_append_past_the_row_limit_leaves_the_dataset_as_it_was(app, client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"n\n1\n", "ok.csv", "ok")
    upload_bytes(client, token, b"n\n" + b"2\n" * 1001, "long.csv", "long")
    run_job(client, token, "data_import", {"upload_id": "ok", "dataset": "d"})
    app.config["IMPORT_MAX_ROWS"] = 1000
    job = run_job(client, token, "data_import", {"upload_id": "long", "dataset": "d", "mode": "append"})
    assert job["error"]["code"] == "file_too_large"
    assert rows_of(client, token, "d") == [{"n": 1}]


def test_csv_row_of_a_million_columns_fails_the_import_as_file_too_large(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"a,b\n1,2\n" + b"1," * 999_999 + b"1\n", "wide.csv", "wide")
    job = run_job(client, token, "data_import", {"upload_id": "wide", "dataset": "wide"})
    assert job["status"] == "failed" and job["error"]["code"] == "file_too_large"
    assert "line 3: a record is longer than 1,048,576 characters" in job["error"]["message"]
    assert client.get("/api/datasets/wide", headers=auth.headers(token)).status_code == 404


def test_xlsx_that_is_not_a_zip_fails_as_a_broken_file(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"name,score\na,1\n", "fake.xlsx", "fake")
    job = run_job(client, token, "data_import", {"upload_id": "fake", "dataset": "fake"})
    assert job["status"] == "failed" and job["error"]["code"] == "broken_file"
    assert "not a zip archive" in job["error"]["message"]


def test_workbook_with_shared_strings_imports(client, auth, tmp_path):
    token = auth.token_for("alice")
    rows = [["city", "qty"]] + [[f"city {i % 7}", i] for i in range(1000)]
    write_xlsx(tmp_path / "cities.xlsx", rows)
    upload_bytes(client, token, (tmp_path / "cities.xlsx").read_bytes(), "cities.xlsx", "cities")
    job = run_job(client, token, "data_import", {"upload_id": "cities", "dataset": "cities"})
    assert job["status"] == "completed", job["error"]
    assert job["result"]["imported_rows"] == 1000
    assert rows_of(client, token, "cities")[-1] == {"city": "city 5", "qty": 999}


def test_every_rejected_row_is_in_the_rejects_artifact_with_line_column_and_reason(client, auth):
    token = auth.token_for("alice")
    bad = "".join(f"r{i},not-a-number\n" for i in range(150))  # more rejects than the result keeps
    upload_bytes(client, token, ("name,amount\nok,1\n" + bad + "last,x\n").encode(), "r.csv", "r")
    job = run_job(client, token, "data_import", {"upload_id": "r", "dataset": "r", "schema": {"amount": "integer"}})
    result = job["result"]
    assert (result["rejected_rows"], len(result["errors"]), result["rejects_filed"]) == (151, 100, 151)
    assert result["rejects_artifact"] == "rejects.csv"
    headers = {"Authorization": f"Bearer {token}"}
    listed = client.get(f"/api/jobs/{job['id']}/artifacts", headers=headers).get_json()["artifacts"]
    assert [a["name"] for a in listed] == ["rejects.csv"]
    response = client.get(listed[0]["url"], headers=headers)
    lines = response.get_data(as_text=True).splitlines()
    response.close()
    assert lines[0] == "line,column,reason" and len(lines) == 152
    assert lines[1].startswith("3,amount,") and lines[-1].startswith("153,amount,")  # file lines of the bad rows


def test_an_import_with_no_rejects_has_no_rejects_artifact(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"name,amount\na,1\n", "g.csv", "g")
    job = run_job(client, token, "data_import", {"upload_id": "g", "dataset": "g"})
    assert job["result"]["rejects_artifact"] is None
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/jobs/{job['id']}/artifacts", headers=headers).get_json()["artifacts"] == []
