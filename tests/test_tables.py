"""Table reading: the compiled CSV converter agrees with the exact one; inference; limits."""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
import zipfile

import pytest

from app.config import load_config
from app.data.tables import (
    BrokenFile,
    Column,
    FileTooLarge,
    RowRejected,
    TableLimits,
    infer_columns,
    open_table,
    row_converter,
    text_row_converter,
)
from tests.data_helpers import write_shared_strings_bomb, write_xlsx

#: The shipped defaults.
LIMITS = TableLimits.from_config(load_config({"ENV_NAME": "testing"}))

COLUMNS = [Column("n", "integer"), Column("x", "number"), Column("b", "boolean"), Column("s", "string", required=True)]
CELLS = {
    "n": ["1", "-7", " 3 ", "", "1.5", "x", "1e3"],
    "x": ["2.5", "-0", "", "nan", "inf", "-inf", "abc", "1e3", " 4 "],
    "b": ["true", "FALSE", " yes ", "0", "", "maybe"],
    "s": ["a", "", "=1+1"],
}


def outcome(convert, row: list[str]):
    try:
        return ("ok", convert(row))
    except RowRejected as exc:
        return ("rejected", exc.column, exc.reason)


@pytest.mark.parametrize("column", list(CELLS))
def test_compiled_converter_matches_the_exact_one(column):
    fast, exact = text_row_converter(COLUMNS), row_converter(COLUMNS)
    base = {"n": "1", "x": "1.0", "b": "true", "s": "a"}
    for cell in CELLS[column]:
        row = [cell if name == column else base[name] for name in base]
        assert outcome(fast, row) == outcome(exact, row), (column, cell)


def test_nan_and_infinity_are_rejected_as_numbers():
    convert = text_row_converter([Column("x", "number")])
    for cell in ("nan", "inf", "-inf"):
        with pytest.raises(RowRejected):
            convert([cell])


def test_non_finite_floats_from_json_lines_are_rejected_as_numbers():
    # json.loads reads NaN, Infinity and 1e400 as floats: stored, they would come back as
    # bare NaN / Infinity that no JSON parser reads.
    convert = row_converter([Column("x", "number")])
    for value in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(RowRejected, match="not a number"):
            convert([value])
    assert convert([2.5]) == [2.5] and convert([3]) == [3]


def test_inference_tolerates_a_few_bad_values():
    header = ["n", "s"]
    sample = [[str(i), "text"] for i in range(19)] + [["oops", "text"]]
    assert [c.type for c in infer_columns(header, sample)] == ["integer", "string"]


def test_inference_falls_back_to_string_when_many_values_do_not_fit():
    sample = [["1"], ["x"], ["2"], ["y"]]
    assert infer_columns(["v"], sample)[0].type == "string"


# -- limits ------------------------------------------------------------------------------


def read_all(path, fmt: str, limits: TableLimits = LIMITS, **options) -> list:
    with open_table(str(path), fmt, limits, **options) as table:
        return list(table.rows())


def test_xlsx_whose_shared_strings_inflate_to_a_gibibyte_is_refused_before_parsing(tmp_path):
    bomb = tmp_path / "bomb.xlsx"
    write_shared_strings_bomb(bomb)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    started = time.monotonic()
    with pytest.raises(FileTooLarge, match="IMPORT_XLSX_MAX_RATIO"):
        open_table(str(bomb), "xlsx", LIMITS)
    assert time.monotonic() - started < 1


def test_xlsx_inflating_past_the_total_limit_is_refused(tmp_path):
    book = tmp_path / "big.xlsx"
    write_xlsx(book, [["id", "text"]] + [[i, f"row {i}"] for i in range(2000)])
    limits = dataclasses.replace(LIMITS, xlsx_max_uncompressed_bytes=50_000)
    with pytest.raises(FileTooLarge, match="inflates to .* bytes; at most 50,000"):
        open_table(str(book), "xlsx", limits)


def test_xlsx_whose_shared_strings_pass_the_held_limit_is_refused(tmp_path):
    book = tmp_path / "texts.xlsx"
    write_xlsx(book, [["text"]] + [[f"distinct text {i}"] for i in range(2000)])
    limits = dataclasses.replace(LIMITS, xlsx_max_held_bytes=20_000)
    with pytest.raises(FileTooLarge, match="IMPORT_XLSX_MAX_HELD_BYTES"):
        open_table(str(book), "xlsx", limits)


def test_xlsx_with_too_many_zip_members_is_refused(tmp_path):
    book = tmp_path / "crowded.xlsx"
    write_xlsx(book, [["a"], [1]])
    with zipfile.ZipFile(book, "a") as archive:
        for index in range(LIMITS.xlsx_max_members):
            archive.writestr(f"docProps/extra{index}.xml", "<x/>")
    with pytest.raises(FileTooLarge, match="zip members; at most 1,000"):
        open_table(str(book), "xlsx", LIMITS)


