"""Several Herald processes on one PostgreSQL and one Redis: web processes and Celery workers.

Every process is a real child: ``gunicorn -k eventlet`` (as deployed) or ``python wsgi.py``
for web processes, ``celery -A app.worker worker`` for workers. Each test gets its own
database and its own ``redis-server`` (so a test may stop it, and no broker message of
another test is ever consumed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.engines import RedisServer

from .conftest import ROOT, ServerProcess, _running

BIN = Path(sys.executable).parent
#: Lease timing for these tests: short, so that a dead worker is noticed within seconds.
FAST_LEASES = {"JOB_LEASE_SECONDS": "4", "WORKER_HEARTBEAT_INTERVAL": "1"}


class GunicornServer(ServerProcess):
    """A web process as the Dockerfile runs it: gunicorn's eventlet worker on ``wsgi:app``."""

    def command(self) -> list[str]:
        return [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-k", "eventlet", "-w", "1", "wsgi:app"]


class CeleryWorker:
    """``celery -A app.worker worker`` with a thread pool, in its own process group."""

    def __init__(self, workdir: Path, env: dict[str, str], *, concurrency: int = 4) -> None:
        self.env = {**os.environ, **env, "HERALD_ENV": "testing", "PYTHONUNBUFFERED": "1"}
        self.log_path = workdir / f"celery-{len(list(workdir.glob('celery-*.log')))}.log"
        self.concurrency = concurrency
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorker:
        args = [str(BIN / "celery"), "-A", "app.worker", "worker", "--pool", "threads"]
        args += ["--concurrency", str(self.concurrency), "--loglevel", "INFO"]
        args += ["--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"herald-{os.getpid()}@%h"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """``kill -9`` of the whole worker: nothing cleans up."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Cluster:
    """Web processes and workers sharing one database and one Redis; stopped together."""

    def __init__(self, tmp_path: Path, database_url: str, **env: str) -> None:
        self.tmp_path = tmp_path
        self.redis = RedisServer().start()
        self.env = {
            "DATABASE_URL": database_url,
            "MESSAGE_QUEUE_URL": self.redis.url(0),
            "CELERY_BROKER_URL": self.redis.url(1),
            "UPLOAD_DIR": str(tmp_path / "uploads"),
            "ARTIFACT_DIR": str(tmp_path / "artifacts"),
            **FAST_LEASES,
            **env,
        }
        self.processes: list[Any] = []

    def web(self, server_class: type[ServerProcess] = GunicornServer, **env: str) -> Any:
        workdir = self.tmp_path / f"web-{len(self.processes)}"
        workdir.mkdir()
        server = server_class(workdir, {**self.env, **env})
        self.processes.append(server)
        _running.append(server)  # a failed test's report carries its log
        server.start()
        return server

    def worker(self, **env: str) -> CeleryWorker:
        worker = CeleryWorker(self.tmp_path, {**self.env, **env})
        self.processes.append(worker)
        _running.append(worker)  # a failed test's report carries its log
        return worker.start()

    def job_row(self, job_id: int) -> dict[str, Any]:
        """The job's row as stored (columns clients never see, such as ``worker_id``)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.env["DATABASE_URL"].replace("postgresql://", "postgresql+psycopg2://", 1))
        try:
            with engine.connect() as conn:
                row = conn.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}).mappings().one()
                return dict(row)
        finally:
            engine.dispose()

    def logs(self) -> str:
        parts = []
        for proc in self.processes:
            path = getattr(proc, "log_path", None)
            if path is not None and Path(path).exists():
                parts.append(f"--- {path}\n" + Path(path).read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
            if proc in _running:
                _running.remove(proc)
        self.redis.stop()
