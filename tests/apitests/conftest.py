"""Fixtures for API test cases: the local target service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.target_service import TargetService


@pytest.fixture
def target() -> Iterator[TargetService]:
    """A real HTTP service on 127.0.0.1 for the cases to call."""
    service = TargetService().start()
    yield service
    service.stop()
