"""Transports know no job kind, kinds know no transport — read from the imports themselves.

The module graph is built from the source (``ast``), not by importing: importing ``app``
loads everything, so ``sys.modules`` proves nothing. Only runtime imports count (those
under ``if TYPE_CHECKING:`` do not), wherever they sit — a function-level import is an
import. A package's ``__init__`` is reached only when it is named (``from ..models import
Job``), not merely for being a parent: ``app/__init__.py`` is the application factory.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parent.parent / "app"

#: The job platform: a kind reaches the pipeline only through it (``JobContext`` for what
#: it reports; ``service``/``runner`` for a coordinator's children).
JOB_PLATFORM = frozenset({"app.jobs.context", "app.jobs.service", "app.jobs.runner"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in APP.rglob("*.py")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement outside ``if TYPE_CHECKING:`` blocks."""
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


@cache
def imports_of(module: str) -> frozenset[tuple[str, str | None]]:
    """``(module, name)`` pairs a module imports at runtime (``name`` None for ``import x``)."""
    path = _modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    pairs: set[tuple[str, str | None]] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            pairs.update((alias.name, None) for alias in node.names)
            continue
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = ".".join(p for p in (base if node.level else "", node.module or "") if p)
        pairs.update((target, alias.name) for alias in node.names)
    return frozenset(pairs)


def app_dependencies(module: str) -> frozenset[str]:
    """The modules of ``app`` that ``module`` names directly."""
    modules = _modules()
    found: set[str] = set()
    for target, name in imports_of(module):
        submodule = f"{target}.{name}" if name else None
        if submodule in modules:
            found.add(submodule)
        elif target in modules:
            found.add(target)
    return frozenset(found)


def reachable(module: str, *, stop_at: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Every app module ``module`` reaches, each with one import path to it; modules in
    ``stop_at`` are reached but not followed."""
    paths = {module: [module]}
    stack = [module]
    while stack:
        current = stack.pop()
        if current in stop_at and current != module:
            continue
        for dependency in app_dependencies(current):
            if dependency not in paths:
                paths[dependency] = [*paths[current], dependency]
                stack.append(dependency)
    return paths


def _under(prefix: str) -> list[str]:
    return sorted(name for name in _modules() if name.startswith(prefix + ".") and not name.endswith("__init__"))


KINDS = _under("app.jobs.kinds")
DATA = _under("app.data")
DIALECTS = _under("app.realtime.dialects")
WORKFLOWS = ["app.workflows", *_under("app.workflows")]


def _reaching(module: str, prefix: str, *, stop_at: frozenset[str] = frozenset()) -> list[str]:
    return [
        " -> ".join(path)
        for name, path in sorted(reachable(module, stop_at=stop_at).items())
        if name == prefix or name.startswith(prefix + ".")
    ]


def test_the_graph_sees_the_modules_under_test():
    assert "app.jobs.kinds.data_import" in KINDS and "app.jobs.kinds.workflow" in KINDS
    assert "app.data.uploads" in DATA and "app.realtime.dialects.executions" in DIALECTS
    assert "app.realtime.pipeline" in reachable("app.jobs.context")  # the one door exists


@pytest.mark.parametrize("kind", KINDS)
def test_a_kind_reaches_no_transport_except_through_the_job_platform(kind):
    assert _reaching(kind, "app.realtime", stop_at=JOB_PLATFORM) == []


@pytest.mark.parametrize("module", DATA)
def test_data_helpers_reach_neither_transports_nor_the_job_platform(module):
    assert _reaching(module, "app.realtime") == []
    assert _reaching(module, "app.jobs") == []


@pytest.mark.parametrize("module", WORKFLOWS)
def test_the_workflow_nouns_know_neither_the_kind_nor_a_transport(module):
    assert _reaching(module, "app.jobs") == []
    assert _reaching(module, "app.realtime") == []


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dialect_reaches_no_job_kind(dialect):
    assert _reaching(dialect, "app.jobs.kinds") == []


def _model_classes() -> set[str]:
    """Names ``app.models`` exports that are tables (queryable), read from its sources."""
    tables: set[str] = set()
    for name in _under("app.models"):
        tree = ast.parse(_modules()[name].read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(ast.unparse(base) == "db.Model" for base in node.bases):
                tables.add(node.name)
    return tables


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dialect_queries_nothing_itself(dialect):
    """Dialects render from messages; what they need at subscribe comes through jobs.service."""
    tables = _model_classes()
    assert tables >= {"Job", "JobEvent"}
    offending = sorted(
        f"{target}:{name}"
        for target, name in imports_of(dialect)
        if target.split(".")[0] == "sqlalchemy"
        or (target == "app.extensions" and name == "db")
        or (target.startswith("app.models") and name in tables)
    )
    assert offending == []
