"""The example kinds in-process (threading mode): what each reports and produces."""

from __future__ import annotations

import hashlib

from tests.data_helpers import run_job, upload_bytes

TEXT = "The cat and the hat.\nA cat, a dog — and don't forget the e-mail!\nthe end"


def events_of(client, token: str, job_id: int) -> list[dict]:
    response = client.get(f"/api/jobs/{job_id}/events", headers={"Authorization": f"Bearer {token}"})
    return response.get_json()["events"]


def test_the_plugin_kinds_are_listed_with_their_params_schema(client, auth):
    kinds = client.get("/api/kinds", headers=auth.headers(auth.token_for("alice"))).get_json()["kinds"]
    by_name = {kind["kind"]: kind for kind in kinds}
    assert by_name["checksum_uploads"]["schema"]["properties"]["algorithm"]["default"] == "sha256"
    assert by_name["word_count"]["schema"]["required"] == ["upload_id"]
    assert "simulate" in by_name  # the built-in kinds stay


def test_checksum_uploads_reports_progress_logs_counts_and_writes_a_sha256sum_file(client, auth):
    token = auth.token_for("alice")
    first, second = b"a,b\n1,2\n" * 1000, b"hello\n"
    upload_bytes(client, token, first, "first.csv", "first")
    upload_bytes(client, token, second, "second.txt", "second")
    job = run_job(client, token, "checksum_uploads", {"upload_ids": ["first", "second"]})
    assert job["status"] == "completed", job
    expected = [hashlib.sha256(first).hexdigest(), hashlib.sha256(second).hexdigest()]
    assert [f["sha256"] for f in job["result"]["files"]] == expected
    assert job["counts"] == {"files_done": 2, "files_total": 2, "bytes_done": 8006, "bytes_total": 8006}
    events = events_of(client, token, job["id"])
    logs = [e["data"]["message"] for e in events if e["type"] == "job_log"]
    assert logs[0] == "hashing 2 file(s), 8006 bytes, with sha256"
    assert f"second.txt: {expected[1]}" in logs
    assert [e["data"]["files_done"] for e in events if e["type"] == "job_counts"] == [1, 2]
    headers = auth.headers(token)
    with client.get(f"/api/jobs/{job['id']}/artifacts/CHECKSUMS.sha256", headers=headers) as artifact:
        assert artifact.status_code == 200
        assert artifact.get_data(as_text=True) == f"{expected[0]}  first.csv\n{expected[1]}  second.txt\n"


def test_word_count_counts_case_folded_words_and_lists_the_top_ones(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, TEXT.encode(), "book.txt", "book")
    job = run_job(client, token, "word_count", {"upload_id": "book", "top": 3})
    assert job["status"] == "completed", job
    assert job["counts"] == {"lines": 3, "words": 16, "distinct_words": 10, "bytes_done": len(TEXT.encode())}
    assert job["result"]["top"] == [
        {"word": "the", "count": 4},
        {"word": "cat", "count": 2},
        {"word": "and", "count": 2},
    ]
    with client.get(f"/api/jobs/{job['id']}/artifacts/top_words.csv", headers=auth.headers(token)) as artifact:
        csv_text = artifact.get_data(as_text=True)
    assert csv_text.splitlines() == ["word,count", "the,4", "cat,2", "and,2"]


def test_word_count_joins_a_word_split_between_two_reads(client, auth):
    from herald_example_plugin.jobs import CHUNK

    token = auth.token_for("alice")
    content = b" " * (CHUNK - 3) + b"splitword tail\n"
    upload_bytes(client, token, content, "split.txt", "split")
    job = run_job(client, token, "word_count", {"upload_id": "split"})
    assert [t["word"] for t in job["result"]["top"]] == ["splitword", "tail"]


def test_word_count_fails_on_a_file_that_is_not_utf8(client, auth):
    token = auth.token_for("alice")
    upload_bytes(client, token, b"caf\xe9 au lait\n", "latin1.txt", "latin")
    job = run_job(client, token, "word_count", {"upload_id": "latin"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "not_text"


def test_a_submission_naming_an_upload_you_do_not_have_is_refused_with_400(client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    upload_bytes(client, alice, b"x\n", "mine.txt", "mine")
    response = client.post(
        "/api/jobs", json={"kind": "word_count", "params": {"upload_id": "mine"}}, headers=auth.headers(bob)
    )
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "unknown_reference" and error["details"]["path"] == "params.upload_id"
    response = client.post(
        "/api/jobs", json={"kind": "checksum_uploads", "params": {"upload_ids": []}}, headers=auth.headers(alice)
    )
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "validation_error"
