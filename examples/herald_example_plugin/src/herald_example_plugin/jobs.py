"""Two job kinds over a user's uploads, registered with Herald's own ``@job_kind``.

Load them with ``HERALD_JOB_MODULES=herald_example_plugin.jobs`` (web processes and
Celery workers alike). They use only the surface a plugin may rely on:

- ``app.jobs.registry``: ``job_kind`` (name, params schema, title), ``unknown_reference``;
- ``app.jobs.context``: ``JobContext`` (``progress``, ``log``, ``update_counts``,
  ``raise_if_cancelled``, ``sleep``, ``yield_if_due``) and ``JobFailed``;
- ``app.data.uploads``: ``get_owned_upload``, ``upload_path``;
- ``app.data.artifacts``: ``artifact_dir``, ``record_artifact``;
- ``app.extensions.db``: to end the read transaction before the long part.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from app.data.artifacts import artifact_dir, record_artifact
from app.data.uploads import get_owned_upload, upload_path
from app.errors import NotFound
from app.extensions import db
from app.inputs import CLIENT_ID_REGEX
from app.jobs.context import JobContext, JobFailed
from app.jobs.registry import job_kind, unknown_reference

#: Bytes read at a time: big enough to hash fast, small enough to report and cancel often.
CHUNK = 256 * 1024
ALGORITHMS = ("sha256", "sha1", "md5", "blake2b")
#: A word: letters, digits, underscores and inner apostrophes or hyphens ("don't", "e-mail").
WORD = re.compile(r"\w+(?:['\-]\w+)*")
#: The last whitespace of a text: what follows it may be a word cut by the read.
LAST_SPACE = re.compile(r"\s\S*\Z")


@dataclass(frozen=True)
class StoredFile:
    """What a job needs of an upload, read once (the session is let go before the long part)."""

    upload_id: str
    filename: str
    size: int
    path: str


def _stored_files(owner_id: int, upload_ids: list[str]) -> list[StoredFile]:
    """The user's finished uploads, in the order asked; a job fails if one has gone."""
    try:
        found = []
        for upload_id in upload_ids:
            upload = get_owned_upload(owner_id, upload_id)
            if upload.status != "completed":
                raise JobFailed(f"upload {upload_id!r} is {upload.status}", code="upload_not_ready")
            found.append(StoredFile(upload.upload_id, upload.filename, upload.size, upload_path(upload)))
        return found
    except NotFound as exc:
        raise JobFailed(exc.message, code="upload_gone") from None
    finally:
        db.session.rollback()


def _check_uploads(owner_id: int, uploads: dict[str, str]) -> None:
    """Refuse at submit time (400 ``unknown_reference``, naming the param) an upload the
    user does not have; ``uploads`` maps each param's path to the upload id it holds."""
    for path, upload_id in uploads.items():
        try:
            upload = get_owned_upload(owner_id, upload_id)
        except NotFound:
            raise unknown_reference(path, f"no upload {upload_id!r}") from None
        if upload.status != "completed":
            raise unknown_reference(path, f"upload {upload_id!r} is {upload.status}")


def _precheck_checksums(owner_id: int, params: dict[str, Any]) -> None:
    _check_uploads(owner_id, {f"params.upload_ids[{i}]": upload_id for i, upload_id in enumerate(params["upload_ids"])})


def _precheck_words(owner_id: int, params: dict[str, Any]) -> None:
    _check_uploads(owner_id, {"params.upload_id": params["upload_id"]})


class Pace:
    """Keeps reading at ``bytes_per_second`` (0: as fast as the disk goes) while staying
    cancellable: the job sleeps through ``ctx.sleep``, which wakes on cancel."""

    def __init__(self, ctx: JobContext, bytes_per_second: int) -> None:
        self.ctx = ctx
        self.rate = bytes_per_second
        self.started = time.monotonic()
        self.done = 0

    def read(self, count: int) -> None:
        self.done += count
        if not self.rate:
            self.ctx.raise_if_cancelled()
            self.ctx.yield_if_due()
            return
        ahead = self.done / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            self.ctx.sleep(ahead)
        else:
            self.ctx.raise_if_cancelled()


