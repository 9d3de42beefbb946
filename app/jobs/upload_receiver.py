"""Receiving an upload: stream ``request.stream`` through a multipart decoder to disk.

The body is read in chunks, hashed as it is written, and never held in memory. The upload
is a ``file_upload`` job driven by the request itself rather than by the runner, which is
why it lives with the runner and not with the upload records (``app/data/uploads.py``,
which job kinds read and which must not reach a transport): its status events and
coalesced ``file_upload_progress`` ticks (to the uploader's client room and user room) go
through the pipeline like any job's. Under eventlet a fast client keeps the socket
readable, so the loop yields every few tens of milliseconds to let progress leave while
bytes arrive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from datetime import timedelta
from typing import IO, Any

from flask import Request, current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.exceptions import ClientDisconnected
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.utils import secure_filename

from ..data.uploads import upload_path
from ..database import commit_session
from ..errors import BadRequest, Conflict, HeraldError, PayloadTooLarge, ValidationFailed
from ..extensions import db, socketio
from ..inputs import check_client_id
from ..models import Job, JobStatus, Upload, utcnow
from ..realtime.pipeline import Fence, FenceRefused, pipeline
from ..realtime.rooms import client_room, user_room
from .context import JobContext
from .runner import runner

log = logging.getLogger(__name__)

#: Bytes read from the request per step.
READ_CHUNK = 64 * 1024
#: Longest time the receive loop runs without letting other greenlets in.
YIELD_EVERY = 0.02
#: How often the receive loop looks for a cancel request (``POST /api/jobs/<id>/cancel``).
CANCEL_CHECK_EVERY = 0.5
#: Largest form field (``upload_id``, ``client_id``) accepted before the file part.
MAX_FIELD_BYTES = 1024


class LengthRequired(HeraldError):
    """A body without Content-Length (chunked): refused, the server cannot check its size."""

    status = 411
    code = "length_required"


class UploadCancelled(Exception):
    """The upload's job was cancelled while the body was arriving."""


class UploadFailed(Exception):
    """The upload stopped after it had started (disconnect, bad multipart)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_request_size(request: Request) -> int:
    """Content-Length, checked before any byte of the body is read (411 / 413)."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        raise LengthRequired("chunked uploads are not accepted: send Content-Length")
    length = request.content_length
    if length is None:
        raise LengthRequired("Content-Length is required for uploads")
    limit = int(current_app.config["MAX_UPLOAD_BYTES"])
    if length > limit:
        raise PayloadTooLarge(
            f"the upload is {length} bytes; the limit is {limit} bytes",
            code="upload_too_large",
            details={"max_bytes": limit, "content_length": length},
        )
    return length


