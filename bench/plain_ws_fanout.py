"""Plain-WebSocket fan-out: N ``/ws`` clients on one job, one asyncio process.

Starts the real server (``tests/integration/serve_with_test_kinds.py``) on a temporary
SQLite database, connects N clients, subscribes them to a gated ``test_chatty`` job,
opens the gate and measures how long until every client has the final status.

    .venv/bin/python bench/plain_ws_fanout.py --clients 500 --lines 100 --size 200

Prints connect time, delivery time and messages delivered per second. Figures depend
on the machine; see bench/README.md for the ones measured here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HERALD_ENV", "testing")

from tests.integration.plain_ws import connect, send_json, start_server  # noqa: E402


async def client(server, token, job_id, subscribed, counts):
    async with await connect(server, "/ws", token, ping_interval=None, max_size=None, open_timeout=300) as ws:
        await send_json(ws, {"type": "subscribe", "job_id": job_id})
        received = 0
        async for raw in ws:
            message = json.loads(raw)
            received += 1
            if message["type"] == "subscribed":
                subscribed.append(1)
            elif message["type"] == "job_status" and message["data"]["status"] == "completed":
                break
        counts.append(received)


async def run(args: argparse.Namespace) -> None:
    servers = start_server(Path(tempfile.mkdtemp()), WEBSOCKET_SEND_QUEUE="100000")
    server = next(servers)
    try:
        token = server.login("alice")
        gate = Path(tempfile.mkdtemp()) / "go"
        job = server.submit(
            token, "test_chatty", lines=args.lines, size=args.size, interval=args.interval, gate=str(gate)
        )
        subscribed: list[int] = []
        counts: list[int] = []
        started = time.perf_counter()
        tasks = [asyncio.create_task(client(server, token, job["id"], subscribed, counts)) for _ in range(args.clients)]
        while len(subscribed) < args.clients:
            await asyncio.sleep(0.05)
        connected = time.perf_counter() - started
        gate.touch()
        opened = time.perf_counter()
        await asyncio.gather(*tasks)
        delivered = time.perf_counter() - opened
        total = sum(counts)
        row = server.api("GET", f"/api/jobs/{job['id']}", token).json()["job"]
        from datetime import datetime

        ran = (datetime.fromisoformat(row["finished_at"]) - datetime.fromisoformat(row["started_at"])).total_seconds()
        print(f"mode={os.environ.get('SOCKETIO_ASYNC_MODE', 'eventlet')} clients={args.clients} lines={args.lines}")
        print(f"connect+subscribe all: {connected:.2f} s")
        print(f"job ran (incl. gate wait): {ran:.2f} s; its sleeps alone: {args.lines * args.interval:.2f} s")
        print(f"gate to every client's final status: {delivered:.2f} s")
        print(f"messages delivered: {total} ({total / delivered:.0f}/s)")
    finally:
        next(servers, None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--lines", type=int, default=100)
    parser.add_argument("--size", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.01)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
