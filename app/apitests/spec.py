"""Parse and check a test case (YAML or JSON) with errors that name the line and path.

The shape follows seed 003: ``name``, ``description``, ``config`` (``base_url``,
``timeout``, ``variables``, ``websocket``), ``steps`` (``name``, ``request``,
``validate``, ``extract``, ``retry``, ``skip_if``). Unknown keys are refused, so a typo
such as ``valdiate`` is an error instead of a silently skipped check.
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import ValidationFailed
from ..inputs import MAX_DEPTH, InvalidDocument, check_document

#: Comparison operators a ``validate`` item may use (``status_code`` is a shorthand).
OPERATORS = ("eq", "ne", "contains", "lt", "gt")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_STEPS = 200
MAX_RETRIES = 10
MAX_TIMEOUT = 300.0

_TOP_KEYS = {"name", "description", "config", "steps"}
_CONFIG_KEYS = {"name", "base_url", "timeout", "variables", "websocket"}
_WEBSOCKET_KEYS = {"enabled", "host", "port", "send_progress", "send_logs", "send_variables"}
_STEP_KEYS = {"name", "type", "request", "validate", "extract", "retry", "skip_if"}
_REQUEST_KEYS = {"method", "url", "params", "headers", "json", "data", "timeout"}
_RETRY_KEYS = {"times", "delay"}

Path = tuple[str | int, ...]


def path_text(path: Path) -> str:
    """``("steps", 0, "request")`` → ``steps[0].request``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


class CaseError(ValidationFailed):
    """A test case that cannot be run; ``details`` = ``{path, line, message}``."""

    code = "invalid_test_case"

    def __init__(self, message: str, *, path: Path = (), line: int | None = None) -> None:
        where = path_text(path)
        prefix = f"line {line}: " if line is not None else ""
        super().__init__(f"{prefix}{where}: {message}", details={"path": where, "line": line, "message": message})


