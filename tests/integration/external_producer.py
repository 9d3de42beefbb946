"""A producer outside Herald, run as its own process by ``test_external_producers.py``.

``python external_producer.py URL USERNAME PASSWORD MODE``: creates an external job with the
Python client (``clients/python``), prints its id, waits for a line on stdin (the test has
subscribed by then), reports, and prints what it came to.

- ``progress``: 10,000 progress updates and 100 log lines (one every 100 updates), then
  completes with a result.
- ``cancel``: tracks an endless stream of rows until the job is cancelled in Herald.
"""

from __future__ import annotations

import itertools
import sys
import time

from herald_client import Herald


def main(url: str, username: str, password: str, mode: str) -> int:
    herald = Herald(url, username=username, password=password)
    with herald.job(f"external {mode}", total=10_000 if mode == "progress" else None) as job:
        print(job.id, flush=True)
        sys.stdin.readline()
        if mode == "progress":
            for i in range(1, 10_001):
                job.progress(i, 10_000)
                if i % 100 == 0:
                    job.log(f"line {i // 100 - 1}")
                    time.sleep(0.02)  # a producer that works: the watcher sees it move
            job.count(rows=10_000)
            job.result({"rows": 10_000})
        else:
            for _row in job.track(itertools.count()):
                time.sleep(0.01)
    print("cancelled" if job.cancelled else job.status, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
