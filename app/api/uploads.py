"""``/api/uploads``: send a file (streamed to disk, live progress), list, read, delete your uploads."""

from __future__ import annotations

from typing import Any

from flask import Response, after_this_request, request
from sqlalchemy import select

from ..auth.tokens import current_user
from ..data.uploads import delete_upload, get_owned_upload, reconcile_upload
from ..errors import HeraldError, PayloadTooLarge
from ..extensions import db
from ..inputs import CLIENT_ID_REGEX
from ..jobs.upload_receiver import LengthRequired, UploadReceiver
from ..models import Upload
from . import bp
from .schema import OFFSET, Body, integer, spec

UPLOAD_SCHEMA = {"type": "object", "required": ["upload"], "properties": {"upload": {"type": "object"}}}
CLIENT_ID = {"type": "string", "pattern": CLIENT_ID_REGEX}
FORM_SCHEMA = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "upload_id": CLIENT_ID,
        "client_id": CLIENT_ID,
        "file": {"type": "string", "format": "binary"},
    },
}


def _close_connection(response: Response) -> Response:
    """Refused before reading: close rather than wait for a body we will not read."""
    response.headers["Connection"] = "close"
    return response


@bp.post("/uploads")
@spec(
    # Streamed by ``UploadReceiver`` (``read=None``), which also takes the two ids from form
    # fields placed before the file and checks them by the same rule.
    body=Body(FORM_SCHEMA, media_types=("multipart/form-data",), read=None),
    query={"upload_id": CLIENT_ID, "client_id": CLIENT_ID},
    responses={201: UPLOAD_SCHEMA, 409: None, 411: None, 413: None},
)
def create_upload(upload_id: str | None, client_id: str | None) -> tuple[dict[str, Any], int]:
    """Upload one file (multipart field ``file``); ``file_upload_progress`` streams while it arrives."""
    try:
        receiver = UploadReceiver(current_user().id, request)
    except (LengthRequired, PayloadTooLarge):
        after_this_request(_close_connection)
        raise
    try:
        upload = receiver.receive()
    except HeraldError as exc:
        if exc.code == "upload_cancelled":  # the client may still be sending
            after_this_request(_close_connection)
        raise
    return {"upload": upload.to_dict()}, 201


@bp.get("/uploads")
@spec(
    query={"limit": integer(50, minimum=1, maximum=500), "offset": OFFSET},
    responses={200: {"type": "object", "required": ["uploads"], "properties": {"uploads": {"type": "array"}}}},
)
def list_uploads(limit: int, offset: int) -> dict[str, Any]:
    """Your uploads, newest first."""
    query = (
        select(Upload)
        .where(Upload.owner_id == current_user().id)
        .order_by(Upload.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return {"uploads": [reconcile_upload(u).to_dict() for u in db.session.scalars(query)]}


@bp.get("/uploads/<upload_id>")
@spec(responses={200: UPLOAD_SCHEMA})
def get_upload(upload_id: str) -> dict[str, Any]:
    """One of your uploads (404 for others' uploads, same as missing)."""
    return {"upload": get_owned_upload(current_user().id, upload_id).to_dict()}


@bp.delete("/uploads/<upload_id>")
@spec(responses={204: None, 409: None})
def remove_upload(upload_id: str) -> tuple[str, int]:
    """Delete one of your uploads and its file (409 while it is still arriving)."""
    delete_upload(get_owned_upload(current_user().id, upload_id))
    return "", 204
