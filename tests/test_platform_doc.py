"""docs/PLATFORM.md stays true: its settings, files and routes exist, and its receiver code
verifies a real delivery signature."""

from __future__ import annotations

import re
import time
from pathlib import Path

from app.config import Config
from app.webhooks.signing import signature_header

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = (ROOT / "docs" / "PLATFORM.md").read_text()


def test_every_setting_it_names_is_a_setting():
    named = set(re.findall(r"`([A-Z][A-Z0-9_]{4,})`", PLATFORM))
    missing = sorted(name for name in named if not hasattr(Config, name))
    assert named and not missing, f"docs/PLATFORM.md names settings Herald does not have: {missing}"


def test_every_file_it_names_exists():
    named = set(re.findall(r"`((?:app|clients|examples|static|tests)/[^`\s]*)", PLATFORM))
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert named and not missing, f"docs/PLATFORM.md names files that do not exist: {missing}"


def test_every_route_it_names_is_served(app):
    def shape(path: str) -> str:  # the doc may call a parameter <id> where the route says <job_id>
        return re.sub(r"<[^>]*>", "<>", path)

    named = {shape(path) for path in re.findall(r"`(?:GET|POST|PUT|PATCH|DELETE) (/[^`?\s]*)", PLATFORM)}
    served = {shape(rule.rule) for rule in app.url_map.iter_rules()}
    missing = sorted(path for path in named if path not in served)
    assert named and not missing, f"docs/PLATFORM.md names routes Herald does not serve: {missing}"


def test_the_receiver_code_verifies_a_delivery_and_refuses_a_forged_one():
    block = re.search(r"```python\n(import hashlib.*?)```", PLATFORM, re.S)
    assert block, "the webhook verification snippet is missing from docs/PLATFORM.md"
    namespace: dict[str, object] = {}
    exec(compile(block.group(1), "PLATFORM.md", "exec"), namespace)  # noqa: S102 - our own documentation
    verify = namespace["herald_signature_ok"]
    body = b'{"event": "job.completed", "job": {"id": 7}}'
    header = signature_header("s3cret", int(time.time()), body)
    assert verify("s3cret", header, body) is True  # type: ignore[operator]
    assert verify("s3cret", header, body + b" ") is False  # type: ignore[operator]
    assert verify("other", header, body) is False  # type: ignore[operator]
    old = signature_header("s3cret", int(time.time()) - 3600, body)
    assert verify("s3cret", old, body) is False  # type: ignore[operator]
