"""Real PostgreSQL 15 and Redis for tests, run as child processes of the test run.

Each server lives in its own temporary folder, listens on 127.0.0.1 on a free port (and
PostgreSQL on a unix socket in that folder), and is stopped and deleted by ``stop()``.
Nothing relies on a system service. PostgreSQL refuses to run as root, so as root its
processes run as the ``postgres`` user (created when absent) and the folder is theirs.
``scripts/test.sh`` installs Debian's packages when the binaries are missing.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: Debian's PostgreSQL 15 binaries (package ``postgresql-15``).
PG_BIN = Path(os.environ.get("HERALD_PG_BIN", "/usr/lib/postgresql/15/bin"))
#: Debian's Redis server (package ``redis-server``).
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
#: The account PostgreSQL runs as when the tests run as root.
PG_OS_USER = "postgres"


class EngineUnavailable(RuntimeError):
    """The binaries of a server are not installed here."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until(ready: Any, proc: subprocess.Popen[bytes], log: Path, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s:\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class RedisServer:
    """``redis-server`` on 127.0.0.1, no persistence; ``url()`` for clients."""

    def __init__(self) -> None:
        if not os.access(REDIS_SERVER, os.X_OK):
            raise EngineUnavailable(f"{REDIS_SERVER} not found (apt-get install redis-server)")
        self.dir = Path(tempfile.mkdtemp(prefix="herald-redis-"))
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir)]
        args += ["--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        _wait_until(self.ping, self.proc, self.log_path, "redis-server")
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
        return pwd.getpwnam(name)


class PostgresServer:
    """A throwaway PostgreSQL cluster: ``initdb`` in a temporary folder, ``postgres`` as a child.

    Trust authentication on 127.0.0.1 and the folder's unix socket; durability is off
    (``fsync=off``): the cluster is deleted at the end anyway.
    """

    def __init__(self) -> None:
        for tool in ("initdb", "postgres"):
            if not os.access(PG_BIN / tool, os.X_OK):
                raise EngineUnavailable(f"{PG_BIN / tool} not found (apt-get install postgresql-15)")
        self.dir = Path(tempfile.mkdtemp(prefix="herald-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "postgres.log"
        self._names = itertools.count(1)
        self._user: str | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            account = _ensure_os_user(PG_OS_USER)
            self._user = account.pw_name
            os.chown(self.dir, account.pw_uid, account.pw_gid)

    def _run_as(self) -> dict[str, Any]:
        if not self._user:
            return {}
        return {"user": self._user, "group": pwd.getpwnam(self._user).pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        subprocess.run(
            [str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust"]
            + ["-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"],
            check=True,
            capture_output=True,
            **self._run_as(),
        )
        args = [str(PG_BIN / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir)]
        for setting in (
            "listen_addresses=127.0.0.1",
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
        ):
            args += ["-c", setting]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **self._run_as()
            )
        _wait_until(self._accepts, self.proc, self.log_path, "postgres")
        return self

    def _accepts(self) -> bool:
        try:
            self.connect().close()
            return True
        except Exception:
            return False

    def url(self, database: str = "postgres") -> str:
        """A ``postgresql://`` URL (Herald maps it to psycopg2) for one database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres", *, autocommit: bool = True) -> Any:
        """A psycopg2 connection of this test process."""
        import psycopg2

        connection = psycopg2.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=database)
        connection.autocommit = autocommit
        return connection

    def create_database(self, name: str | None = None, *, template: str | None = None) -> str:
        """Create an empty database (or a copy of ``template``); returns its name."""
        name = name or f"herald_test_{next(self._names)}"
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        finally:
            connection.close()
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, closing whatever connections it still has."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            connection.close()

    def stop(self) -> None:
        _stop(self.proc, signal.SIGINT)  # "fast" shutdown: roll back and exit
        shutil.rmtree(self.dir, ignore_errors=True)
