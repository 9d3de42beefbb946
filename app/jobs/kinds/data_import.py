"""``data_import``: parse an uploaded file streaming, validate rows, store them in pages.

Bad rows are counted and reported (first 100, with file line, column and reason) and never
stop the import. A broken file (bad encoding, wrong column count, no header) fails the job
with code ``broken_file``, a file past an ``IMPORT_*`` limit (too many rows, a record too
long, an XLSX that would inflate too far) with ``file_too_large``; both roll back: the
rows written so far never become visible and are deleted, and a dataset this import
created is removed again. Cancelling rolls back the same way. Importing into an existing
dataset needs ``mode: append|replace`` (409 ``dataset_exists`` at submit time otherwise).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from itertools import islice
from typing import Any

from flask import current_app
from sqlalchemy import select

from ...data.artifacts import artifact_dir, record_artifact
from ...data.datasets import (
    DATASET_NAME_PATTERN,
    RowWriter,
    create_dataset,
    delete_dataset_if_empty,
    discard_import_rows,
    find_dataset,
    make_import_live,
    reconcile_interrupted_imports,
)
from ...data.reports import CONTENT_TYPES, escape_cell
from ...data.tables import (
    COLUMN_TYPES,
    FORMATS,
    INFER_ROWS,
    BrokenFile,
    Column,
    CsvReader,
    FileTooLarge,
    RowRejected,
    TableLimits,
    TableReader,
    estimate_rows,
    format_of,
    infer_columns,
    open_table,
    row_converter,
    text_row_converter,
)
from ...data.uploads import get_owned_upload, upload_path
from ...errors import Conflict, NotFound, ValidationFailed
from ...extensions import db
from ...inputs import CLIENT_ID_REGEX
from ...models import Job, JobStatus
from ..context import JobContext, JobFailed
from ..registry import job_kind, unknown_reference

#: Row errors kept in progress and the result.
MAX_ERRORS = 100
#: Rows between progress reports.
REPORT_EVERY = 500
#: Rejected rows written to the ``rejects.csv`` artifact (a file of nothing but bad rows
#: stops growing here; the counts still count them all).
MAX_REJECTS_FILED = 1_000_000
REJECTS_ARTIFACT = "rejects.csv"


class RejectsFile:
    """Every rejected row (line, column, reason) as CSV in the job's artifact folder,
    opened at the first reject; ``keep()`` records it as an artifact, ``discard()`` removes it."""

    def __init__(self, job_id: int) -> None:
        self.job_id = job_id
        self.path: str | None = None
        self.fh: Any = None
        self.writer: Any = None
        self.rows = 0

    def add(self, line: int, column: str | None, reason: str) -> None:
        if self.rows >= MAX_REJECTS_FILED:
            return
        if self.writer is None:
            self.path = os.path.join(artifact_dir(self.job_id), REJECTS_ARTIFACT)
            self.fh = open(self.path, "w", encoding="utf-8", newline="")  # closed by keep() or discard()
            self.writer = csv.writer(self.fh)
            self.writer.writerow(["line", "column", "reason"])
        self.writer.writerow([line, escape_cell(column or ""), escape_cell(reason)])
        self.rows += 1

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None

    def keep(self) -> str | None:
        """Record the file as the job's ``rejects.csv``; its name, or None when no row was rejected."""
        self.close()
        if self.path is None:
            return None
        record_artifact(self.job_id, REJECTS_ARTIFACT, CONTENT_TYPES["csv"])
        return REJECTS_ARTIFACT

    def discard(self) -> None:
        self.close()
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)


COLUMN_SPEC = {
    "oneOf": [
        {"type": "string", "enum": list(COLUMN_TYPES)},
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"enum": list(COLUMN_TYPES)}, "required": {"type": "boolean"}},
            "additionalProperties": False,
        },
    ]
}


def precheck(owner_id: int, params: dict[str, Any]) -> None:
    """Refuse at submit time: unknown upload (400 naming the field), unfinished upload,
    dataset exists without a mode (409)."""
    try:
        upload = get_owned_upload(owner_id, params["upload_id"])
    except NotFound as exc:
        raise unknown_reference("params.upload_id", exc.message) from None
    if upload.status != "completed":
        raise Conflict(f"upload {upload.upload_id!r} is {upload.status}, not completed", code="upload_not_ready")
    if (params.get("format") or format_of(upload.filename)) is None:
        raise ValidationFailed(
            f"cannot tell the format of {upload.filename!r}; give format: csv, jsonl or xlsx",
            details={"path": "params.format"},
        )
    if params.get("mode") is None and find_dataset(owner_id, params["dataset"]) is not None:
        raise Conflict(
            f"dataset {params['dataset']!r} already exists; import with mode 'append' or 'replace'",
            code="dataset_exists",
        )


