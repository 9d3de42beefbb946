"""``/api/datasets``: your imported datasets, their schema, row count and rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..auth.tokens import current_user
from ..data.datasets import get_owned_dataset, page_of_rows
from ..extensions import db
from ..models import Dataset
from . import bp
from .schema import OFFSET, integer, spec

DATASET_SCHEMA = {"type": "object", "required": ["dataset"], "properties": {"dataset": {"type": "object"}}}


@bp.get("/datasets")
@spec(responses={200: {"type": "object", "required": ["datasets"], "properties": {"datasets": {"type": "array"}}}})
def list_datasets() -> dict[str, Any]:
    """Your datasets by name (schema and row count)."""
    query = select(Dataset).where(Dataset.owner_id == current_user().id).order_by(Dataset.name)
    return {"datasets": [d.to_dict() for d in db.session.scalars(query)]}


@bp.get("/datasets/<name>")
@spec(responses={200: DATASET_SCHEMA})
def get_dataset(name: str) -> dict[str, Any]:
    """One dataset: columns with types, row count, live imports."""
    return {"dataset": get_owned_dataset(current_user().id, name).to_dict()}


@bp.get("/datasets/<name>/rows")
@spec(
    query={"limit": integer(100, minimum=1, maximum=1000), "offset": OFFSET},
    responses={200: {"type": "object", "required": ["rows"], "properties": {"rows": {"type": "array"}}}},
)
def dataset_rows(name: str, limit: int, offset: int) -> dict[str, Any]:
    """A page of rows as ``{column: value}`` objects, in import order."""
    dataset = get_owned_dataset(current_user().id, name)
    return {
        "dataset": dataset.name,
        "columns": [c["name"] for c in dataset.columns],
        "row_count": dataset.row_count,
        "limit": limit,
        "offset": offset,
        "rows": page_of_rows(dataset, limit=limit, offset=offset),
    }
