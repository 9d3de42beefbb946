"""A Celery app that is not Herald's: its task reports into Herald as an external job.

Run a worker beside any Herald server (the worker needs only Celery, a broker and
``herald-client``; it shares nothing else with Herald)::

    pip install celery redis ./clients/python
    export CELERY_BROKER_URL=redis://127.0.0.1:6379/0
    export HERALD_URL=http://127.0.0.1:5000 HERALD_USERNAME=demo HERALD_PASSWORD=demo-password
    celery -A nightly worker --pool threads --loglevel INFO      # from examples/celery

and send it work from anywhere: ``nightly.import_rows.delay(5000)``, or by name without
importing this module: ``Celery(broker=...).send_task("nightly.import_rows", args=[5000])``.
The job appears on Herald's pages at once and moves while the task runs; cancelling it
there stops the task's loop.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from herald_client import Herald

app = Celery("nightly", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))


def herald() -> Herald:
    """Herald as the worker's environment names it (a user's password: tokens expire)."""
    url = os.environ["HERALD_URL"]
    if os.environ.get("HERALD_TOKEN"):
        return Herald(url, token=os.environ["HERALD_TOKEN"])
    return Herald(url, username=os.environ["HERALD_USERNAME"], password=os.environ["HERALD_PASSWORD"])


@app.task(name="nightly.import_rows")
def import_rows(rows: int, seconds_per_row: float = 0.001) -> dict[str, Any]:
    """Import ``rows`` rows (here: pretend to), reporting each into an external Herald job."""
    with herald().job(f"nightly import of {rows} rows", total=rows) as job:
        rejected = 0
        for number in job.track(range(1, rows + 1)):
            time.sleep(seconds_per_row)  # the real work would be here
            if number % 97 == 0:
                rejected += 1
                job.log(f"row {number} rejected: no customer id", level="warning")
            job.count(imported=number - rejected, rejected=rejected)
        job.result({"rows": rows, "rejected": rejected})
    return {"job_id": job.id, "status": job.status}
