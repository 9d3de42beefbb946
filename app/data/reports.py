"""Aggregate reports over a dataset and their files: CSV, self-contained HTML, XLSX.

A report groups visible rows by ``group_by`` columns (after ``filters``) and computes
``count``/``sum``/``avg``/``min``/``max`` metrics. Output columns are the group-by
columns, then one per metric named ``<op>_<column>`` (``count`` alone for a row count).
Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``,
``@`` — after any leading whitespace, and in their full-width forms such as ``＝`` — or
with a tab, CR or LF) are prefixed with ``'``; numbers stay numbers.
"""

from __future__ import annotations

import csv
import html
import operator
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ValidationFailed

OPS = ("count", "sum", "avg", "min", "max")
NUMERIC_TYPES = ("integer", "number")
FILTER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "lte": operator.le,
    "gt": operator.gt,
    "gte": operator.ge,
    "in": lambda value, options: value in options,
}
#: What a spreadsheet reads as the start of a formula (after NFKC: ``＝`` is ``=``).
FORMULA_STARTS = ("=", "+", "-", "@")
#: Control characters that make some spreadsheets start a new cell or formula.
CONTROL_STARTS = ("\t", "\r", "\n")
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
#: Groups drawn in the HTML chart (the table has them all).
CHART_MAX_BARS = 50


def metric_name(op: str, column: str | None) -> str:
    """The output column of a metric: ``<op>_<column>``, or ``count`` for a row count."""
    return "count" if op == "count" and not column else f"{op}_{column}"


@dataclass
class ReportSpec:
    """One report of a batch, checked against the dataset's columns."""

    name: str
    group_by: list[str]
    metrics: list[tuple[str, str | None]]
    filters: list[dict[str, Any]] = field(default_factory=list)

    @property
    def headers(self) -> list[str]:
        return [*self.group_by, *(metric_name(op, col) for op, col in self.metrics)]

    @classmethod
    def parse(cls, raw: dict[str, Any], columns: list[dict[str, Any]], path: str) -> ReportSpec:
        """Build from request params, raising ``ValidationFailed`` naming the bad field."""
        types = {c["name"]: c["type"] for c in columns}

        def known(name: str, where: str) -> None:
            if name not in types:
                raise ValidationFailed(
                    f"{where}: unknown column {name!r}; the dataset has {', '.join(types)}", details={"path": where}
                )

        group_by = list(raw.get("group_by") or [])
        for i, name in enumerate(group_by):
            known(name, f"{path}.group_by[{i}]")
        metrics: list[tuple[str, str | None]] = []
        for i, metric in enumerate(raw["metrics"]):
            op, column = metric["op"], metric.get("column")
            where = f"{path}.metrics[{i}]"
            if column is None and op != "count":
                raise ValidationFailed(f"{where}: {op} needs a column", details={"path": where})
            if column is not None:
                known(column, where)
                if op in ("sum", "avg") and types[column] not in NUMERIC_TYPES:
                    raise ValidationFailed(
                        f"{where}: {op} needs a numeric column; {column!r} is {types[column]}", details={"path": where}
                    )
            metrics.append((op, column))
        names = [metric_name(op, col) for op, col in metrics]
        if len(set(names)) != len(names) or set(names) & set(group_by):
            raise ValidationFailed(f"{path}: metrics repeat an output column", details={"path": path})
        filters = list(raw.get("filters") or [])
        for i, flt in enumerate(filters):
            known(flt["column"], f"{path}.filters[{i}]")
            if flt["op"] == "in" and not isinstance(flt.get("value"), list):
                raise ValidationFailed(f"{path}.filters[{i}]: 'in' needs a list value", details={"path": path})
        return cls(name=raw["name"], group_by=group_by, metrics=metrics, filters=filters)


