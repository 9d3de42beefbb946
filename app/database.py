"""Database plumbing shared by every writer: SQLite tuning and the green write lock.

SQLite under eventlet blocks the whole process while it waits for a lock, so every write
in this process goes through :func:`write_lock` and never yields inside a transaction.
PostgreSQL locks rows itself (and yields on I/O under psycogreen), so there the lock is off.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from flask import Flask
from sqlalchemy import Connection, event, make_url, text
from sqlalchemy.engine import Engine

from .concurrency import run_in_writer_thread
from .extensions import db

T = TypeVar("T")

_lock_holder: dict[str, threading.Lock] = {}
#: Whether writers must take the process lock (true for SQLite, set by ``init_database``).
_serialize_writes = {"on": True}


def _process_lock() -> threading.Lock:
    # Created lazily so that it is built after eventlet/gevent monkey-patching.
    lock = _lock_holder.get("lock")
    if lock is None:
        lock = _lock_holder.setdefault("lock", threading.Lock())
    return lock


@contextmanager
def write_lock() -> Iterator[None]:
    """Hold the process-wide write lock (no yielding while held); a no-op off SQLite."""
    if not _serialize_writes["on"]:
        yield
        return
    with _process_lock():
        yield


def write_off_the_loop(engine: Engine, call: Callable[[], T]) -> T:
    """Run ``call`` (a write on a connection it holds) without the event loop waiting on
    the disk: on SQLite in the writer thread under the process's write lock (the loop's
    own writers wait for it, green), elsewhere here (psycopg2's I/O is green)."""
    if engine.dialect.name == "sqlite":
        with write_lock():
            return run_in_writer_thread(call)
    return call()


@contextmanager
def write_transaction() -> Iterator[Connection]:
    """A short Core transaction under the write lock, committed on exit."""
    with write_lock(), db.engine.begin() as connection:
        yield connection


def commit_session(*statements: Any) -> None:
    """Commit the ORM session under the write lock (flush and commit happen together),
    running ``statements`` (bulk ``UPDATE``/``DELETE``) first under the same hold: a
    write executed before it would wait in SQLite's busy handler, holding the event loop
    (up to 5 s, then "database is locked") while the journal commits."""
    with write_lock():
        for statement in statements:
            db.session.execute(statement)
        db.session.commit()


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def ensure_sqlite_folder(database_uri: str) -> None:
    """Create the folder of an SQLite file (a fresh checkout has no ``instance/`` yet)."""
    url = make_url(database_uri)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


#: Longest the ``/health`` database check may run on PostgreSQL, in milliseconds.
HEALTH_STATEMENT_TIMEOUT_MS = 1000


def check_database() -> dict[str, Any]:
    """``{"status": "ok"}``, or ``degraded`` with the reason: one ``SELECT 1``, bounded in time."""
    try:
        with db.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text(f"SET LOCAL statement_timeout = {HEALTH_STATEMENT_TIMEOUT_MS}"))
            connection.execute(text("SELECT 1"))
            connection.rollback()
    except Exception as exc:  # any failure means the database is not usable
        return {"status": "degraded", "reason": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"}
    return {"status": "ok"}


def init_database(app: Flask) -> None:
    """Bind the engine hooks that the configured database needs."""
    ensure_sqlite_folder(app.config["SQLALCHEMY_DATABASE_URI"])
    with app.app_context():
        engine: Engine = db.engine
        _serialize_writes["on"] = engine.dialect.name == "sqlite"
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _tune_sqlite)
        elif engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg2":
            from .concurrency import eventlet_patched, install_eventlet_postgres_wait

            if eventlet_patched():
                install_eventlet_postgres_wait()