def _node_lines(node: yaml.Node, path: Path, lines: dict[Path, int]) -> None:
    """Record the 1-based line of every node under ``node`` by its path; a mapping entry
    is at its key's line (a block value starts on the next one, where no typo is)."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                lines[(*path, key_node.value)] = key_node.start_mark.line + 1
                _node_lines(value_node, (*path, key_node.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _node_lines(item, (*path, index), lines)


def load_yaml(text: str) -> tuple[Any, dict[Path, int]]:
    """Parse YAML into data plus a path → line map; syntax errors name their line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise CaseError("the document is empty", line=1)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise CaseError(f"invalid YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise CaseError(f"invalid YAML: {exc}") from None
    except RecursionError:
        raise CaseError(f"the document is nested deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()
    try:
        check_document(data)  # before anything walks it: aliases may expand it exponentially
    except InvalidDocument as exc:
        raise CaseError(str(exc)) from None
    lines: dict[Path, int] = {}
    _node_lines(node, (), lines)
    return data, lines


class _Checker:
    """Walks a case and raises the first problem with its path and line."""

    def __init__(self, lines: dict[Path, int]) -> None:
        self.lines = lines

    def fail(self, path: Path, message: str) -> CaseError:
        line = None
        probe = path
        while line is None and probe is not None:
            line = self.lines.get(probe)
            probe = probe[:-1] if probe else None
        return CaseError(message, path=path, line=line)

    def mapping(self, value: Any, path: Path, allowed: set[str], required: tuple[str, ...] = ()) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {_type_name(value)}")
        for key in value:
            if not isinstance(key, str):
                raise self.fail(path, f"keys must be strings, got {key!r}")
            if key not in allowed:
                raise self.fail((*path, key), f"unknown key {key!r}; allowed: {', '.join(sorted(allowed))}")
        for key in required:
            if key not in value:
                raise self.fail(path, f"missing required key {key!r}")
        return value

    def free_mapping(self, value: Any, path: Path) -> dict[str, Any]:
        """A mapping whose keys are the user's own (variables, headers ...)."""
        return self.mapping(value, path, set(value) if isinstance(value, dict) else set())

    def string(self, value: Any, path: Path, *, empty: bool = False) -> str:
        if not isinstance(value, str) or (not empty and not value.strip()):
            raise self.fail(path, f"must be a non-empty string, got {_type_name(value)}")
        return value

    def number(self, value: Any, path: Path, *, minimum: float, maximum: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not minimum <= value <= maximum:
            raise self.fail(path, f"must be a number between {minimum:g} and {maximum:g}, got {value!r}")
        return float(value)

    def boolean(self, value: Any, path: Path) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {value!r}")
        return value


def _type_name(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def check_case(data: Any, lines: dict[Path, int] | None = None) -> dict[str, Any]:
    """Return the case with defaults filled in, or raise :class:`CaseError`."""
    c = _Checker(lines or {})
    case = c.mapping(data, (), _TOP_KEYS, ("name", "steps"))
    c.string(case["name"], ("name",))
    if case.get("description") is not None:
        c.string(case["description"], ("description",), empty=True)
    config = c.mapping(case.get("config") or {}, ("config",), _CONFIG_KEYS)
    if "base_url" in config:
        c.string(config["base_url"], ("config", "base_url"))
    if "timeout" in config:
        c.number(config["timeout"], ("config", "timeout"), minimum=0.1, maximum=MAX_TIMEOUT)
    if "variables" in config:
        variables = c.free_mapping(config["variables"] or {}, ("config", "variables"))
        for name in variables:
            if not name.isidentifier():
                raise c.fail(("config", "variables", name), "variable names must be identifiers")
    websocket = c.mapping(config.get("websocket") or {}, ("config", "websocket"), _WEBSOCKET_KEYS)
    for flag in ("enabled", "send_progress", "send_logs", "send_variables"):
        if flag in websocket:
            c.boolean(websocket[flag], ("config", "websocket", flag))
    if "host" in websocket:
        c.string(websocket["host"], ("config", "websocket", "host"))
    if "port" in websocket:
        c.number(websocket["port"], ("config", "websocket", "port"), minimum=1, maximum=65535)
    steps = case["steps"]
    if not isinstance(steps, list) or not steps:
        raise c.fail(("steps",), "must be a non-empty list of steps")
    if len(steps) > MAX_STEPS:
        raise c.fail(("steps",), f"at most {MAX_STEPS} steps are allowed")
    for index, step in enumerate(steps):
        _check_step(c, step, ("steps", index))
    return case


def _check_step(c: _Checker, step: Any, path: Path) -> None:
    step = c.mapping(step, path, _STEP_KEYS, ("name", "request"))
    c.string(step["name"], (*path, "name"))
    if step.get("type", "request") != "request":
        raise c.fail((*path, "type"), f"unknown step type {step['type']!r}; only 'request' is supported")
    request = c.mapping(step["request"], (*path, "request"), _REQUEST_KEYS, ("url",))
    c.string(request["url"], (*path, "request", "url"))
    method = str(request.get("method", "GET")).upper()
    if method not in METHODS:
        raise c.fail((*path, "request", "method"), f"unknown method {request.get('method')!r}")
    for key in ("params", "headers"):
        if key in request:
            c.free_mapping(request[key] or {}, (*path, "request", key))
    if "json" in request and "data" in request:
        raise c.fail((*path, "request"), "use either 'json' or 'data', not both")
    if "timeout" in request:
        c.number(request["timeout"], (*path, "request", "timeout"), minimum=0.1, maximum=MAX_TIMEOUT)
    checks = step.get("validate") or []
    if not isinstance(checks, list):
        raise c.fail((*path, "validate"), "must be a list of checks")
    for index, check in enumerate(checks):
        _check_validator(c, check, (*path, "validate", index))
    extract = step.get("extract") or {}
    c.free_mapping(extract, (*path, "extract"))
    for name, source in extract.items():
        if not name.isidentifier():
            raise c.fail((*path, "extract", name), "variable names must be identifiers")
        c.string(source, (*path, "extract", name))
    if "retry" in step:
        retry = step["retry"]
        if isinstance(retry, dict):
            c.mapping(retry, (*path, "retry"), _RETRY_KEYS, ("times",))
            c.number(retry["times"], (*path, "retry", "times"), minimum=0, maximum=MAX_RETRIES)
            if "delay" in retry:
                c.number(retry["delay"], (*path, "retry", "delay"), minimum=0, maximum=60)
        else:
            c.number(retry, (*path, "retry"), minimum=0, maximum=MAX_RETRIES)
    if "skip_if" in step and not isinstance(step["skip_if"], str | bool):
        raise c.fail((*path, "skip_if"), "must be a string expression or true/false")


def _check_validator(c: _Checker, check: Any, path: Path) -> None:
    if not isinstance(check, dict) or len(check) != 1:
        raise c.fail(path, f"each check is a mapping with one operator ({', '.join(OPERATORS)}, status_code)")
    ((operator, operand),) = check.items()
    if operator == "status_code":
        if isinstance(operand, bool) or not isinstance(operand, int):
            raise c.fail((*path, operator), f"must be an integer status code, got {operand!r}")
        return
    if operator not in OPERATORS:
        known = ", ".join(OPERATORS)
        raise c.fail((*path, operator), f"unknown operator {operator!r}; use one of {known}, status_code")
    if not isinstance(operand, list) or len(operand) != 2 or not isinstance(operand[0], str):
        raise c.fail((*path, operator), "must be [target, expected], e.g. ['$.data.id', 1]")


def parse_case_yaml(text: str) -> dict[str, Any]:
    """Parse and check a YAML test case."""
    data, lines = load_yaml(text)
    return check_case(data, lines)


def websocket_options(case: dict[str, Any]) -> dict[str, Any]:
    """The case's ``config.websocket`` with defaults (everything off, localhost:8765)."""
    options = {
        "enabled": False,
        "host": "localhost",
        "port": 8765,
        "send_progress": False,
        "send_logs": False,
        "send_variables": False,
    }
    options.update((case.get("config") or {}).get("websocket") or {})
    return options


def dump_yaml(case: dict[str, Any]) -> str:
    """A case as YAML (JSON submissions are stored as YAML too)."""
    return yaml.safe_dump(case, sort_keys=False, allow_unicode=True)