def _outcome(params: dict[str, Any], result: Any) -> str:
    """More rows rejected than ``max_rejected_rows`` (when given) is a completed import with failures."""
    limit = params.get("max_rejected_rows")
    rejected = int(result.get("rejected_rows") or 0) if isinstance(result, dict) else 0
    return "failures" if limit is not None and rejected > int(limit) else "succeeded"


@job_kind(
    "data_import",
    title="Data import",
    progress_type="data_import_progress",
    precheck=precheck,
    outcome=_outcome,
    schema={
        "required": ["upload_id", "dataset"],
        "properties": {
            "upload_id": {
                "type": "string",
                "pattern": CLIENT_ID_REGEX,
                "title": "Uploaded file",
                "description": "A file sent on the Upload page",
            },
            "dataset": {
                "type": "string",
                "pattern": DATASET_NAME_PATTERN,
                "title": "Dataset",
                "description": "Dataset to import into (letters, digits, _ . -); created when new",
            },
            "format": {"enum": list(FORMATS), "title": "Format", "description": "Default: from the file name"},
            "mode": {
                "enum": ["append", "replace"],
                "title": "Into an existing dataset",
                "description": "Append the rows or replace the dataset's rows; required when the dataset exists",
            },
            "max_rejected_rows": {
                "type": "integer",
                "minimum": 0,
                "title": "Rejected rows allowed",
                "description": "More rejected rows than this marks the import 'completed with failures'",
            },
            "schema": {
                "type": "object",
                "title": "Column types",
                "description": "Column types {column: type or {type, required}}; inferred when absent",
                "additionalProperties": COLUMN_SPEC,
            },
        },
    },
)
def data_import(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Import an uploaded CSV, JSON-lines or XLSX file into a dataset, row errors reported."""
    upload = get_owned_upload(ctx.owner_id, params["upload_id"])
    path, filename = upload_path(upload), upload.filename
    fmt = params.get("format") or format_of(filename) or "csv"
    mode = params.get("mode")
    existing = find_dataset(ctx.owner_id, params["dataset"])
    existing_id = existing.id if existing is not None else None
    existing_columns = [Column.from_dict(c) for c in existing.columns] if existing is not None else None
    db.session.remove()
    if existing is not None and mode is None:
        raise JobFailed(f"dataset {params['dataset']!r} already exists; give mode", code="dataset_exists")
    if not os.path.exists(path):
        raise JobFailed(f"the file of upload {params['upload_id']!r} is gone", code="upload_missing")

    limits = TableLimits.from_config(current_app.config)
    estimate = estimate_rows(path, fmt, ctx.yield_if_due)
    dataset_id: int | None = existing_id
    created = False
    rejects = RejectsFile(ctx.job_id)
    try:
        with open_table(path, fmt, limits, pause=ctx.yield_if_due, in_thread=ctx.run_in_thread) as table:
            if estimate is None:
                estimate = max(0, int(getattr(table, "max_row", 1) or 1) - 1)
            rows = table.rows()
            sample = list(islice(rows, INFER_ROWS))
            columns = _columns_for(table, sample, params.get("schema"), existing_columns)
            if dataset_id is None:
                dataset_id = create_dataset(ctx.owner_id, params["dataset"], columns)
                created = True
            writer = RowWriter(dataset_id, ctx.job_id)
            counts = _import_rows(ctx, table, sample, rows, columns, writer, estimate, rejects)
        rejects.close()
        replaced = make_import_live(
            dataset_id, ctx.job_id, replace=(mode == "replace"), row_count=counts["imported_rows"]
        )
    except BaseException as exc:
        rejects.discard()
        discard_import_rows([ctx.job_id])
        if created and dataset_id is not None:
            delete_dataset_if_empty(dataset_id)
        if isinstance(exc, FileTooLarge):
            raise JobFailed(f"file too large, import rolled back: {exc.message}", code="file_too_large") from None
        if isinstance(exc, BrokenFile):
            raise JobFailed(f"broken file, import rolled back: {exc.message}", code="broken_file") from None
        raise
    if replaced:
        discard_import_rows(replaced)
    counts["rejects_artifact"] = rejects.keep()
    counts["rejects_filed"] = rejects.rows
    ctx.log(
        f"imported {counts['imported_rows']} of {counts['processed_rows']} rows into {params['dataset']!r}"
        f" ({counts['rejected_rows']} rejected)"
    )
    return {
        "dataset": params["dataset"],
        "mode": mode or "create",
        "format": fmt,
        "columns": [c.to_dict() for c in columns],
        **counts,
    }


def _columns_for(
    table: TableReader,
    sample: list[tuple[int, Any]],
    schema: dict[str, Any] | None,
    existing: list[Column] | None,
) -> list[Column]:
    """The import's columns: the existing dataset's, the given schema, or inferred."""
    header = table.header
    if existing is not None:
        names = [c.name for c in existing]
        if sorted(names) != sorted(header):
            raise JobFailed(f"the file's columns {header} do not match the dataset's {names}", code="schema_mismatch")
        return existing
    if schema:
        unknown = [name for name in schema if name not in header]
        if unknown:
            raise JobFailed(f"schema names column {unknown[0]!r}, which the file does not have", code="schema_mismatch")
    clean = [values for _line, values in sample if not isinstance(values, RowRejected)]
    inferred = infer_columns(header, clean)
    if not schema:
        return inferred
    columns = []
    for column in inferred:
        spec = schema.get(column.name)
        if spec is None:
            columns.append(column)
        elif isinstance(spec, str):
            columns.append(Column(column.name, spec))
        else:
            columns.append(Column(column.name, spec["type"], bool(spec.get("required", False))))
    return columns


def _import_rows(
    ctx: JobContext,
    table: TableReader,
    sample: list[tuple[int, Any]],
    rows: Any,
    columns: list[Column],
    writer: RowWriter,
    estimate: int,
    rejects: RejectsFile,
) -> dict[str, Any]:
    """The hot loop: convert, buffer, write in batches, report; returns the counts."""
    convert = _converter_for(table, columns)
    errors: list[dict[str, Any]] = []
    processed = rejected = 0
    total = max(estimate, 1)

    def report() -> None:
        nonlocal total
        total = max(total, processed)
        ctx.progress(
            processed,
            total,
            processed_rows=processed,
            total_rows=total,
            imported_rows=writer.accepted,
            rejected_rows=rejected,
            errors=list(errors),
        )

    report()
    add = writer.add
    for source in (sample, rows):
        for line, values in source:
            processed += 1
            try:
                typed = convert(values)
            except RowRejected as bad:
                rejected += 1
                rejects.add(line, bad.column, bad.reason)
                if len(errors) < MAX_ERRORS:
                    errors.append({"row": line, "column": bad.column or None, "reason": bad.reason})
            else:
                if add(typed):
                    ctx.raise_if_cancelled()
                    ctx.yield_now()
            if processed % REPORT_EVERY == 0:
                report()
    writer.flush()
    total = processed
    report()
    return {
        "processed_rows": processed,
        "total_rows": processed,
        "imported_rows": writer.written,
        "rejected_rows": rejected,
        "errors": errors,
    }


def _converter_for(table: TableReader, columns: list[Column]) -> Callable[[Any], list[Any]]:
    """Raw row → typed values in the dataset's column order (raises ``RowRejected``).

    CSV gets the compiled text converter; JSON lines and XLSX the exact one, also passing
    on the rows their reader already rejected (invalid JSON, unknown keys).
    """
    order = [table.header.index(c.name) for c in columns]
    csv_text = isinstance(table, CsvReader)
    convert = text_row_converter(columns) if csv_text else row_converter(columns)
    if order != list(range(len(order))):
        inner = convert

        def convert(values: Any) -> list[Any]:
            if isinstance(values, RowRejected):
                raise values
            return inner([values[i] for i in order])

    elif not csv_text:
        inner = convert

        def convert(values: Any) -> list[Any]:
            if isinstance(values, RowRejected):
                raise values
            return inner(values)

    return convert


def clean_interrupted_imports() -> int:
    """After jobs were settled ``interrupted`` (a server killed mid-import): discard the
    rows their imports wrote and the datasets they created; returns datasets removed."""
    active_statuses = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
    active = db.session.execute(
        select(Job.id, Job.owner_id, Job.params).where(Job.kind == "data_import", Job.status.in_(active_statuses))
    ).all()
    db.session.rollback()
    jobs = {job_id for job_id, _, _ in active}
    targets = {(owner_id, str((params or {}).get("dataset"))) for _, owner_id, params in active}
    return reconcile_interrupted_imports(jobs, targets)
