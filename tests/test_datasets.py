"""Dataset storage: rows are invisible until their import goes live; rollback deletes them."""

from __future__ import annotations

from sqlalchemy import func, select

from app.data.datasets import (
    RowWriter,
    create_dataset,
    discard_import_rows,
    get_owned_dataset,
    iter_rows,
    make_import_live,
    page_of_rows,
)
from app.data.tables import Column
from app.extensions import db
from app.models import DatasetPage


def write_rows(dataset_id: int, job_id: int, values: list[int]) -> int:
    writer = RowWriter(dataset_id, job_id, page_rows=3)
    for value in values:
        writer.add([value])
    writer.flush()
    return writer.written


def test_rows_of_an_unfinished_import_are_invisible_and_discarded_on_rollback(app, auth):
    user_id = auth.create_user("alice")
    with app.app_context():
        dataset_id = create_dataset(user_id, "d", [Column("v", "integer")])
        write_rows(dataset_id, 1, [1, 2, 3, 4])
        make_import_live(dataset_id, 1, replace=False, row_count=4)
        write_rows(dataset_id, 2, [5, 6, 7, 8, 9])  # an import still running (or failed)
        dataset = get_owned_dataset(user_id, "d")
        assert [r["v"] for r in page_of_rows(dataset, limit=100, offset=0)] == [1, 2, 3, 4]
        assert discard_import_rows([2]) == 2  # pages of 3 rows: 5,6,7 and 8,9
        assert db.session.scalar(select(func.count()).select_from(DatasetPage)) == 2


def test_replace_swaps_content_at_once_and_old_pages_can_be_discarded(app, auth):
    user_id = auth.create_user("alice")
    with app.app_context():
        dataset_id = create_dataset(user_id, "d", [Column("v", "integer")])
        write_rows(dataset_id, 1, [1, 2])
        make_import_live(dataset_id, 1, replace=False, row_count=2)
        write_rows(dataset_id, 2, [7])
        replaced = make_import_live(dataset_id, 2, replace=True, row_count=1)
        assert replaced == [1]
        dataset = get_owned_dataset(user_id, "d")
        assert dataset.row_count == 1 and list(iter_rows(dataset.live_imports)) == [[7]]
        discard_import_rows(replaced)
        assert db.session.scalar(select(func.count()).select_from(DatasetPage)) == 1


def test_row_pages_honour_offset_and_limit_across_pages(app, auth):
    user_id = auth.create_user("alice")
    with app.app_context():
        dataset_id = create_dataset(user_id, "d", [Column("v", "integer")])
        write_rows(dataset_id, 1, list(range(10)))
        make_import_live(dataset_id, 1, replace=False, row_count=10)
        dataset = get_owned_dataset(user_id, "d")
        assert [r["v"] for r in page_of_rows(dataset, limit=4, offset=2)] == [2, 3, 4, 5]
        assert [r["v"] for r in page_of_rows(dataset, limit=4, offset=8)] == [8, 9]
        assert page_of_rows(dataset, limit=4, offset=10) == []