class Aggregator:
    """Streams rows (value lists in dataset column order) into groups and metric states."""

    def __init__(self, spec: ReportSpec, column_names: list[str]) -> None:
        index = {name: i for i, name in enumerate(column_names)}
        self.spec = spec
        self._keys = [index[name] for name in spec.group_by]
        self._metrics = [(op, index[col] if col is not None else None) for op, col in spec.metrics]
        self._filters = [
            (index[f["column"]], FILTER_OPS[f["op"]], tuple(f["value"]) if f["op"] == "in" else f["value"])
            for f in spec.filters
        ]
        self.groups: dict[tuple[Any, ...], list[list[Any]]] = {}

    def _passes(self, row: list[Any]) -> bool:
        for i, compare, value in self._filters:
            cell = row[i]
            try:
                if not compare(cell, value):
                    return False
            except TypeError:  # None or mismatched types never match an ordering filter
                return False
        return True

    def add(self, row: list[Any]) -> None:
        """Fold one row into its group."""
        if self._filters and not self._passes(row):
            return
        key = tuple(row[i] for i in self._keys)
        states = self.groups.get(key)
        if states is None:
            states = self.groups[key] = [[0, None] for _ in self._metrics]
        for state, (op, i) in zip(states, self._metrics, strict=True):
            if i is None:
                state[0] += 1
                continue
            value = row[i]
            if value is None:
                continue
            state[0] += 1
            if op in ("sum", "avg"):
                state[1] = value if state[1] is None else state[1] + value
            elif op == "min":
                if state[1] is None or value < state[1]:
                    state[1] = value
            elif op == "max" and (state[1] is None or value > state[1]):
                state[1] = value

    def result_rows(self) -> list[list[Any]]:
        """One row per group (sorted by the group values): group values, then metrics."""
        rows = []
        for key in sorted(self.groups, key=lambda k: tuple((v is None, v if v is not None else 0) for v in k)):
            out = list(key)
            for (op, _i), (count, acc) in zip(self._metrics, self.groups[key], strict=True):
                if op == "count":
                    out.append(count)
                elif op == "avg":
                    out.append(acc / count if count else None)
                else:
                    out.append(acc)
            rows.append(out)
        return rows


def escape_cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas in text; numbers, booleans and None pass unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(CONTROL_STARTS):
        return "'" + value
    head = value.lstrip()  # spreadsheets skip leading spaces (also no-break and ideographic)
    if head and unicodedata.normalize("NFKC", head[0]) in FORMULA_STARTS:
        return "'" + value
    return value


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return escape_cell(value)


def write_csv(path: str, headers: list[str], rows: Iterable[list[Any]]) -> None:
    """UTF-8 CSV with a header row; formulas escaped."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([escape_cell(h) for h in headers])
        for row in rows:
            writer.writerow([_csv_value(v) for v in row])


def _display(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) >= 1e15 or (value and abs(value) < 1e-4) else f"{round(value, 6):,}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _bar_chart(labels: list[str], values: list[float], title: str) -> str:
    """An inline SVG horizontal bar chart (no script, no external resource)."""
    bars = list(zip(labels, values, strict=True))[:CHART_MAX_BARS]
    peak = max((abs(v) for _l, v in bars), default=0) or 1
    row_height, label_width, bar_space = 22, 220, 440
    height = row_height * len(bars) + 40
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + bar_space + 120}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="16" font-size="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for n, (label, value) in enumerate(bars):
        y = 30 + n * row_height
        width = max(1, round(abs(value) / peak * bar_space))
        colour = "#3b82f6" if value >= 0 else "#ef4444"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{html.escape(label[:40])}</text>"
            f'<rect x="{label_width}" y="{y + 3}" width="{width}" height="{row_height - 6}" fill="{colour}"/>'
            f'<text x="{label_width + width + 6}" y="{y + 15}" font-size="12">{html.escape(_display(value))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def write_html(path: str, spec: ReportSpec, dataset: str, rows: list[list[Any]]) -> None:
    """A self-contained page: title, table of every group, bar chart of the first metric."""
    headers = spec.headers
    keys = len(spec.group_by)
    metric = headers[keys] if len(headers) > keys else None
    chart = ""
    if metric is not None:
        points = [(" / ".join(_display(v) for v in row[:keys]) or "(all rows)", row[keys]) for row in rows]
        numeric = [(label, float(v)) for label, v in points if isinstance(v, int | float) and not isinstance(v, bool)]
        if numeric:
            chart = _bar_chart(
                [p[0] for p in numeric],
                [p[1] for p in numeric],
                f"{metric} by {', '.join(spec.group_by) or 'all rows'}",
            )
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="{"num" if isinstance(v, int | float) and not isinstance(v, bool) else "text"}">'
            f"{html.escape(_display(escape_cell(v)))}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    title = html.escape(f"{spec.name} — {dataset}")
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #111; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: .3rem .6rem; }}
th {{ background: #f3f4f6; text-align: left; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head>
<body>
<h1>{title}</h1>
<p>{len(rows)} group(s).</p>
<figure>{chart}</figure>
<table><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
</body></html>
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)


def write_xlsx(path: str, spec: ReportSpec, rows: list[list[Any]]) -> None:
    """One sheet with a header row (write-only, streamed); formulas escaped."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=spec.name[:31])
    sheet.append([escape_cell(h) for h in spec.headers])
    for row in rows:
        sheet.append([escape_cell(v) for v in row])
    book.save(path)


WRITERS = ("csv", "html", "xlsx")
