"""Streaming readers for CSV, JSON lines and XLSX, plus column types and row conversion.

A reader yields ``(line, values)`` with ``line`` the row's file line (the CSV header is
line 1) and ``values`` in header order. Nothing reads a whole file into memory. A file
that cannot be read as a table (bad encoding, wrong column count, no header) raises
:class:`BrokenFile`; one past a :class:`TableLimits` bound (too many rows, a record too
long, an XLSX zip that inflates too far) raises its subclass :class:`FileTooLarge`; a row
whose values do not fit the column types raises :class:`RowRejected` from
:func:`convert_row` and is only reported.

Readers call ``pause()`` once per row, skipped rows included, so that a job can let other
greenlets in; the XLSX reader opens the workbook through ``in_thread`` because openpyxl
parses the shared strings in one loop that cannot yield.
"""

from __future__ import annotations

import csv
import json
import math
import os
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import chain
from typing import IO, Any, TypeVar

T = TypeVar("T")

#: The column types a dataset knows.
COLUMN_TYPES = ("string", "integer", "number", "boolean")
#: File formats the importer reads.
FORMATS = ("csv", "jsonl", "xlsx")
#: Rows looked at to infer column types.
INFER_ROWS = 200
#: Share of a column's sample values that must fit a type for it to be inferred (the rest
#: become reported bad rows rather than turning the whole column into text).
INFER_SHARE = 0.9
MAX_COLUMNS = 512

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "t"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "f"})


class BrokenFile(Exception):
    """The file as a whole cannot be read as a table; the import fails."""

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class FileTooLarge(BrokenFile):
    """The file goes past an import limit (rows, record length, inflated size)."""


@dataclass(frozen=True)
class TableLimits:
    """The bounds one import works within (``IMPORT_*`` settings)."""

    max_rows: int
    max_record_chars: int
    xlsx_max_uncompressed_bytes: int
    xlsx_max_held_bytes: int
    xlsx_max_ratio: float
    xlsx_max_members: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TableLimits:
        return cls(
            max_rows=int(config["IMPORT_MAX_ROWS"]),
            max_record_chars=int(config["IMPORT_MAX_RECORD_CHARS"]),
            xlsx_max_uncompressed_bytes=int(config["IMPORT_XLSX_MAX_UNCOMPRESSED_BYTES"]),
            xlsx_max_held_bytes=int(config["IMPORT_XLSX_MAX_HELD_BYTES"]),
            xlsx_max_ratio=float(config["IMPORT_XLSX_MAX_RATIO"]),
            xlsx_max_members=int(config["IMPORT_XLSX_MAX_MEMBERS"]),
        )


