"""Helpers for upload/import/report tests: upload a file, run a job to its end."""

from __future__ import annotations

import io
from typing import Any

from flask.testing import FlaskClient

from tests.helpers import wait_for


def upload_bytes(client: FlaskClient, token: str, content: bytes, filename: str, upload_id: str) -> dict[str, Any]:
    """Upload through the real route; returns the upload."""
    response = client.post(
        "/api/uploads",
        data={"upload_id": upload_id, "file": (io.BytesIO(content), filename)},
        headers={"Authorization": f"Bearer {token}"},
        content_type="multipart/form-data",
    )
    assert response.status_code == 201, response.get_json()
    return dict(response.get_json()["upload"])


def run_job(client: FlaskClient, token: str, kind: str, params: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    """Submit a job and wait for its final snapshot."""
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/jobs", json={"kind": kind, "params": params}, headers=headers)
    assert response.status_code == 202, response.get_json()
    job_id = response.get_json()["job"]["id"]

    def finished() -> dict[str, Any] | None:
        job = client.get(f"/api/jobs/{job_id}", headers=headers).get_json()["job"]
        return job if job["status"] in ("completed", "failed", "cancelled") else None

    return dict(wait_for(finished, timeout=timeout, interval=0.05))
