"""Import benchmark: rows/s and memory growth of ``data_import`` on a generated CSV.

Runs the real job kind (the same code as the server) in-process, threading mode, on a
fresh SQLite file: a 200,000-row, ~30 MB CSV by default. Memory is sampled from
``/proc/self/status`` every 10 ms; the figure that matters is the growth over the
baseline taken just before the import starts (the app, the user and the file exist).

    .venv/bin/python bench/import_bench.py            # 200,000 rows
    .venv/bin/python bench/import_bench.py --rows 50000 --bad-every 1000
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HERALD_ENV", "testing")


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def make_csv(path: Path, rows: int, bad_every: int, seed: int = 42) -> None:
    """A sales-like CSV of about 150 bytes per row; every ``bad_every``-th row has a bad qty."""
    rnd = random.Random(seed)
    cities = ["Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Strasbourg", "Bordeaux"]
    categories = ["books", "music", "garden", "tools", "toys", "food"]
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("order_id,customer,city,category,qty,price,paid,note\n")
        for i in range(rows):
            qty = "n/a" if bad_every and i % bad_every == bad_every - 1 else str(rnd.randint(1, 40))
            fh.write(
                f"{100000 + i},customer-{rnd.randint(1, 50000):05d},{rnd.choice(cities)},{rnd.choice(categories)},"
                f"{qty},{rnd.uniform(1, 999):.2f},{rnd.choice(['true', 'false'])},"
                "order placed through the web shop with standard delivery to the customer address on file"
                f" #{rnd.randint(1, 10**6)}\n"
            )


class PeakSampler(threading.Thread):
    """Samples RSS until stopped; keeps the peak."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = rss_mb()
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.01):
            self.peak = max(self.peak, rss_mb())

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--bad-every", type=int, default=0, help="make every Nth row bad (0: none)")
    parser.add_argument("--repeat", type=int, default=3, help="imports to run (replace mode after the first)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="herald-import-bench-"))
    try:
        from flask_migrate import upgrade

        from app import create_app
        from app.cli import create_user
        from app.database import commit_session
        from app.extensions import db
        from app.jobs.runner import runner
        from app.jobs.service import submit_job
        from app.models import Job, Upload

        app = create_app(
            {
                "ENV_NAME": "testing",
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{workdir / 'bench.db'}",
                "SOCKETIO_ASYNC_MODE": "threading",
                "UPLOAD_DIR": str(workdir / "uploads"),
                "ARTIFACT_DIR": str(workdir / "artifacts"),
                "LOG_LEVEL": "WARNING",
            }
        )
        source = workdir / "source.csv"
        make_csv(source, args.rows, args.bad_every)
        size_mb = source.stat().st_size / 1e6
        with app.app_context():
            upgrade(directory=str(Path(__file__).resolve().parent.parent / "migrations"), revision="heads")
            user = create_user("bench", "bench-password")
            (workdir / "uploads").mkdir()
            shutil.move(str(source), workdir / "uploads" / "bench.upload")
            db.session.add(
                Upload(
                    owner_id=user.id,
                    upload_id="bench",
                    filename="orders.csv",
                    stored_name="bench.upload",
                    size=int(size_mb * 1e6),
                    status="completed",
                )
            )
            commit_session()
            user_id = user.id
            db.session.remove()

            baseline = rss_mb()
            sampler = PeakSampler()
            sampler.start()
            runs: list[tuple[float, float]] = []
            result: dict = {}
            for run in range(args.repeat):
                params = {"upload_id": "bench", "dataset": "orders", **({"mode": "replace"} if run else {})}
                started, cpu_started = time.perf_counter(), time.process_time()
                job = submit_job(user_id, "data_import", params)
                runner.wait(job.id, timeout=600)
                runs.append((time.perf_counter() - started, time.process_time() - cpu_started))
                db.session.expire_all()
                finished = db.session.get(Job, job.id)
                assert finished is not None
                if finished.status != "completed":
                    print(f"import {finished.status}: {finished.error}", file=sys.stderr)
                    return 1
                result = finished.result
                db.session.remove()
            peak = sampler.stop()
        rows = result["processed_rows"]
        best_wall = min(w for w, _c in runs)
        best_cpu = min(c for _w, c in runs)
        print(f"file           {args.rows:,} rows, {size_mb:.1f} MB CSV")
        print(f"imported       {result['imported_rows']:,} rows, rejected {result['rejected_rows']:,}")
        print("runs (wall)    " + ", ".join(f"{rows / w:,.0f}" for w, _c in runs) + " rows/s")
        print(
            f"best           {best_wall:.2f} s wall = {rows / best_wall:,.0f} rows/s ({size_mb / best_wall:.1f} MB/s)"
        )
        print(f"CPU            {best_cpu:.2f} s = {rows / best_cpu:,.0f} rows per CPU-second (all threads)")
        print(f"RSS baseline   {baseline:.1f} MiB")
        print(f"RSS peak       {peak:.1f} MiB  (growth {peak - baseline:+.1f} MiB over {len(runs)} imports)")
        return 0
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
