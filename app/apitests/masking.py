"""Secret masking: values whose names look secret never leave the engine in clear.

Applied to ``variable_update`` events, stored request headers and extracted values, even
when ``send_variables`` is on.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"
SECRET_NAME = re.compile(r"(token|passw|secret|api[_-]?key|auth|cookie|session|credential|private)", re.IGNORECASE)


def is_secret(name: str) -> bool:
    """True for names such as ``access_token``, ``password``, ``Authorization``."""
    return bool(SECRET_NAME.search(name))


def mask_value(name: str, value: Any) -> Any:
    """``***`` for a secret name, the value otherwise."""
    return MASK if is_secret(name) else value


def mask_mapping(values: dict[str, Any] | None) -> dict[str, Any]:
    """A copy with every secret-looking key's value masked (recursively)."""
    if not values:
        return {}
    masked: dict[str, Any] = {}
    for key, value in values.items():
        if is_secret(str(key)):
            masked[key] = MASK
        elif isinstance(value, dict):
            masked[key] = mask_mapping(value)
        else:
            masked[key] = value
    return masked
