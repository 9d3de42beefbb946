"""Table reading helpers: the compiled CSV converter agrees with the exact one; inference."""

from __future__ import annotations

import pytest

from app.data.tables import Column, RowRejected, infer_columns, row_converter, text_row_converter

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


def test_inference_tolerates_a_few_bad_values():
    header = ["n", "s"]
    sample = [[str(i), "text"] for i in range(19)] + [["oops", "text"]]
    assert [c.type for c in infer_columns(header, sample)] == ["integer", "string"]


def test_inference_falls_back_to_string_when_many_values_do_not_fit():
    sample = [["1"], ["x"], ["2"], ["y"]]
    assert infer_columns(["v"], sample)[0].type == "string"