class RowRejected(Exception):
    """One row's value does not fit its column."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(reason)
        self.column = column
        self.reason = reason


@dataclass(frozen=True)
class Column:
    """A dataset column: its name, type, and whether an empty value is an error."""

    name: str
    type: str = "string"
    required: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
        return cls(name=data["name"], type=data.get("type", "string"), required=bool(data.get("required", False)))


def format_of(filename: str) -> str | None:
    """The import format implied by a file name (``.txt`` is read as CSV, ``.json`` as JSON lines)."""
    ext = os.path.splitext(filename)[1].lower().lstrip(".")
    return {"csv": "csv", "txt": "csv", "jsonl": "jsonl", "json": "jsonl", "xlsx": "xlsx"}.get(ext)


def _stay() -> None:
    """The default ``pause``: nothing else is waiting for this thread."""


def _call_here(call: Callable[[], T]) -> T:
    """The default ``in_thread``: run the call right here."""
    return call()


def estimate_rows(path: str, fmt: str, pause: Callable[[], None] = _stay) -> int | None:
    """A fast row-count estimate (newlines) so progress has a total before parsing."""
    if fmt == "xlsx":
        return None
    newlines = 0
    last = b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            pause()
            newlines += block.count(b"\n")
            last = block[-1:]
    lines = newlines + (0 if last == b"\n" else 1)
    return max(0, lines - 1) if fmt == "csv" else lines


# -- readers ----------------------------------------------------------------------------


class TableReader:
    """An open table: ``header`` (column names) and ``rows()`` → ``(line, values)``."""

    header: list[str]

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self) -> TableReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_header(names: list[str]) -> list[str]:
    clean = [str(n).strip() if n is not None else "" for n in names]
    if not clean or all(not n for n in clean):
        raise BrokenFile("the file has no header row", line=1)
    if len(clean) > MAX_COLUMNS:
        raise BrokenFile(f"the header has {len(clean)} columns; at most {MAX_COLUMNS} are allowed", line=1)
    for index, name in enumerate(clean, start=1):
        if not name:
            raise BrokenFile(f"header column {index} has no name", line=1)
        if len(name) > 64:
            raise BrokenFile(f"header column {index} is longer than 64 characters", line=1)
    seen: set[str] = set()
    for name in clean:
        if name in seen:
            raise BrokenFile(f"the header names column {name!r} twice", line=1)
        seen.add(name)
    return clean


class _RecordLines:
    """Physical lines of a text file for ``csv.reader``, refusing a record (one or more
    lines, as quoted fields may hold line breaks) longer than ``limit`` characters.

    ``readline`` with a size never reads past the budget, so a 100 MB line costs no more
    memory than the limit; csv would otherwise build its whole list of fields first.
    """

    def __init__(self, fh: IO[str], limit: int) -> None:
        self._fh = fh
        self._limit = limit
        self._used = 0
        #: Physical lines handed out so far.
        self.line = 0

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        text = self._fh.readline(self._limit - self._used + 1)
        if not text:
            raise StopIteration
        self.line += 1
        self._used += len(text)
        if self._used > self._limit:
            raise FileTooLarge(
                f"line {self.line}: a record is longer than {self._limit:,} characters (IMPORT_MAX_RECORD_CHARS)",
                line=self.line,
            )
        return text

    def next_record(self) -> None:
        """The record read so far is complete: the next one starts with the whole budget."""
        self._used = 0


def _too_many_rows(line: int, limits: TableLimits) -> FileTooLarge:
    return FileTooLarge(
        f"line {line}: the file has more than {limits.max_rows:,} rows (IMPORT_MAX_ROWS)",
        line=line,
    )


class CsvReader(TableReader):
    """UTF-8 CSV (BOM allowed) with a header row; every row must have the header's width."""

    def __init__(self, path: str, limits: TableLimits, pause: Callable[[], None] = _stay) -> None:
        self._fh = open(path, encoding="utf-8-sig", errors="strict", newline="")  # noqa: SIM115
        self._limits = limits
        self._pause = pause
        self._lines = _RecordLines(self._fh, limits.max_record_chars)
        self._reader = csv.reader(self._lines)
        try:
            first = next(self._reader)
        except StopIteration:
            self.close()
            raise BrokenFile("the file is empty", line=1) from None
        except UnicodeDecodeError:
            self.close()
            raise BrokenFile("the file is not valid UTF-8 (line 1)", line=1) from None
        except csv.Error as exc:
            self.close()
            raise BrokenFile(f"line 1: {exc}", line=1) from None
        except FileTooLarge:
            self.close()
            raise
        self._lines.next_record()
        self.header = _check_header(first)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        reader, lines, pause = self._reader, self._lines, self._pause
        width = len(self.header)
        last_row = self._limits.max_rows + 1  # the header is line 1
        try:
            for records, values in enumerate(reader, start=2):
                lines.next_record()
                pause()
                if records > last_row:
                    raise _too_many_rows(reader.line_num, self._limits)
                if len(values) != width:
                    if not values:
                        continue  # a blank line
                    raise BrokenFile(
                        f"line {reader.line_num}: expected {width} columns, found {len(values)}",
                        line=reader.line_num,
                    )
                yield reader.line_num, values
        except UnicodeDecodeError:
            line = reader.line_num + 1
            raise BrokenFile(f"the file is not valid UTF-8 (near line {line})", line=line) from None
        except csv.Error as exc:
            raise BrokenFile(f"line {reader.line_num}: {exc}", line=reader.line_num) from None

    def close(self) -> None:
        self._fh.close()


