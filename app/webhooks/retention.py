"""How long a finished delivery's record is kept: ``WEBHOOK_DELIVERY_RETENTION_DAYS``.

Every job end of every webhook leaves a row, so without a bound the table grows forever.
Finished rows (``delivered`` or ``failed``) are deleted that many days after their last
attempt; ``pending`` rows never are (they still have attempts to make). The trim rides on
the job history's (``app/jobs/history.py``): the same heartbeat, every
``HISTORY_TRIM_INTERVAL``, a bounded amount per call, off the event loop on SQLite.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, delete, select

from ..database import write_off_the_loop
from ..models import WebhookDelivery

log = logging.getLogger(__name__)

#: Deliveries deleted per statement (like the history's, so no trim holds the database).
TRIM_BATCH = 5_000
#: Deletes per trim; what is left goes at the next one.
TRIM_STATEMENTS = 4
#: The states a delivery never leaves: only these are trimmed.
FINISHED = ("delivered", "failed")

_deliveries = WebhookDelivery.__table__


def max_age_from_config(config: dict) -> timedelta | None:
    """``WEBHOOK_DELIVERY_RETENTION_DAYS`` as an age (``None``: keep every record)."""
    days = float(config["WEBHOOK_DELIVERY_RETENTION_DAYS"])
    return timedelta(days=days) if days > 0 else None


def trim(engine: Engine, max_age: timedelta | None, *, now: datetime) -> int:
    """Delete finished deliveries whose last attempt is older than ``max_age``, a bounded
    amount per call; returns the count."""
    if max_age is None:
        return 0
    cutoff = now - max_age
    connection = engine.connect()  # checked out on the loop: the pool's locks are green
    try:

        def run() -> int:
            with connection.begin():
                return _trim(connection, cutoff)

        deleted = write_off_the_loop(engine, run)
    finally:
        connection.close()
    if deleted:
        log.info("webhook deliveries trimmed: %d finished record(s) deleted", deleted)
    return deleted


def _trim(connection: Connection, cutoff: datetime) -> int:
    deleted = 0
    for _ in range(TRIM_STATEMENTS):
        old = (
            select(_deliveries.c.id)
            .where(_deliveries.c.status.in_(FINISHED), _deliveries.c.last_attempt_at < cutoff)
            .limit(TRIM_BATCH)
        )
        count = connection.execute(delete(_deliveries).where(_deliveries.c.id.in_(old))).rowcount
        deleted += count
        if count < TRIM_BATCH:
            break
    return deleted