@job_kind(
    "checksum_uploads",
    title="Checksum uploads",
    precheck=_precheck_checksums,
    schema={
        "required": ["upload_ids"],
        "properties": {
            "upload_ids": {
                "title": "Uploads",
                "type": "array",
                "items": {"type": "string", "pattern": CLIENT_ID_REGEX},
                "minItems": 1,
                "maxItems": 100,
                "uniqueItems": True,
                "description": "Ids of your finished uploads",
            },
            "algorithm": {
                "title": "Algorithm",
                "type": "string",
                "enum": list(ALGORITHMS),
                "default": "sha256",
                "description": "Hash function",
            },
            "max_bytes_per_second": {
                "title": "Read limit (bytes/s)",
                "type": "integer",
                "minimum": 0,
                "maximum": 10_000_000_000,
                "default": 0,
                "description": "Read at most this fast, sparing the disk for others (0: no limit)",
            },
        },
    },
)
def checksum_uploads(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Hash uploaded files and write a ``CHECKSUMS.<algorithm>`` file in ``sha256sum`` format.

    Progress counts bytes over all files; counts say files and bytes done; a log line per
    file. The artifact is written only once every file is hashed (a cancelled run leaves none).
    """
    algorithm: str = params["algorithm"]
    files = _stored_files(ctx.owner_id, params["upload_ids"])
    total = sum(f.size for f in files)
    pace = Pace(ctx, params["max_bytes_per_second"])
    ctx.log(f"hashing {len(files)} file(s), {total} bytes, with {algorithm}")
    digests: list[dict[str, Any]] = []
    for index, stored in enumerate(files, start=1):
        digest = hashlib.new(algorithm)
        with open(stored.path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
                pace.read(len(chunk))
                ctx.progress(pace.done, total, f"{stored.filename} ({index}/{len(files)})")
        digests.append({"upload_id": stored.upload_id, "filename": stored.filename, "size": stored.size})
        digests[-1][algorithm] = digest.hexdigest()
        ctx.log(f"{stored.filename}: {digest.hexdigest()}")
        counts = {"files_done": index, "files_total": len(files), "bytes_done": pace.done, "bytes_total": total}
        ctx.update_counts(counts)
    name = f"CHECKSUMS.{algorithm}"
    with open(os.path.join(artifact_dir(ctx.job_id), name), "w", encoding="utf-8") as out:
        for entry in digests:
            out.write(f"{entry[algorithm]}  {entry['filename']}\n")
    record_artifact(ctx.job_id, name, "text/plain; charset=utf-8")
    return {"algorithm": algorithm, "files": digests, "artifact": name}


@job_kind(
    "word_count",
    title="Count words",
    precheck=_precheck_words,
    schema={
        "required": ["upload_id"],
        "properties": {
            "upload_id": {
                "title": "Upload",
                "type": "string",
                "pattern": CLIENT_ID_REGEX,
                "description": "Id of a finished upload of UTF-8 text",
            },
            "top": {
                "title": "Top words",
                "type": "integer",
                "minimum": 1,
                "maximum": 10_000,
                "default": 20,
                "description": "How many of the most frequent words the artifact lists",
            },
            "min_length": {
                "title": "Shortest word",
                "type": "integer",
                "minimum": 1,
                "maximum": 50,
                "default": 1,
                "description": "Words shorter than this are not counted",
            },
        },
    },
)
def word_count(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Count the words of an uploaded text file (case-folded) and list the most frequent.

    Streams the file (a word split between two reads is joined), reports bytes as progress
    and running totals as counts, and writes ``top_words.csv``. Invalid UTF-8 fails the job.
    """
    (stored,) = _stored_files(ctx.owner_id, [params["upload_id"]])
    min_length: int = params["min_length"]
    words: Counter[str] = Counter()
    lines = 0
    done = 0
    decoder = codecs.getincrementaldecoder("utf-8")()
    tail = ""
    ends_open = False
    ctx.log(f"counting words in {stored.filename} ({stored.size} bytes)")

    def count(text: str) -> None:
        words.update(w.casefold() for w in WORD.findall(text) if len(w) >= min_length)

    def totals() -> dict[str, int]:
        return {"lines": lines, "words": sum(words.values()), "distinct_words": len(words), "bytes_done": done}

    try:
        with open(stored.path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                done += len(chunk)
                decoded = decoder.decode(chunk)
                lines += decoded.count("\n")
                if decoded:
                    ends_open = not decoded.endswith("\n")
                text = tail + decoded
                # The last word may go on in the next read: keep it back.
                space = LAST_SPACE.search(text)
                cut = space.start() + 1 if space else 0
                count(text[:cut])
                tail = text[cut:]
                ctx.raise_if_cancelled()
                ctx.progress(done, stored.size, f"{len(words)} distinct words so far")
                if done % (16 * CHUNK) == 0:
                    ctx.update_counts(totals())
            count(tail + decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        raise JobFailed(f"{stored.filename} is not UTF-8 text (byte {exc.start} of a read)", code="not_text") from None
    if ends_open:
        lines += 1  # a last line without its newline
    ctx.update_counts(totals())
    top = words.most_common(params["top"])
    name = "top_words.csv"
    with open(os.path.join(artifact_dir(ctx.job_id), name), "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["word", "count"])
        writer.writerows(top)
    record_artifact(ctx.job_id, name, "text/csv; charset=utf-8")
    ctx.log(f"{sum(words.values())} words, {len(words)} distinct, {lines} lines")
    return {**totals(), "top": [{"word": w, "count": c} for w, c in top[:10]], "artifact": name}
