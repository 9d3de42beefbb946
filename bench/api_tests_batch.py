"""Benchmark: API test cases — engine steps/s, and batch_execution cases/s on the real server.

    .venv/bin/python bench/api_tests_batch.py [--cases 40] [--steps 3]

Starts a local JSON service (``http.server``, threads) and Herald as deployed
(``python wsgi.py``, eventlet, SQLite, fresh database), creates ``--cases`` cases of
``--steps`` requests each, then runs one ``batch_execution`` per concurrency level and
reports wall time, cases/s and requests/s. The engine line runs one long case in this
process (no jobs, no events stored) to show the per-step cost without the job machinery.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        raw = json.dumps({"items": [1, 2, 3], "count": 3}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def case_yaml(base_url: str, name: str, steps: int) -> str:
    body = "\n".join(
        f"  - name: step {n}\n    request: {{url: /items}}\n    validate: [status_code: 200, eq: [$.count, 3]]"
        for n in range(steps)
    )
    return f"name: {name}\nconfig: {{base_url: '{base_url}'}}\nsteps:\n{body}\n"


def engine_steps_per_second(base_url: str, steps: int = 200) -> float:
    from app.apitests.engine import run_case
    from app.apitests.hosts import normalise_hosts
    from app.apitests.spec import parse_case_yaml

    case = parse_case_yaml(case_yaml(base_url, "engine", steps))
    started = time.perf_counter()
    run_case(case, allowed_hosts=normalise_hosts(["127.0.0.1"]), emit=lambda t, d: None)
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    args = parser.parse_args()

    from tests.integration.conftest import ServerProcess, prepare_database

    target = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{target.server_address[1]}"
    rows = [
        f"| engine only (1 case, 200 steps, in process) | - | - | {engine_steps_per_second(base_url):.0f} steps/s |"
    ]

    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite:///{tmp}/bench.db"
        prepare_database(database_url, ["bench"])
        server = ServerProcess(Path(tmp), {"DATABASE_URL": database_url, "MAX_CONCURRENT_JOBS": "16"})
        server.start()
        try:
            token = server.login("bench")
            ids = []
            for n in range(args.cases):
                response = requests.post(
                    server.url + "/api/test-cases",
                    data=case_yaml(base_url, f"case {n}", args.steps),
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/yaml"},
                    timeout=30,
                )
                ids.append(response.json()["test_case"]["id"])
            for concurrency in args.concurrency:
                started = time.perf_counter()
                job = server.submit(token, "batch_execution", test_case_ids=ids, concurrency=concurrency)
                while True:
                    snapshot = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
                    if snapshot["status"] in ("completed", "failed", "cancelled"):
                        break
                    time.sleep(0.05)
                wall = time.perf_counter() - started
                counts = snapshot["counts"]
                rows.append(
                    f"| batch, {args.cases} cases x {args.steps} steps | {concurrency} | {wall:.2f} s | "
                    f"{args.cases / wall:.1f} cases/s, {args.cases * args.steps / wall:.0f} requests/s "
                    f"({counts['success_count']} ok, {counts['failed_count']} failed) |"
                )
        finally:
            server.stop()
            target.shutdown()
    print("| scenario | concurrency | wall | throughput |")
    print("|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
