"""docs/OPERATIONS.md lists every metric and log field; the README lists the settings."""

from __future__ import annotations

import re
from pathlib import Path

from app.observability import STATE_METRICS

DOCS = Path(__file__).resolve().parent.parent
OPERATIONS = (DOCS / "docs" / "OPERATIONS.md").read_text()
README = (DOCS / "README.md").read_text()


def test_every_herald_metric_is_documented(client):
    declared = set(re.findall(r"^# TYPE (herald_\w+) ", client.get("/metrics").get_data(as_text=True), re.M))
    declared |= {name + "_total" if kind == "counter" else name for name, (kind, _, _) in STATE_METRICS.items()}
    missing = sorted(name for name in declared if f"`{name}`" not in OPERATIONS)
    assert not missing, f"metrics missing from docs/OPERATIONS.md: {missing}"


def test_every_json_log_field_is_documented():
    fields = ["time", "level", "logger", "message", "job_id", "method", "path", "status", "duration_ms"]
    fields += ["remote_addr", "exception", "stack"]
    missing = [field for field in fields if f"`{field}`" not in OPERATIONS]
    assert not missing, f"log fields missing from docs/OPERATIONS.md: {missing}"


def test_operator_settings_are_in_the_readme_and_the_operations_doc():
    for setting in ("LOG_LEVEL", "LOG_FORMAT", "REQUEST_LOG", "METRICS_TOKEN"):
        assert f"| `{setting}` |" in README, setting
        assert f"`{setting}`" in OPERATIONS, setting
