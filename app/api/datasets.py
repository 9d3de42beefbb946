"""``/api/datasets``: your imported datasets, their schema, row count and rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from ..auth.tokens import current_user, login_required
from ..data.datasets import get_owned_dataset, page_of_rows
from ..extensions import db
from ..models import Dataset
from . import bp
from .schema import query_int, spec

DATASET_SCHEMA = {"type": "object", "properties": {"dataset": {"type": "object"}}}


@bp.get("/datasets")
@spec(responses={200: {"type": "object", "properties": {"datasets": {"type": "array"}}}, 401: None})
@login_required
def list_datasets() -> dict[str, Any]:
    """Your datasets by name (schema and row count)."""
    query = select(Dataset).where(Dataset.owner_id == current_user().id).order_by(Dataset.name)
    return {"datasets": [d.to_dict() for d in db.session.scalars(query)]}


@bp.get("/datasets/<name>")
@spec(responses={200: DATASET_SCHEMA, 401: None, 404: None})
@login_required
def get_dataset(name: str) -> dict[str, Any]:
    """One dataset: columns with types, row count, live imports."""
    return {"dataset": get_owned_dataset(current_user().id, name).to_dict()}


@bp.get("/datasets/<name>/rows")
@spec(
    query={"limit": {"type": "integer"}, "offset": {"type": "integer"}},
    responses={200: {"type": "object", "properties": {"rows": {"type": "array"}}}, 401: None, 404: None},
)
@login_required
def dataset_rows(name: str) -> dict[str, Any]:
    """A page of rows as ``{column: value}`` objects, in import order."""
    dataset = get_owned_dataset(current_user().id, name)
    limit = query_int("limit", 100, minimum=1, maximum=1000)
    offset = query_int("offset", 0)
    return {
        "dataset": dataset.name,
        "columns": [c["name"] for c in dataset.columns],
        "row_count": dataset.row_count,
        "limit": limit,
        "offset": offset,
        "rows": page_of_rows(dataset, limit=limit, offset=offset),
    }
