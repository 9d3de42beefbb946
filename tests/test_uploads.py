"""Uploads in-process (threading mode): storage, limits, names, ownership."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient


def stored_files(app: Flask) -> list[str]:
    """Everything under UPLOAD_DIR (which may not exist yet)."""
    directory = app.config["UPLOAD_DIR"]
    return os.listdir(directory) if os.path.isdir(directory) else []


def upload(client: FlaskClient, token: str, content: bytes, filename: str = "data.csv", **fields: str):
    data = {**fields, "file": (io.BytesIO(content), filename)}
    return client.post(
        "/api/uploads", data=data, headers={"Authorization": f"Bearer {token}"}, content_type="multipart/form-data"
    )


def test_upload_stores_the_file_with_its_sha256(app: Flask, client, auth):
    token = auth.token_for("alice")
    content = b"a,b\n1,2\n" * 1000
    response = upload(client, token, content, upload_id="first")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()["upload"]
    assert body["upload_id"] == "first" and body["size"] == len(content) and body["status"] == "completed"
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    stored = list(Path(app.config["UPLOAD_DIR"]).iterdir())
    assert len(stored) == 1 and stored[0].read_bytes() == content


def test_upload_is_a_completed_file_upload_job(client, auth):
    token = auth.token_for("alice")
    job_id = upload(client, token, b"x\n1\n").get_json()["upload"]["job_id"]
    job = client.get(f"/api/jobs/{job_id}", headers=auth.headers(token)).get_json()["job"]
    assert job["kind"] == "file_upload" and job["status"] == "completed"
    events = client.get(f"/api/jobs/{job_id}/events", headers=auth.headers(token)).get_json()["events"]
    assert [e["data"]["status"] for e in events if e["type"] == "job_status"] == ["pending", "running", "completed"]


def test_file_upload_kind_cannot_be_submitted_as_a_job(client, auth):
    token = auth.token_for("alice")
    response = client.post("/api/jobs", json={"kind": "file_upload", "params": {}}, headers=auth.headers(token))
    assert response.status_code == 400


def test_path_traversal_filename_is_stored_inside_upload_dir(app: Flask, client, auth, tmp_path: Path):
    token = auth.token_for("alice")
    response = upload(client, token, b"a\n1\n", filename="../../etc/passwd.csv")
    assert response.status_code == 201
    assert response.get_json()["upload"]["filename"] == "passwd.csv"
    upload_dir = Path(app.config["UPLOAD_DIR"]).resolve()
    assert [p.parent.resolve() for p in upload_dir.iterdir()] == [upload_dir]
    assert not (tmp_path.parent / "etc").exists()


def test_disallowed_extension_is_refused_and_nothing_stored(app: Flask, client, auth):
    token = auth.token_for("alice")
    response = upload(client, token, b"#!/bin/sh\n", filename="../../etc/passwd")
    assert response.status_code == 400
    assert "not accepted" in response.get_json()["error"]["message"]
    assert stored_files(app) == []


def test_over_limit_upload_is_413_json_and_leaves_nothing(app: Flask, client, auth):
    app.config["MAX_UPLOAD_BYTES"] = 1000
    token = auth.token_for("alice")
    response = upload(client, token, b"x" * 5000)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "upload_too_large"
    assert stored_files(app) == []


def test_chunked_upload_is_refused_with_411(client, auth):
    token = auth.token_for("alice")
    response = client.post(
        "/api/uploads",
        data=b"--b\r\n",
        headers={
            **auth.headers(token),
            "Transfer-Encoding": "chunked",
            "Content-Type": "multipart/form-data; boundary=b",
        },
    )
    assert response.status_code == 411
    assert response.get_json()["error"]["code"] == "length_required"


def test_repeated_upload_id_is_a_conflict(client, auth):
    token = auth.token_for("alice")
    assert upload(client, token, b"a\n1\n", upload_id="same").status_code == 201
    response = upload(client, token, b"a\n2\n", upload_id="same")
    assert response.status_code == 409 and response.get_json()["error"]["code"] == "upload_exists"


def test_upload_without_file_part_is_400(client, auth):
    token = auth.token_for("alice")
    response = client.post(
        "/api/uploads", data={"upload_id": "x"}, headers=auth.headers(token), content_type="multipart/form-data"
    )
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_upload"


def test_other_user_cannot_read_or_delete_an_upload(client, auth):
    alice, bob = auth.token_for("alice"), auth.token_for("bob")
    assert upload(client, alice, b"a\n1\n", upload_id="mine").status_code == 201
    assert client.get("/api/uploads/mine", headers=auth.headers(bob)).status_code == 404
    assert client.delete("/api/uploads/mine", headers=auth.headers(bob)).status_code == 404
    assert client.get("/api/uploads", headers=auth.headers(bob)).get_json()["uploads"] == []
    assert client.get("/api/uploads/mine", headers=auth.headers(alice)).status_code == 200


def test_owner_deletes_upload_and_its_file(app: Flask, client, auth):
    token = auth.token_for("alice")
    upload(client, token, b"a\n1\n", upload_id="gone")
    assert client.delete("/api/uploads/gone", headers=auth.headers(token)).status_code == 204
    assert client.get("/api/uploads/gone", headers=auth.headers(token)).status_code == 404
    assert stored_files(app) == []


def test_upload_left_receiving_by_a_dead_server_reads_as_failed(app: Flask, client, auth):
    from app.database import commit_session
    from app.extensions import db
    from app.models import Job, Upload

    token = auth.token_for("alice")
    job_id = upload(client, token, b"a\n1\n", upload_id="stale").get_json()["upload"]["job_id"]
    with app.app_context():  # what a crash mid-upload leaves once the start-up sweep ran
        db.session.get(Job, job_id).status = "failed"
        stale = db.session.query(Upload).filter_by(upload_id="stale").one()
        stale.status = "receiving"
        commit_session()
    assert client.get("/api/uploads/stale", headers=auth.headers(token)).get_json()["upload"]["status"] == "failed"
