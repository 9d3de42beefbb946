"""docs/GUARANTEES.md names the tests that prove each guarantee: each must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUARANTEES = (ROOT / "docs" / "GUARANTEES.md").read_text()


def defined_tests(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_every_test_the_guarantees_name_exists():
    named = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", GUARANTEES)
    assert len(named) > 50
    missing = [
        f"{path}::{name}"
        for path, name in named
        if not (ROOT / path).is_file() or name not in defined_tests(ROOT / path)
    ]
    assert not missing, f"docs/GUARANTEES.md names tests that do not exist: {missing}"
