"""Dataset storage: lookups, batched row inserts, making an import live, rolling one back.

Rows are written with the driver's ``executemany`` in short transactions under the write
lock (never yielding inside one). An import's rows stay invisible until
:func:`make_import_live` adds its job id to the dataset in one transaction; a failed or
cancelled import is rolled back by :func:`discard_import_rows`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import delete, insert, select, update

from ..database import write_transaction
from ..errors import NotFound
from ..extensions import db, socketio
from ..models import Dataset, DatasetRow, utcnow
from .tables import Column

DATASET_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
_DATASET_NAME = re.compile(DATASET_NAME_PATTERN)
#: Rows deleted per transaction when discarding (keeps each lock hold short).
DELETE_CHUNK = 5000
ROWS = DatasetRow.__table__


def find_dataset(owner_id: int, name: str) -> Dataset | None:
    """The user's dataset called ``name``, or None."""
    return db.session.scalar(select(Dataset).where(Dataset.owner_id == owner_id, Dataset.name == name))


def get_owned_dataset(owner_id: int, name: str) -> Dataset:
    """The user's dataset, or ``NotFound`` (also for other users' datasets)."""
    dataset = find_dataset(owner_id, name) if _DATASET_NAME.match(name) else None
    if dataset is None:
        raise NotFound(f"dataset {name!r} not found")
    return dataset


def create_dataset(owner_id: int, name: str, columns: list[Column]) -> int:
    """Create an empty dataset (no live imports yet); returns its id."""
    now = utcnow()
    with write_transaction() as conn:
        result = conn.execute(
            insert(Dataset).values(
                owner_id=owner_id,
                name=name,
                columns=[c.to_dict() for c in columns],
                live_imports=[],
                row_count=0,
                created_at=now,
                updated_at=now,
            )
        )
        return int(result.inserted_primary_key[0])  # type: ignore[index]


class RowWriter:
    """Buffers converted rows and inserts them in batches with the driver's executemany."""

    def __init__(self, dataset_id: int, import_job_id: int, *, batch_size: int = 2000) -> None:
        self.dataset_id = dataset_id
        self.import_job_id = import_job_id
        self.batch_size = batch_size
        self.written = 0
        self._batch: list[tuple[int, int, int, str]] = []
        marks = ", ".join(["?"] * 4) if db.engine.dialect.paramstyle == "qmark" else ", ".join(["%s"] * 4)
        self._sql = f"INSERT INTO dataset_rows (dataset_id, import_job_id, line, data) VALUES ({marks})"
        self._dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode

    @property
    def accepted(self) -> int:
        """Rows written plus rows buffered."""
        return self.written + len(self._batch)

    def add(self, line: int, values: list[Any]) -> bool:
        """Buffer one row; True when a batch was written (a good moment to yield)."""
        self._batch.append((self.dataset_id, self.import_job_id, line, self._dumps(values)))
        if len(self._batch) >= self.batch_size:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Insert the buffered rows in one short transaction."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        with write_transaction() as conn:
            conn.exec_driver_sql(self._sql, batch)
        self.written += len(batch)


def make_import_live(dataset_id: int, import_job_id: int, *, replace: bool, row_count: int) -> list[int]:
    """Show an import's rows (append, or replace the content); returns the imports it replaced."""
    with write_transaction() as conn:
        current = conn.execute(select(Dataset.live_imports, Dataset.row_count).where(Dataset.id == dataset_id)).one()
        live = list(current.live_imports or [])
        if replace:
            replaced, live, count = live, [import_job_id], row_count
        else:
            replaced, live, count = [], [*live, import_job_id], current.row_count + row_count
        conn.execute(
            update(Dataset)
            .where(Dataset.id == dataset_id)
            .values(live_imports=live, row_count=count, updated_at=utcnow())
        )
    return replaced


def discard_import_rows(import_job_ids: list[int]) -> int:
    """Delete the rows of imports that are not (or no longer) live, a chunk per transaction."""
    deleted = 0
    for job_id in import_job_ids:
        while True:
            chunk = select(ROWS.c.id).where(ROWS.c.import_job_id == job_id).limit(DELETE_CHUNK)
            with write_transaction() as conn:
                count = conn.execute(delete(ROWS).where(ROWS.c.id.in_(chunk))).rowcount
            deleted += count
            socketio.sleep(0)
            if count < DELETE_CHUNK:
                break
    return deleted


def delete_dataset_if_empty(dataset_id: int) -> None:
    """Remove a dataset that no import ever made live (its creating import failed)."""
    with write_transaction() as conn:
        conn.execute(delete(Dataset).where(Dataset.id == dataset_id, Dataset.row_count == 0))


def iter_rows(live_imports: list[int], *, chunk: int = 5000) -> Iterator[list[Any]]:
    """Every row of these (live) imports in insertion order, read in keyset-paged chunks."""
    live = list(live_imports)
    if not live:
        return
    last_id = 0
    loads = json.loads
    while True:
        query = (
            select(ROWS.c.id, ROWS.c.data)
            .where(ROWS.c.import_job_id.in_(live), ROWS.c.id > last_id)
            .order_by(ROWS.c.id)
            .limit(chunk)
        )
        with db.engine.connect() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield loads(row.data)
        if len(rows) < chunk:
            return
        last_id = rows[-1].id
        socketio.sleep(0)


def page_of_rows(dataset: Dataset, *, limit: int, offset: int) -> list[dict[str, Any]]:
    """One page of visible rows as ``{column: value}`` objects."""
    live = list(dataset.live_imports or [])
    if not live:
        return []
    names = [c["name"] for c in dataset.columns]
    query = (
        select(ROWS.c.line, ROWS.c.data)
        .where(ROWS.c.import_job_id.in_(live))
        .order_by(ROWS.c.id)
        .limit(limit)
        .offset(offset)
    )
    with db.engine.connect() as conn:
        rows = conn.execute(query).all()
    return [dict(zip(names, json.loads(r.data), strict=False)) for r in rows]