class JsonLinesReader(TableReader):
    """One JSON object per line; the columns are the keys of the first objects, in order."""

    def __init__(self, path: str, limits: TableLimits, pause: Callable[[], None] = _stay) -> None:
        self._fh = open(path, encoding="utf-8-sig", errors="strict")  # noqa: SIM115
        self._limits = limits
        self._pause = pause
        self._buffered: list[tuple[int, Any]] = []
        keys: dict[str, None] = {}
        self._lines = self._numbered()
        try:
            for line, obj in self._lines:
                self._buffered.append((line, obj))
                if isinstance(obj, dict):
                    keys.update(dict.fromkeys(str(k) for k in obj))
                if len(self._buffered) >= INFER_ROWS:
                    break
        except BrokenFile:
            self.close()
            raise
        if not keys:
            self.close()
            raise BrokenFile("no JSON object found in the first lines", line=1)
        self.header = _check_header(list(keys))

    def _numbered(self) -> Iterator[tuple[int, Any]]:
        limit, pause = self._limits.max_record_chars, self._pause
        line = 0
        try:
            while text := self._fh.readline(limit + 1):  # a size: a huge line is never read whole
                line += 1
                pause()
                if len(text) > limit:
                    raise FileTooLarge(
                        f"line {line}: the line is longer than {limit:,} characters (IMPORT_MAX_RECORD_CHARS)",
                        line=line,
                    )
                if line > self._limits.max_rows:
                    raise _too_many_rows(line, self._limits)
                if not text.strip():
                    continue
                try:
                    yield line, json.loads(text)
                except ValueError as exc:
                    yield line, RowRejected("", f"invalid JSON: {exc.args[0] if exc.args else exc}")
        except UnicodeDecodeError:
            raise BrokenFile(f"the file is not valid UTF-8 (near line {line + 1})", line=line + 1) from None

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        header = self.header
        known = set(header)
        for line, obj in chain(self._buffered, self._lines):
            if isinstance(obj, RowRejected):
                yield line, obj  # type: ignore[misc]
                continue
            if not isinstance(obj, dict):
                yield line, RowRejected("", "the line is not a JSON object")  # type: ignore[misc]
                continue
            unknown = [k for k in obj if k not in known]
            if unknown:
                yield line, RowRejected(str(unknown[0]), "unknown column")  # type: ignore[misc]
                continue
            yield line, [obj.get(name) for name in header]
        self._buffered = []

    def close(self) -> None:
        self._fh.close()


#: Members smaller than this are not ratio-checked: a tiny, very regular part (an empty
#: style sheet) may deflate 100 times and can do no harm.
RATIO_CHECKED_FROM = 1024 * 1024
#: Zip members openpyxl streams row by row in read-only mode; every other part it parses
#: whole and keeps (shared strings) or builds into objects (styles, workbook, theme).
WORKSHEET_PREFIX = "xl/worksheets/"