class UploadReceiver:
    """One upload request: parse, store, report; always ends the job in a final state."""

    def __init__(self, owner_id: int, request: Request) -> None:
        self.owner_id = owner_id
        self.request = request
        self.total_bytes = check_request_size(request)
        boundary = request.mimetype_params.get("boundary")
        if request.mimetype != "multipart/form-data" or not boundary:
            raise BadRequest("send the file as multipart/form-data with a 'file' part", code="invalid_upload")
        self.decoder = MultipartDecoder(boundary.encode("latin-1"), max_form_memory_size=4 * READ_CHUNK + 65536)
        self.fields: dict[str, str] = {
            k: v for k, v in request.args.items() if k in ("upload_id", "client_id") and isinstance(v, str)
        }
        self.received = 0
        self.upload: Upload | None = None
        self.job_id: int | None = None
        self.ctx: JobContext | None = None
        self.fence = Fence()
        self._file: IO[bytes] | None = None
        self._temp_path: str | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._file_done = False

    # -- the loop ---------------------------------------------------------------------

    def receive(self) -> Upload:
        """Read the whole body; returns the stored upload or raises a ``HeraldError``."""
        try:
            self._read_body()
            if self.upload is None:
                raise BadRequest("the form has no file part named 'file'", code="invalid_upload")
            if not self._file_done:
                raise UploadFailed("invalid_upload", "the multipart body ended inside the file part")
            return self._complete()
        except ClientDisconnected:
            self._fail("client_disconnected", "the client disconnected before the upload finished")
            raise BadRequest("the client disconnected before the upload finished", code="client_disconnected") from None
        except UploadFailed as exc:
            self._fail(exc.code, exc.message)
            raise BadRequest(exc.message, code=exc.code) from None
        except UploadCancelled:
            self._fail("upload_cancelled", "the upload was cancelled", cancelled=True)
            raise Conflict("the upload was cancelled", code="upload_cancelled") from None
        except HeraldError as exc:
            self._fail(exc.code, exc.message)
            raise
        except ValueError as exc:  # the multipart decoder's complaints
            self._fail("invalid_upload", f"malformed multipart body: {exc}")
            raise BadRequest(f"malformed multipart body: {exc}", code="invalid_upload") from None
        except BaseException:
            self._fail("upload_error", "the upload failed on the server")
            raise

    def _read_body(self) -> None:
        stream = self.request.stream
        decoder = self.decoder
        last_yield = last_cancel_check = time.monotonic()
        part: str | None = None  # "field:<name>", "file" or "skip"
        field_value = bytearray()
        while True:
            try:
                chunk = stream.read(READ_CHUNK) if self.received < self.total_bytes else b""
            except OSError:  # gevent: "unexpected end of file while reading request"
                raise ClientDisconnected() from None
            if chunk:
                self.received += len(chunk)
                decoder.receive_data(chunk)
            else:
                if self.received < self.total_bytes:
                    raise ClientDisconnected()
                decoder.receive_data(None)
            while True:
                event = decoder.next_event()
                if isinstance(event, NeedData):
                    break
                if isinstance(event, Epilogue):
                    return
                if isinstance(event, Field):
                    part, field_value = f"field:{event.name}", bytearray()
                elif isinstance(event, File):
                    if event.name == "file" and self.upload is None:
                        self._start(event.filename or "", event.headers.get("Content-Type"))
                        part = "file"
                    elif event.name == "file":
                        raise BadRequest("send one file per upload", code="invalid_upload")
                    else:
                        part = "skip"
                elif isinstance(event, Data):
                    if part == "file":
                        self._write(event.data)
                        if not event.more_data:
                            self._finish_file()
                    elif part is not None and part.startswith("field:"):
                        field_value += event.data
                        if len(field_value) > MAX_FIELD_BYTES:
                            raise ValidationFailed(f"form field {part[6:]!r} is too long")
                        if not event.more_data and self.upload is None:
                            self.fields[part[6:]] = field_value.decode("utf-8", "replace")
            if self.ctx is not None:
                self.ctx.progress(
                    self.received,
                    self.total_bytes,
                    received_bytes=self.received,
                    total_bytes=self.total_bytes,
                )
            now = time.monotonic()
            if now - last_yield >= YIELD_EVERY:
                last_yield = now
                socketio.sleep(0)
            if self.job_id is not None and now - last_cancel_check >= CANCEL_CHECK_EVERY:
                last_cancel_check = now
                if self._cancel_requested():
                    raise UploadCancelled()
            if not chunk:
                return

    def _cancel_requested(self) -> bool:
        with db.engine.connect() as conn:
            return bool(conn.execute(select(Job.cancel_requested).where(Job.id == self.job_id)).scalar())

    # -- steps ------------------------------------------------------------------------

    def _start(self, raw_filename: str, content_type: str | None) -> None:
        """The file part begins: check names, create the job and the row, open a temp file."""
        filename = secure_filename(os.path.basename(raw_filename.replace("\\", "/"))) or secure_filename(raw_filename)
        if not filename:
            raise ValidationFailed("the file name is empty or unusable", details={"path": "file"})
        ext = os.path.splitext(filename)[1].lower().lstrip(".")
        allowed = [e.lower() for e in current_app.config["UPLOAD_ALLOWED_EXTENSIONS"]]
        if ext not in allowed:
            raise ValidationFailed(
                f"files of type {('.' + ext) if ext else '(no extension)'!r} are not accepted; allowed: "
                + ", ".join(allowed),
                details={"path": "file", "allowed": allowed},
            )
        upload_id = self.fields.get("upload_id") or uuid.uuid4().hex
        client_id = self.fields.get("client_id") or None
        check_client_id(upload_id, "upload_id")
        if client_id is not None:
            check_client_id(client_id)
        exists = db.session.scalar(
            select(Upload.id).where(Upload.owner_id == self.owner_id, Upload.upload_id == upload_id)
        )
        if exists is not None:
            raise Conflict(f"upload {upload_id!r} already exists", code="upload_exists")
        job = Job(
            kind="file_upload",
            owner_id=self.owner_id,
            status=JobStatus.PENDING.value,
            params={"upload_id": upload_id, "filename": filename, "total_bytes": self.total_bytes},
            client_id=client_id,
            worker_id=runner.worker_id,  # this request holds it: the runner's heartbeat renews the lease
            lease_expires_at=utcnow() + timedelta(seconds=runner.lease_seconds),
            created_at=utcnow(),
        )
        upload = Upload(
            owner_id=self.owner_id,
            upload_id=upload_id,
            filename=filename,
            stored_name=f"{uuid.uuid4().hex}.upload",
            content_type=(content_type or None),
            status="receiving",
            created_at=utcnow(),
        )
        # The temp file exists before the row does: a "receiving" row always has its file,
        # even when a PostgreSQL commit yields and the process dies right after it.
        directory = current_app.config["UPLOAD_DIR"]
        os.makedirs(directory, exist_ok=True)
        self._temp_path = os.path.join(directory, upload.stored_name + ".part")
        self._file = open(self._temp_path, "xb")  # noqa: SIM115  (closed in _finish_file/_fail)
        db.session.add(job)
        db.session.add(upload)
        try:
            db.session.flush()
            upload.job_id = job.id
            commit_session()
        except IntegrityError:
            db.session.rollback()  # receive() -> _fail() removes the temp file
            raise Conflict(f"upload {upload_id!r} already exists", code="upload_exists") from None
        self.upload, self.job_id = upload, job.id
        self.fence = Fence.held_by(runner.worker_id)
        pipeline.publish_status(job.id, JobStatus.PENDING.value, fence=self.fence)
        pipeline.publish_status(job.id, JobStatus.RUNNING.value, fence=self.fence, started_at=utcnow())
        ctx = JobContext(
            job_id=job.id,
            owner_id=self.owner_id,
            kind="file_upload",
            params=dict(job.params),
            client_id=client_id,
            pipeline=pipeline,
            fence=self.fence,
            progress_type="file_upload_progress",
        )
        rooms = [user_room(self.owner_id)]
        if client_id:
            rooms.insert(0, client_room(self.owner_id, client_id))
        ctx.notify_rooms(*rooms)
        ctx.progress(
            self.received,
            self.total_bytes,
            upload_id=upload_id,
            filename=filename,
            received_bytes=self.received,
            total_bytes=self.total_bytes,
        )
        self.ctx = ctx

    def _write(self, data: bytes) -> None:
        if data and self._file is not None:
            self._file.write(data)
            self._hash.update(data)
            self._size += len(data)

    def _finish_file(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._file_done = True

    def _complete(self) -> Upload:
        """Move the file into place, store size and hash, end the job ``completed``."""
        upload = self.upload
        assert upload is not None and self.job_id is not None and self._temp_path is not None
        os.replace(self._temp_path, upload_path(upload))
        self._temp_path = None
        upload.size = self._size
        upload.sha256 = self._hash.hexdigest()
        upload.status = "completed"
        commit_session()
        if self.ctx is not None:
            self.ctx.progress(self.total_bytes, self.total_bytes, received_bytes=self.received)
        result = upload.to_dict()
        self._end(JobStatus.COMPLETED, result=result)
        db.session.refresh(upload)
        return upload

    def _fail(self, code: str, message: str, *, cancelled: bool = False) -> None:
        """Remove the partial file; mark the upload and its job failed (or cancelled)."""
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._temp_path is not None:
            try:
                os.unlink(self._temp_path)
            except FileNotFoundError:
                pass
            self._temp_path = None
        if self.upload is None or self.job_id is None:
            return
        try:
            db.session.rollback()
            self.upload.status = "cancelled" if cancelled else "failed"
            commit_session()
        finally:
            if cancelled:
                self._end(JobStatus.CANCELLED)
            else:
                self._end(JobStatus.FAILED, error={"code": code, "message": message})

    def _end(self, status: JobStatus, **fields: Any) -> None:
        assert self.job_id is not None
        pipeline.flush(self.job_id)
        try:
            pipeline.publish_status(self.job_id, status.value, fence=self.fence, finished_at=utcnow(), **fields)
        except FenceRefused:
            log.warning("upload job %s was settled elsewhere; its end is not written", self.job_id)
        finally:
            pipeline.forget(self.job_id)
            self.ctx = None