def test_xlsx_that_is_not_a_zip_is_a_broken_file(tmp_path):
    fake = tmp_path / "fake.xlsx"
    fake.write_bytes(b"name,score\na,1\n")
    with pytest.raises(BrokenFile, match="not a zip archive") as caught:
        open_table(str(fake), "xlsx", LIMITS)
    assert not isinstance(caught.value, FileTooLarge)


def test_xlsx_sheet_declaring_thirty_million_rows_is_refused_at_once(tmp_path):
    book = tmp_path / "declared.xlsx"
    write_xlsx(book, [["a"], [1]], dimension="A1:A30000000")
    with pytest.raises(FileTooLarge, match="declares 29,999,999 rows; at most 10,000,000"):
        open_table(str(book), "xlsx", LIMITS)


def test_xlsx_rows_made_up_for_a_gap_count_against_the_row_limit(tmp_path):
    book = tmp_path / "gap.xlsx"
    write_xlsx(book, [["a"], [1]], last_row='<row r="30000000"><c r="A30000000"><v>2</v></c></row>')
    with pytest.raises(FileTooLarge, match="line 1002: the file has more than 1,000 rows"):
        read_all(book, "xlsx", dataclasses.replace(LIMITS, max_rows=1000))


def test_csv_and_json_lines_past_the_row_limit_are_refused(tmp_path):
    limits = dataclasses.replace(LIMITS, max_rows=3)
    (tmp_path / "t.csv").write_text("a\n1\n\n\n2\n")  # blank lines count
    (tmp_path / "t.jsonl").write_text('{"a": 1}\n{"a": 2}\n\n{"a": 3}\n')
    with pytest.raises(FileTooLarge, match="line 5: the file has more than 3 rows"):
        read_all(tmp_path / "t.csv", "csv", limits)
    with pytest.raises(FileTooLarge, match="line 4: the file has more than 3 rows"):
        read_all(tmp_path / "t.jsonl", "jsonl", limits)


def test_rows_at_the_limit_are_read(tmp_path):
    (tmp_path / "t.csv").write_text("a\n1\n2\n3\n")
    assert len(read_all(tmp_path / "t.csv", "csv", dataclasses.replace(LIMITS, max_rows=3))) == 3


def test_csv_row_of_a_million_columns_is_refused_before_it_is_built(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_bytes(b"a,b\n1,2\n" + b"1," * 999_999 + b"1\n")
    tracemalloc.start()
    try:
        with pytest.raises(FileTooLarge, match="line 3: a record is longer than 1,048,576 characters"):
            read_all(wide, "csv")
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 1024 * 1024  # the line read up to the limit, never its million-item list


def test_csv_header_of_a_million_columns_is_refused(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_bytes(b"c," * 1_000_000 + b"c\n")
    with pytest.raises(FileTooLarge, match="line 1: a record is longer"):
        open_table(str(wide), "csv", LIMITS)


def test_csv_record_limit_covers_quoted_line_breaks(tmp_path):
    """A record of many short physical lines (line breaks inside quotes) is one record."""
    tall = tmp_path / "tall.csv"
    tall.write_bytes(b'a,b\n"' + b"x\n" * 100 + b'",1\n')  # one 205-character record over 101 lines
    with pytest.raises(FileTooLarge, match="line 76: a record is longer than 150 characters"):
        read_all(tall, "csv", dataclasses.replace(LIMITS, max_record_chars=150))
    assert read_all(tall, "csv", dataclasses.replace(LIMITS, max_record_chars=205)) == [(102, ["x\n" * 100, "1"])]


def test_json_line_past_the_record_limit_is_refused(tmp_path):
    long = tmp_path / "long.jsonl"
    long.write_text('{"a": 1}\n{"a": "' + "x" * 2000 + '"}\n')
    with pytest.raises(FileTooLarge, match="line 2: the line is longer than 1,000 characters"):
        read_all(long, "jsonl", dataclasses.replace(LIMITS, max_record_chars=1000))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_readers_pause_for_every_row_blank_rows_included(tmp_path, fmt):
    path = tmp_path / f"t.{fmt}"
    if fmt == "csv":
        path.write_text("a\n1\n\n\n2\n")
    elif fmt == "jsonl":
        path.write_text('{"a": 1}\n\n\n{"a": 2}\n')
    else:
        write_xlsx(path, [["a"], [1]], last_row='<row r="5"><c r="A5"><v>2</v></c></row>')
    pauses = []
    rows = read_all(path, fmt, pause=lambda: pauses.append(1))
    assert [values for _line, values in rows] == [["1"], ["2"]] if fmt == "csv" else [[1], [2]]
    assert len(pauses) >= 4


def test_workbook_opens_through_in_thread(tmp_path):
    book = tmp_path / "s.xlsx"
    write_xlsx(book, [["name", "n"], ["a", 1], ["b & <c>", 2.5]])
    calls = []

    def in_thread(call):
        calls.append(call)
        return call()

    assert read_all(book, "xlsx", in_thread=in_thread) == [(2, ["a", 1]), (3, ["b & <c>", 2.5])]
    assert len(calls) == 1