def check_xlsx_archive(path: str, limits: TableLimits) -> None:
    """Refuse an XLSX whose zip would inflate past the limits, from its central directory
    alone, before openpyxl reads a byte of XML (raises :class:`BrokenFile`).

    Declared sizes are a safe upper bound because openpyxl reads every part through
    ``zipfile``: ``ZipExtFile`` starts ``_left`` at the member's declared ``file_size``,
    cuts every decompressed piece to ``data[:self._left]`` and sets EOF once ``_left``
    reaches zero (CPython 3.11 ``ZipExtFile._read1``). A member that really inflates
    further is truncated there (and fails its CRC); it never yields more than declared.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError):
        raise BrokenFile("not an XLSX workbook: the file is not a zip archive") from None
    if len(members) > limits.xlsx_max_members:
        raise FileTooLarge(
            f"the workbook has {len(members):,} zip members; at most {limits.xlsx_max_members:,}"
            " are allowed (IMPORT_XLSX_MAX_MEMBERS)"
        )
    for member in members:
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > RATIO_CHECKED_FROM and ratio > limits.xlsx_max_ratio:
            raise FileTooLarge(
                f"zip member {member.filename!r} inflates {ratio:,.0f} times ({member.file_size:,} bytes);"
                f" at most {limits.xlsx_max_ratio:,.0f} times is allowed (IMPORT_XLSX_MAX_RATIO)"
            )
    total = sum(member.file_size for member in members)
    if total > limits.xlsx_max_uncompressed_bytes:
        raise FileTooLarge(
            f"the workbook inflates to {total:,} bytes; at most {limits.xlsx_max_uncompressed_bytes:,}"
            " are allowed (IMPORT_XLSX_MAX_UNCOMPRESSED_BYTES)"
        )
    held = sum(member.file_size for member in members if not member.filename.startswith(WORKSHEET_PREFIX))
    if held > limits.xlsx_max_held_bytes:
        raise FileTooLarge(
            f"the workbook's shared strings, styles and other parts read whole inflate to {held:,} bytes;"
            f" at most {limits.xlsx_max_held_bytes:,} are allowed (IMPORT_XLSX_MAX_HELD_BYTES)"
        )


class XlsxReader(TableReader):
    """The first sheet of a workbook, read-only (streamed); row 1 is the header."""

    def __init__(
        self,
        path: str,
        limits: TableLimits,
        pause: Callable[[], None] = _stay,
        in_thread: Callable[[Callable[[], Any]], Any] = _call_here,
    ) -> None:
        check_xlsx_archive(path, limits)
        self._limits = limits
        self._pause = pause
        self._fh = open(path, "rb")  # noqa: SIM115  (a file object: the stored name has no .xlsx)
        try:
            # Importing openpyxl takes ~0.1 s, and opening parses the whole shared-strings
            # part in one loop that never yields: neither may hold the caller's loop.
            self._book = in_thread(self._open_workbook)
        except Exception as exc:
            self._fh.close()
            raise BrokenFile(f"not a readable XLSX workbook: {exc}", line=None) from None
        sheet = self._book.worksheets[0]
        declared_rows = (sheet.max_row or 1) - 1
        if declared_rows > limits.max_rows:
            self.close()
            raise FileTooLarge(
                f"the sheet declares {declared_rows:,} rows; at most {limits.max_rows:,} are allowed (IMPORT_MAX_ROWS)"
            )
        self._rows = sheet.iter_rows(values_only=True)
        try:
            first = next(self._rows)
        except StopIteration:
            self.close()
            raise BrokenFile("the sheet is empty", line=1) from None
        while first and first[-1] is None:
            first = first[:-1]
        self.header = _check_header(list(first))
        self.max_row = sheet.max_row

    def _open_workbook(self) -> Any:
        from openpyxl import load_workbook

        return load_workbook(self._fh, read_only=True, data_only=True)

    def rows(self) -> Iterator[tuple[int, list[Any]]]:
        width, pause = len(self.header), self._pause
        last_row = self._limits.max_rows + 1  # the header is row 1
        for line, values in enumerate(self._rows, start=2):
            pause()
            if line > last_row:  # openpyxl makes up the rows a sheet skips: they count
                raise _too_many_rows(line, self._limits)
            cells = list(values)
            if all(v is None for v in cells):
                continue
            extra = cells[width:]
            if any(v is not None for v in extra):
                raise BrokenFile(f"row {line}: more values than header columns", line=line)
            cells = cells[:width] + [None] * (width - len(cells))
            yield line, cells

    def close(self) -> None:
        self._book.close()
        self._fh.close()


def open_table(
    path: str,
    fmt: str,
    limits: TableLimits,
    *,
    pause: Callable[[], None] = _stay,
    in_thread: Callable[[Callable[[], Any]], Any] = _call_here,
) -> TableReader:
    """Open ``path`` as a table of format ``fmt`` (raises :class:`BrokenFile`).

    ``pause`` is called once per row; ``in_thread`` runs a call that cannot yield (opening
    a workbook) where it does not hold up the caller's event loop.
    """
    if fmt == "csv":
        return CsvReader(path, limits, pause)
    if fmt == "jsonl":
        return JsonLinesReader(path, limits, pause)
    if fmt == "xlsx":
        return XlsxReader(path, limits, pause, in_thread)
    raise BrokenFile(f"unknown format {fmt!r}")


# -- types -----------------------------------------------------------------------------


def _fits(value: Any, type_: str) -> bool:
    try:
        _CONVERTERS[type_](value)
    except (ValueError, TypeError):
        return False
    return True


def infer_columns(header: list[str], sample: list[list[Any]]) -> list[Column]:
    """Column types from sample rows: the narrowest of integer, number, boolean that fits
    at least ``INFER_SHARE`` of the non-empty values, else string."""
    columns = []
    for index, name in enumerate(header):
        values = [row[index] for row in sample if row[index] is not None and row[index] != ""]
        chosen = "string"
        if values:
            for type_ in ("integer", "number", "boolean"):
                if sum(1 for v in values if _fits(v, type_)) >= INFER_SHARE * len(values):
                    chosen = type_
                    break
        columns.append(Column(name, chosen))
    return columns


def _to_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ValueError("not an integer")
    return int(str(value).strip())


def _to_number(value: Any) -> int | float:
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int):
        return value
    # Text is always read as a float (the fast path agrees); a JSON line's NaN or 1e400
    # arrives a float already, and is no more a number than the text "nan".
    number = value if isinstance(value, float) else float(str(value).strip())
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError("not a boolean")


def _to_string(value: Any) -> str:
    if isinstance(value, dict | list):
        raise ValueError("not a text value")
    return value if isinstance(value, str) else str(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "integer": _to_integer,
    "number": _to_number,
    "boolean": _to_boolean,
    "string": _to_string,
}
_REASONS = {
    "integer": "not an integer",
    "number": "not a number",
    "boolean": "not a boolean (true/false)",
    "string": "not a text value",
}


def row_converter(columns: list[Column]) -> Callable[[list[Any]], list[Any]]:
    """A fast function turning raw values into typed values, or raising :class:`RowRejected`."""
    plan = [(c.name, _CONVERTERS[c.type], c.required, _REASONS[c.type]) for c in columns]

    def convert(values: list[Any]) -> list[Any]:
        out = []
        for (name, conv, required, reason), value in zip(plan, values, strict=True):
            if value is None or value == "":
                if required:
                    raise RowRejected(name, "a value is required")
                out.append(None)
                continue
            try:
                out.append(conv(value))
            except (ValueError, TypeError):
                raise RowRejected(name, f"{reason}: {str(value)[:40]!r}") from None
        return out

    return convert


#: Fast expressions for CSV text cells; ``{v}`` is the cell. Anything they reject (or
#: accept too loosely: NaN, infinity) is re-checked by the exact converter.
_TEXT_FAST = {
    "integer": "int({v})",
    "number": "float({v})",
    "boolean": "_BOOLS[{v}.lower()]",
    "string": "{v}",
}
_BOOLS = {word: True for word in TRUE_WORDS} | {word: False for word in FALSE_WORDS}


def text_row_converter(columns: list[Column]) -> Callable[[list[Any]], list[Any]]:
    """:func:`row_converter` for rows of text cells (CSV), compiled into one expression.

    The common case (every cell fits) costs one generated function call per row; a row
    with any doubtful cell goes through the exact converter, which gives the reason.
    """
    exact = row_converter(columns)
    names = [f"c{i}" for i in range(len(columns))]
    parts = []
    for name, column in zip(names, columns, strict=True):
        fast = _TEXT_FAST[column.type].format(v=name)
        parts.append(f"(_exact(row) if not {name} else {fast})" if column.required else f"({fast} if {name} else None)")
    unpack = f"    {', '.join(names)}{',' if len(names) == 1 else ''} = row\n"
    checks = "".join(
        f"    x = out[{i}]\n    if x is not None and not (-_INF < x < _INF):\n        return _exact(row)\n"
        for i, column in enumerate(columns)
        if column.type == "number"
    )  # float() accepts "nan" and "inf"; the exact converter refuses them with a reason
    source = (
        "def convert(row):\n"
        + unpack
        + "    try:\n"
        + f"        out = [{', '.join(parts)}]\n"
        + "    except (ValueError, KeyError):\n"
        + "        return _exact(row)\n"
        + checks
        + "    return out\n"
    )
    namespace: dict[str, Any] = {"_exact": exact, "_BOOLS": _BOOLS, "_INF": float("inf")}
    exec(compile(source, "<text_row_converter>", "exec"), namespace)  # noqa: S102  (built from column types only)
    return namespace["convert"]  # type: ignore[no-any-return]
