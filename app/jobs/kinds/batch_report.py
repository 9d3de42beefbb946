"""``batch_report``: aggregate reports over a dataset, one artifact per report and format.

Each report streams the dataset's visible rows once (keyset pages, yielding between
pages) into an :class:`~app.data.reports.Aggregator`, then writes ``<report>.<format>``
artifacts. Progress counts reports, with the current one's row fraction in between.
"""

from __future__ import annotations

import os
from typing import Any

from ...data.artifacts import artifact_dir, record_artifact
from ...data.datasets import DATASET_NAME_PATTERN, get_owned_dataset, iter_rows
from ...data.reports import (
    CONTENT_TYPES,
    FILTER_OPS,
    OPS,
    WRITERS,
    Aggregator,
    ReportSpec,
    write_csv,
    write_html,
    write_xlsx,
)
from ...errors import NotFound, ValidationFailed
from ...extensions import db
from ..context import JobContext
from ..registry import job_kind, unknown_reference

REPORT_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: Rows folded between progress reports.
REPORT_EVERY = 2000

SCHEMA = {
    "required": ["dataset", "reports"],
    "properties": {
        "dataset": {
            "type": "string",
            "pattern": DATASET_NAME_PATTERN,
            "title": "Dataset",
            "description": "An imported dataset",
        },
        "reports": {
            "type": "array",
            "title": "Reports",
            "description": "Each report groups rows by columns and computes metrics",
            "minItems": 1,
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["name", "metrics"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": REPORT_NAME_PATTERN},
                    "group_by": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
                    "metrics": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "required": ["op"],
                            "additionalProperties": False,
                            "properties": {"op": {"enum": list(OPS)}, "column": {"type": "string"}},
                        },
                    },
                    "filters": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["column", "op", "value"],
                            "additionalProperties": False,
                            "properties": {"column": {"type": "string"}, "op": {"enum": list(FILTER_OPS)}, "value": {}},
                        },
                    },
                },
            },
        },
        "formats": {
            "type": "array",
            "items": {"enum": list(WRITERS)},
            "minItems": 1,
            "uniqueItems": True,
            "default": ["csv", "html"],
            "title": "Formats",
            "description": "Files written per report",
        },
    },
}


def _specs(owner_id: int, params: dict[str, Any]) -> tuple[list[ReportSpec], list[dict[str, Any]]]:
    dataset = get_owned_dataset(owner_id, params["dataset"])
    columns = list(dataset.columns)
    specs = [ReportSpec.parse(raw, columns, f"params.reports[{i}]") for i, raw in enumerate(params["reports"])]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValidationFailed("report names must be unique", details={"path": "params.reports"})
    return specs, columns


def precheck(owner_id: int, params: dict[str, Any]) -> None:
    """Unknown dataset, unknown columns, non-numeric sums, repeated names → 400 naming the field."""
    try:
        get_owned_dataset(owner_id, params["dataset"])
    except NotFound as exc:
        raise unknown_reference("params.dataset", exc.message) from None
    _specs(owner_id, params)


@job_kind("batch_report", title="Batch report", progress_type="batch_report_progress", precheck=precheck, schema=SCHEMA)
def batch_report(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Aggregate a dataset into named reports (count/sum/avg/min/max by groups) as CSV, HTML, XLSX."""
    specs, columns = _specs(ctx.owner_id, params)
    dataset = get_owned_dataset(ctx.owner_id, params["dataset"])
    row_count = max(1, int(dataset.row_count))
    live, dataset_name = list(dataset.live_imports or []), dataset.name
    db.session.remove()  # no read transaction held across the yields below
    names = [c["name"] for c in columns]
    formats: list[str] = params.get("formats") or ["csv", "html"]
    folder = artifact_dir(ctx.job_id)
    total = len(specs)
    outputs: list[dict[str, Any]] = []

    def report(done: int, current: str | None, fraction: float = 0.0) -> None:
        ctx.progress(
            round(done + fraction, 4),
            total,
            completed_reports=done,
            total_reports=total,
            current_report=current,
        )

    for done, spec in enumerate(specs):
        report(done, spec.name)
        aggregator = Aggregator(spec, names)
        seen = 0
        for row in iter_rows(live):
            aggregator.add(row)
            seen += 1
            if seen % REPORT_EVERY == 0:
                ctx.raise_if_cancelled()
                report(done, spec.name, min(0.99, seen / row_count))
        rows = aggregator.result_rows()
        for fmt in formats:
            name = f"{spec.name}.{fmt}"
            path = os.path.join(folder, name)
            if fmt == "csv":
                write_csv(path, spec.headers, rows)
            elif fmt == "html":
                write_html(path, spec, dataset_name, rows)
            else:
                write_xlsx(path, spec, rows)
            record_artifact(ctx.job_id, name, CONTENT_TYPES[fmt])
        ctx.yield_now()
        outputs.append({"name": spec.name, "groups": len(rows), "artifacts": [f"{spec.name}.{f}" for f in formats]})
        ctx.log(f"report {spec.name!r}: {len(rows)} group(s) from {seen} row(s)")
    report(total, None)
    return {"dataset": dataset_name, "reports": outputs, "total_reports": total}
