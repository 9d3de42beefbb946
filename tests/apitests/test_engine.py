"""The step engine against a real local HTTP service (no app, no jobs)."""

from __future__ import annotations

from typing import Any

from app.apitests.engine import EventFilter, run_case
from app.apitests.hosts import normalise_hosts
from app.apitests.spec import parse_case_yaml
from tests.target_service import login_case_yaml

ALLOWED = normalise_hosts(["localhost", "127.0.0.1", "::1"])


def run(yaml_text: str, allowed: frozenset[str] = ALLOWED) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    case = parse_case_yaml(yaml_text)
    result = run_case(case, allowed_hosts=allowed, emit=lambda t, d: events.append((t, d)), sleep=lambda s: None)
    return result, events


def test_case_with_extraction_substitution_retry_and_failing_assertion(target):
    result, events = run(login_case_yaml(target.url))

    assert [(s["name"], s["status"], s["retries"]) for s in result["steps"]] == [
        ("login", "passed", 0),
        ("read user", "passed", 0),
        ("flaky", "passed", 1),
        ("items", "failed", 0),
    ]
    assert result["status"] == "failed" and (result["passed"], result["failed"]) == (3, 1)
    items = result["steps"][3]
    assert items["error"] == {"code": "assertion_failed", "message": "$.count: expected eq 4, got 3"}
    assert items["assertions"][0] | {} == {
        "check": "eq",
        "target": "$.count",
        "expected": 4,
        "actual": 3,
        "passed": False,
        "message": "$.count: expected eq 4, got 3",
    }
    read_user = result["steps"][1]
    assert read_user["request"]["url"] == f"{target.url}/users/7"  # ${user_id} substituted
    assert read_user["request"]["headers"] == {"Authorization": "***"}  # the token never stored
    assert read_user["response"]["status_code"] == 200
    assert target.hits == [
        ("POST", "/login"),
        ("GET", "/users/7"),
        ("GET", "/flaky"),
        ("GET", "/flaky"),
        ("GET", "/items"),
    ]

    types = [t for t, _ in events]
    assert types == [
        "test_start",
        "variable_update",
        *["step_start", "variable_update", "variable_update", "step_complete", "progress"],
        *["step_start", "step_complete", "progress"],
        *["step_start", "log", "step_complete", "progress"],
        *["step_start", "error", "step_complete", "progress"],
        "test_complete",
    ]
    assert events[0][1] == {"name": "user flow", "total_steps": 4}
    assert events[1][1] == {"name": "user_name", "value": "alice", "source": "config"}
    assert events[3][1] == {"name": "token", "value": "***", "source": "step:login"}
    assert events[4][1] == {"name": "user_id", "value": 7, "source": "step:login"}
    flaky_done = events[12][1]
    assert (flaky_done["name"], flaky_done["status"], flaky_done["retries"]) == ("flaky", "passed", 1)
    assert flaky_done["response"]["status_code"] == 200
    assert events[11][1]["level"] == "warning" and "attempt 1 failed" in events[11][1]["message"]
    error = events[15][1]
    assert error["error_type"] == "assertion_failed" and error["message"] == "$.count: expected eq 4, got 3"
    assert error["suggestion"]
    assert events[-2][1] == {"current": 4, "total": 4}  # facts: percent and ETA are derived downstream
    final = events[-1][1]
    assert (final["status"], final["passed"], final["failed"]) == ("failed", 3, 1)
    assert final["duration_ms"] >= 0


def test_event_filter_drops_logs_variables_and_progress_by_default(target):
    events: list[str] = []
    case = parse_case_yaml(login_case_yaml(target.url))
    run_case(
        case,
        allowed_hosts=ALLOWED,
        emit=EventFilter.for_case(case, lambda t, d: events.append(t)),
        sleep=lambda s: None,
    )
    assert set(events) == {"test_start", "step_start", "step_complete", "error", "test_complete"}


def test_disallowed_host_is_refused_and_nothing_is_sent(target):
    result, events = run(login_case_yaml(target.url), allowed=normalise_hosts(["localhost"]))
    login = result["steps"][0]
    assert login["status"] == "failed"
    assert login["error"] == {
        "code": "host_not_allowed",
        "message": "host '127.0.0.1' is not allowed by API_TEST_ALLOWED_HOSTS",
    }
    assert login["response"] is None
    assert target.hits == []
    error = next(d for t, d in events if t == "error")
    assert error["error_type"] == "host_not_allowed"


def test_redirects_are_not_followed(target):
    step = f"{{name: go, request: {{url: '{target.url}/redirect'}}, validate: [status_code: 302]}}"
    yaml_text = f"name: r\nsteps: [{step}]\n"
    result, _ = run(yaml_text)
    assert result["steps"][0]["status"] == "passed"
    assert target.hits == [("GET", "/redirect")]


def test_skip_if_skips_a_step(target):
    yaml_text = (
        f"name: s\nconfig: {{variables: {{env: prod}}}}\nsteps:\n"
        f"  - name: only in test\n    skip_if: '${{env}} == prod'\n    request: {{url: '{target.url}/items'}}\n"
    )
    result, _ = run(yaml_text)
    assert result["steps"][0]["status"] == "skipped" and result["status"] == "passed"
    assert target.hits == []


def test_undefined_variable_fails_the_step_with_a_clear_error(target):
    yaml_text = f"name: u\nsteps:\n  - name: x\n    request: {{url: '{target.url}/users/${{missing}}'}}\n"
    result, _ = run(yaml_text)
    assert result["steps"][0]["error"] == {"code": "undefined_variable", "message": "variable 'missing' is not defined"}
