"""Per-connection limits (``app.realtime.limits``) without a server."""

from __future__ import annotations

import contextlib

import pytest

from app.errors import TooMany
from app.realtime import limits


def test_subscriptions_being_made_count_against_the_cap(monkeypatch):
    """Socket.IO handles a connection's subscribes side by side: one whose database read
    is still under way holds its slot, so the next one past the cap is refused."""
    monkeypatch.setitem(limits.subscription_cap, "max", 2)
    with contextlib.ExitStack() as held:
        held.enter_context(limits.subscription_slot("conn", 1))
        held.enter_context(limits.subscription_slot("conn", 2))
        held.enter_context(limits.subscription_slot("conn", 2))  # the same job again: no new slot
        with pytest.raises(TooMany) as refused:
            held.enter_context(limits.subscription_slot("conn", 3))
        assert refused.value.code == "too_many_subscriptions"
        held.enter_context(limits.subscription_slot("other", 3))  # other connections: their own cap
    with limits.subscription_slot("conn", 3):  # released once made (or refused)
        pass
    assert limits._subscribing == {}
