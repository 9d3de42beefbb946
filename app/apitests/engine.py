"""The step engine: runs one test case with ``requests`` and reports every step.

``run_case`` knows nothing of jobs or sockets: it calls ``emit(type, data)`` for each
seed-003 event (``test_start``, ``step_start``, ``step_complete``, ``log``, ``error``,
``variable_update``, ``progress``, ``test_complete``); callers wrap ``emit`` in
:class:`EventFilter` to apply the case's ``send_*`` flags where events leave the process. It returns the
stored result: per step the request, response status, timing and assertion outcomes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from .hosts import HostRefused, check_url
from .masking import MASK, is_secret, mask_mapping, mask_value
from .spec import MAX_TIMEOUT, websocket_options

Emit = Callable[[str, dict[str, Any]], None]

#: Response bytes kept per step (the rest is read and dropped).
MAX_BODY_BYTES = 1024 * 1024
#: Response body characters stored in a step result.
BODY_PREVIEW_CHARS = 2000
DEFAULT_TIMEOUT = 30.0
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
JSON_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")

SUGGESTIONS = {
    "host_not_allowed": "add the host to API_TEST_ALLOWED_HOSTS or point the case at an allowed host",
    "assertion_failed": "compare the expected value with the response; see the step's assertions",
    "request_error": "check that the service is running and the URL is right",
    "timeout": "raise config.timeout or request.timeout, or check why the service is slow",
    "undefined_variable": "define the variable in config.variables or extract it in an earlier step",
    "extract_failed": "check the extract path against the response body",
    "unsupported_scheme": "use an http:// or https:// URL",
    "invalid_url": "use an absolute URL or set config.base_url",
}


class StepError(Exception):
    """A step that cannot go on; ``code`` becomes the step's ``error.code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class EventFilter:
    """Drops the event types a case did not ask for (``send_logs`` ...)."""

    emit: Emit
    send_logs: bool = False
    send_variables: bool = False
    send_progress: bool = False

    @classmethod
    def for_case(cls, case: dict[str, Any], emit: Emit) -> EventFilter:
        options = websocket_options(case)
        return cls(emit, options["send_logs"], options["send_variables"], options["send_progress"])

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        if type_ == "log" and not self.send_logs:
            return
        if type_ == "variable_update" and not self.send_variables:
            return
        if type_ == "progress" and not self.send_progress:
            return
        self.emit(type_, data)


@dataclass
class Variables:
    """The case's variables, with the set of values that must never appear in clear."""

    values: dict[str, Any] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)

    def set(self, name: str, value: Any) -> None:
        self.values[name] = value
        if is_secret(name) and isinstance(value, str | int) and str(value):
            self.secrets.add(str(value))

    def substitute(self, value: Any) -> Any:
        """Replace ``${name}`` everywhere; a string that is only ``${name}`` keeps its type."""
        if isinstance(value, str):
            whole = VARIABLE.fullmatch(value)
            if whole:
                return self._lookup(whole.group(1))
            return VARIABLE.sub(lambda m: str(self._lookup(m.group(1))), value)
        if isinstance(value, dict):
            return {self.substitute(k): self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        return value

    def _lookup(self, name: str) -> Any:
        if name not in self.values:
            raise StepError("undefined_variable", f"variable '{name}' is not defined")
        return self.values[name]

    def hide(self, text: str) -> str:
        """``text`` with every secret value replaced by ``***``."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def json_path(document: Any, path: str) -> Any:
    """Follow ``$.a.b[0].c`` (or ``a.b.0.c``) through decoded JSON; KeyError when absent."""
    rest = path[1:] if path.startswith("$") else path
    current = document
    for name, index in JSON_PATH_PART.findall(rest):
        key: str | int = int(index) if index else name
        if isinstance(current, list) and isinstance(key, str) and key.isdigit():
            key = int(key)
        if isinstance(current, list) and isinstance(key, int) and -len(current) <= key < len(current):
            current = current[key]
        elif isinstance(current, dict) and key in current:
            current = current[key]
        else:
            raise KeyError(path)
    return current


@dataclass
class Response:
    """What a step keeps of a response."""

    status_code: int
    headers: dict[str, str]
    text: str
    body: Any
    elapsed_ms: float
    size: int

    def target(self, name: str) -> Any:
        """The value a check or extraction names: status_code, headers.X, body/$ paths."""
        if name == "status_code":
            return self.status_code
        if name.lower().startswith("headers."):
            wanted = name[8:].lower()
            for key, value in self.headers.items():
                if key.lower() == wanted:
                    return value
            raise KeyError(name)
        if name in ("body", "$"):
            return self.body
        if name.startswith("body."):
            return json_path(self.body, name[5:])
        if name.startswith("$"):
            return json_path(self.body, name)
        raise KeyError(name)

    def summary(self) -> dict[str, Any]:
        return {"status_code": self.status_code, "elapsed_ms": round(self.elapsed_ms, 1), "size": self.size}


def _compare(operator: str, actual: Any, expected: Any) -> bool:
    try:
        if operator == "eq":
            return bool(actual == expected)
        if operator == "ne":
            return bool(actual != expected)
        if operator == "contains":
            return expected in actual if isinstance(actual, str | list | dict) else False
        if operator == "lt":
            return bool(actual < expected)
        if operator == "gt":
            return bool(actual > expected)
    except TypeError:
        return False
    raise ValueError(operator)


def _truthy(expression: Any) -> bool:
    """``skip_if`` after substitution: true/false, ``a == b``, ``a != b``; no eval."""
    if isinstance(expression, bool):
        return expression
    text = str(expression).strip()
    for operator in ("==", "!="):
        if operator in text:
            left, right = (part.strip().strip("'\"") for part in text.split(operator, 1))
            return (left == right) if operator == "==" else (left != right)
    return text.lower() in ("true", "yes", "1", "on")


@dataclass
class CaseRunner:
    """Runs one checked case; one instance per run."""

    case: dict[str, Any]
    allowed_hosts: frozenset[str]
    emit: Emit
    sleep: Callable[[float], None] = time.sleep
    check_cancel: Callable[[], None] = lambda: None
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.config = self.case.get("config") or {}
        self.variables = Variables()
        self.base_url = self.config.get("base_url") or ""
        self.timeout = min(float(self.config.get("timeout") or DEFAULT_TIMEOUT), MAX_TIMEOUT)

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", {"level": level, "message": self.variables.hide(message)})

    def set_variable(self, name: str, value: Any, source: str) -> None:
        self.variables.set(name, value)
        self.emit("variable_update", {"name": name, "value": mask_value(name, value), "source": source})

    def run(self) -> dict[str, Any]:
        """Run every step in order; returns ``{name, status, passed, failed, skipped, steps, duration_ms}``."""
        steps = self.case["steps"]
        started = time.monotonic()
        self.emit("test_start", {"name": self.case["name"], "total_steps": len(steps)})
        for name, value in (self.config.get("variables") or {}).items():
            self.set_variable(name, value, "config")
        results: list[dict[str, Any]] = []
        try:
            for index, step in enumerate(steps):
                self.check_cancel()
                results.append(self.run_step(index, step))
                # Facts only: percent and ETA are derived where progress is rendered (one
                # computation, ProgressState.payload), for a job's ticks and the CLI stream alike.
                self.emit("progress", {"current": index + 1, "total": len(steps)})
        finally:
            self.session.close()
        passed = sum(1 for r in results if r["status"] == "passed")
        failed = sum(1 for r in results if r["status"] == "failed")
        skipped = sum(1 for r in results if r["status"] == "skipped")
        status = "failed" if failed else "passed"
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        self.emit(
            "test_complete",
            {"status": status, "passed": passed, "failed": failed, "skipped": skipped, "duration_ms": duration_ms},
        )
        return {
            "name": self.case["name"],
            "status": status,
            "passed": passed,
            "failed": failed,
            "skipped": skipped,
            "total_steps": len(steps),
            "duration_ms": duration_ms,
            "steps": results,
        }

    def run_step(self, index: int, step: dict[str, Any]) -> dict[str, Any]:
        """Run one step with its retries; always returns a step result."""
        name = step["name"]
        self.emit("step_start", {"name": name, "type": step.get("type", "request"), "index": index})
        started = time.monotonic()
        result: dict[str, Any] = {"name": name, "index": index, "type": "request", "retries": 0}
        try:
            skip = step.get("skip_if")
            if skip is not None and _truthy(self.variables.substitute(skip)):
                result.update(status="skipped", error=None, request=None, response=None, assertions=[])
                self.log(f"step '{name}' skipped: skip_if is true")
            else:
                self._attempts(step, result)
        except StepError as exc:
            result.update(status="failed", error={"code": exc.code, "message": self.variables.hide(exc.message)})
            result.setdefault("request", None)
            result.setdefault("response", None)
            result.setdefault("assertions", [])
        result["duration_ms"] = round((time.monotonic() - started) * 1000, 1)
        if result["status"] == "failed":
            error = result["error"]
            self.emit(
                "error",
                {
                    "error_type": error["code"],
                    "message": error["message"],
                    "suggestion": SUGGESTIONS.get(error["code"], "see the step result"),
                    "step": name,
                    "index": index,
                },
            )
        self.emit(
            "step_complete",
            {
                "name": name,
                "index": index,
                "total_steps": len(self.case["steps"]),
                "status": result["status"],
                "duration_ms": result["duration_ms"],
                "retries": result["retries"],
                "response": None if result.get("response") is None else result["response"]["summary"],
                "error": result.get("error"),
            },
        )
        return result

    def _attempts(self, step: dict[str, Any], result: dict[str, Any]) -> None:
        retry = step.get("retry", 0)
        times = int(retry["times"] if isinstance(retry, dict) else retry)
        delay = float(retry.get("delay", 0.5)) if isinstance(retry, dict) else 0.5
        attempt = 0
        while True:
            self.check_cancel()
            try:
                self._attempt(step, result)
            except StepError as exc:
                if exc.code in ("host_not_allowed", "unsupported_scheme", "invalid_url", "undefined_variable"):
                    raise  # retrying cannot change these
                failure: StepError | None = exc
            else:
                failure = None
            if failure is None and result["status"] == "passed":
                return
            if attempt >= times:
                if failure is not None:
                    raise failure
                return
            attempt += 1
            result["retries"] = attempt
            reason = failure.message if failure is not None else result["error"]["message"]
            self.log(f"step '{step['name']}' attempt {attempt} failed ({reason}); retrying", "warning")
            self.sleep(delay)

    def _attempt(self, step: dict[str, Any], result: dict[str, Any]) -> None:
        spec = step["request"]
        method = str(spec.get("method", "GET")).upper()
        url = str(self.variables.substitute(spec["url"]))
        if self.base_url and not url.lower().startswith(("http://", "https://")):
            url = urljoin(self.base_url.rstrip("/") + "/", url.lstrip("/"))
        params = self.variables.substitute(spec.get("params") or {})
        headers = {str(k): str(v) for k, v in self.variables.substitute(spec.get("headers") or {}).items()}
        body_json = self.variables.substitute(spec["json"]) if "json" in spec else None
        body_data = self.variables.substitute(spec["data"]) if "data" in spec else None
        timeout = min(float(spec.get("timeout") or self.timeout), MAX_TIMEOUT)
        result["request"] = {
            "method": method,
            "url": self.variables.hide(url),
            "params": mask_mapping(params),
            "headers": mask_mapping(headers),
        }
        result["response"] = None
        result["assertions"] = []
        try:
            check_url(url, self.allowed_hosts)
        except HostRefused as exc:
            raise StepError(exc.code, exc.message) from None
        response = self._send(method, url, params, headers, body_json, body_data, timeout)
        result["response"] = {
            "status_code": response.status_code,
            "elapsed_ms": round(response.elapsed_ms, 1),
            "headers": mask_mapping(response.headers),
            "body": self.variables.hide(response.text[:BODY_PREVIEW_CHARS]),
            "summary": response.summary(),
        }
        assertions = [self._check(check, response) for check in step.get("validate") or []]
        result["assertions"] = assertions
        failed = [a for a in assertions if not a["passed"]]
        if failed:
            result.update(status="failed", error={"code": "assertion_failed", "message": failed[0]["message"]})
            return
        for name, source in (step.get("extract") or {}).items():
            try:
                value = response.target(source)
            except KeyError:
                message = f"cannot extract '{name}': '{source}' is not in the response"
                raise StepError("extract_failed", message) from None
            self.set_variable(name, value, f"step:{step['name']}")
        result.update(status="passed", error=None)

    def _send(
        self,
        method: str,
        url: str,
        params: dict[str, Any],
        headers: dict[str, str],
        body_json: Any,
        body_data: Any,
        timeout: float,
    ) -> Response:
        started = time.monotonic()
        try:
            raw = self.session.request(
                method,
                url,
                params=params or None,
                headers=headers or None,
                json=body_json,
                data=body_data,
                timeout=timeout,
                allow_redirects=False,
                stream=True,
            )
            try:
                content = raw.raw.read(MAX_BODY_BYTES, decode_content=True) or b""
            finally:
                raw.close()
        except requests.Timeout:
            raise StepError("timeout", f"no response from {self.variables.hide(url)} within {timeout:g}s") from None
        except requests.RequestException as exc:
            reason = type(exc).__name__
            raise StepError("request_error", f"{method} {self.variables.hide(url)} failed: {reason}") from None
        elapsed_ms = (time.monotonic() - started) * 1000
        text = content.decode(raw.encoding or "utf-8", errors="replace")
        try:
            body: Any = json.loads(text) if text else None
        except ValueError:
            body = text
        return Response(raw.status_code, dict(raw.headers), text, body, elapsed_ms, len(content))

    def _check(self, check: dict[str, Any], response: Response) -> dict[str, Any]:
        ((operator, operand),) = check.items()
        if operator == "status_code":
            target, expected = "status_code", operand
            operator = "eq"
        else:
            target, expected = operand[0], self.variables.substitute(operand[1])
        try:
            actual = response.target(target)
        except KeyError:
            return {
                "check": operator,
                "target": target,
                "expected": expected,
                "actual": None,
                "passed": False,
                "message": f"{target} is not in the response",
            }
        passed = _compare(operator, actual, expected)
        shown = mask_value(target.split(".")[-1], actual)
        return {
            "check": operator,
            "target": target,
            "expected": expected,
            "actual": shown,
            "passed": passed,
            "message": "ok" if passed else f"{target}: expected {operator} {expected!r}, got {shown!r}",
        }


def run_case(
    case: dict[str, Any],
    *,
    allowed_hosts: frozenset[str],
    emit: Emit,
    sleep: Callable[[float], None] = time.sleep,
    check_cancel: Callable[[], None] = lambda: None,
) -> dict[str, Any]:
    """Run a checked case, reporting every event through ``emit``; returns the result."""
    return CaseRunner(case, allowed_hosts, emit, sleep=sleep, check_cancel=check_cancel).run()
