"""Configuration: the only module that reads environment variables.

``Config`` holds safe production defaults; ``DevelopmentConfig`` and ``TestingConfig``
relax them. ``load_config()`` picks one by ``HERALD_ENV`` (``production`` unless told
otherwise) and refuses to start production without a JWT secret.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

#: Repository root; the SQLite file and uploads live under ``instance/`` by default.
BASE_DIR = Path(__file__).resolve().parent.parent
INSTANCE_DIR = BASE_DIR / "instance"


class ConfigError(RuntimeError):
    """Raised when the environment cannot make a safe configuration."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _list(name: str, default: str) -> list[str]:
    raw = os.environ.get(name, default)
    return [item.strip() for item in raw.split(",") if item.strip()]


#: The PostgreSQL driver Herald uses: psycopg2, which eventlet's monkey-patching (and
#: psycogreen under gevent) makes cooperative. SQLAlchemy 2.1 would pick psycopg 3 for a
#: bare ``postgresql://``, whose wait loop blocks every greenlet of the process.
POSTGRES_DRIVER = "postgresql+psycopg2"


def database_uri(url: str) -> str:
    """Point a bare ``postgresql://`` or ``postgres://`` URL at Herald's driver (psycopg2).

    URLs that name a driver (``postgresql+psycopg://``) and other databases are kept.
    """
    scheme, sep, rest = url.partition("://")
    if sep and scheme in {"postgresql", "postgres"}:
        return f"{POSTGRES_DRIVER}://{rest}"
    return url


#: Accepted ``LOG_LEVEL`` values and ``LOG_FORMAT`` values.
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
#: Accepted ``REFRESH_COOKIE_SECURE`` values.
REFRESH_COOKIE_SECURE_VALUES = ("auto", "true", "false")


class Config:
    """Production defaults: nothing secret has a default, limits are conservative."""

    ENV_NAME = "production"
    TESTING = False
    DEBUG = False

    SECRET_KEY = os.environ.get("SECRET_KEY") or os.environ.get("JWT_SECRET_KEY")
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY")
    JWT_ACCESS_TOKEN_EXPIRES = _int("JWT_ACCESS_TOKEN_MINUTES", 60) * 60
    JWT_REFRESH_TOKEN_EXPIRES = _int("JWT_REFRESH_TOKEN_DAYS", 14) * 86400
    JWT_ERROR_MESSAGE_KEY = "message"
    #: Seconds a socket connect may reuse the check of the same access token (0: off);
    #: revocation empties it at once, on every process (``app/auth/cache.py``).
    TOKEN_CACHE_SECONDS = _float("TOKEN_CACHE_SECONDS", 30.0)
    #: Tokens that cache holds at most per process (the oldest goes first).
    TOKEN_CACHE_SIZE = _int("TOKEN_CACHE_SIZE", 10_000)
    #: The browser session's refresh cookie gets ``Secure``: ``true`` always (production's
    #: default), ``auto`` when the request came over HTTPS (behind a TLS proxy, set
    #: ``TRUSTED_PROXIES`` so its ``X-Forwarded-Proto`` counts), ``false`` never.
    REFRESH_COOKIE_SECURE = (os.environ.get("REFRESH_COOKIE_SECURE") or "true").strip().lower()

    #: ``postgresql://`` and ``postgres://`` are mapped to psycopg2 (see ``database_uri``).
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL", f"sqlite:///{INSTANCE_DIR / 'herald.db'}")
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": True}

    #: Optional Redis URL; when set, Flask-SocketIO fans events out through it.
    MESSAGE_QUEUE_URL = os.environ.get("MESSAGE_QUEUE_URL") or None
    #: Redis pub/sub channel of the message queue; every process of one deployment shares it.
    MESSAGE_QUEUE_CHANNEL = os.environ.get("MESSAGE_QUEUE_CHANNEL") or "herald"
    #: ``eventlet`` (deployed), ``gevent`` or ``threading``; None lets Flask-SocketIO pick.
    SOCKETIO_ASYNC_MODE = os.environ.get("SOCKETIO_ASYNC_MODE") or None
    #: Origins allowed for Socket.IO and plain WebSocket handshakes; empty = same origin only.
    CORS_ALLOWED_ORIGINS = _list("CORS_ALLOWED_ORIGINS", "")

    #: Reverse proxies in front of Herald (nginx: 1) whose ``X-Forwarded-For/-Proto/-Host``
    #: are believed; 0 (default) believes none, so clients cannot forge them.
    TRUSTED_PROXIES = _int("TRUSTED_PROXIES", 0)

    HOST = os.environ.get("HOST", "127.0.0.1")
    PORT = _int("PORT", 5000)

    #: Largest socket message a client may send, in bytes (larger ones get an error).
    SOCKET_MESSAGE_LIMIT = _int("SOCKET_MESSAGE_LIMIT", 64 * 1024)
    #: Most progress events per job per this many seconds; the last tick always goes out.
    PROGRESS_INTERVAL = _float("PROGRESS_INTERVAL", 0.1)
    #: How often the latest progress is written to the job row (it also goes with every
    #: durable event).
    PROGRESS_PERSIST_INTERVAL = _float("PROGRESS_PERSIST_INTERVAL", 1.0)
    #: ``web`` (serves clients) or ``worker`` (a Celery worker, set by ``app.worker``).
    ROLE = "web"
    #: Where jobs run: ``inline`` (background tasks of the web processes) or ``celery``
    #: (Celery workers, ``make worker``; the broker is ``CELERY_BROKER_URL``).
    JOB_EXECUTOR = os.environ.get("JOB_EXECUTOR", "inline")
    #: Celery's broker; defaults to the message queue (Redis).
    CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or os.environ.get("MESSAGE_QUEUE_URL") or None
    #: Seconds a worker's hold on a job lasts without a heartbeat; a job whose holder stayed
    #: silent that long is failed ``interrupted`` (or, if pending, claimed again).
    JOB_LEASE_SECONDS = _float("JOB_LEASE_SECONDS", 10.0)
    #: Seconds between a worker's heartbeats (lease renewal, sweep of expired leases).
    WORKER_HEARTBEAT_INTERVAL = _float("WORKER_HEARTBEAT_INTERVAL", 2.0)
    #: Seconds between a worker's looks for cancel requests (and, inline, for jobs to claim).
    JOB_CANCEL_POLL_INTERVAL = _float("JOB_CANCEL_POLL_INTERVAL", 0.5)
    #: Celery: seconds after which a pending job nobody claimed is handed to the broker again.
    JOB_REDISPATCH_AFTER = _float("JOB_REDISPATCH_AFTER", 30.0)
    #: Durable events kept per job: the oldest beyond it are deleted (0 keeps every one).
    #: A client resuming from before the oldest kept event gets a ``resync``.
    HISTORY_MAX_EVENTS_PER_JOB = _int("HISTORY_MAX_EVENTS_PER_JOB", 100_000)
    #: Days a durable event is kept (0: forever); the job row itself is never deleted.
    HISTORY_MAX_AGE_DAYS = _float("HISTORY_MAX_AGE_DAYS", 0)
    #: Seconds between history trims (each process's heartbeat; each trim is bounded).
    HISTORY_TRIM_INTERVAL = _float("HISTORY_TRIM_INTERVAL", 60.0)
    #: Jobs running at once in this process; more wait as ``pending``.
    MAX_CONCURRENT_JOBS = _int("MAX_CONCURRENT_JOBS", 8)
    #: Batches and workflows running at once; they wait on children outside those slots.
    MAX_COORDINATOR_JOBS = _int("MAX_COORDINATOR_JOBS", 64)
    #: Open connections the server accepts (eventlet's own default is 1,024).
    MAX_CONNECTIONS = _int("MAX_CONNECTIONS", 10_000)
    #: Socket.IO / plain WebSocket heartbeat: ping every N seconds, drop after M more.
    PING_INTERVAL = _int("PING_INTERVAL", 25)
    PING_TIMEOUT = _int("PING_TIMEOUT", 20)
    #: Socket.IO over WebSocket under eventlet (``python wsgi.py``, gunicorn's eventlet
    #: worker): an idle connection is watched by the event hub instead of keeping a greenlet
    #: (app/realtime/hub_reader.py).
    SOCKETIO_HUB_READER = _bool("SOCKETIO_HUB_READER", True)
    #: Offer permessage-deflate to WebSocket clients (off: it costs more than it saves).
    WEBSOCKET_COMPRESSION = _bool("WEBSOCKET_COMPRESSION", False)
    #: Plain WebSocket: seconds between server pings (a socket that misses a pong is dropped).
    WEBSOCKET_PING_INTERVAL = _int("WEBSOCKET_PING_INTERVAL", 30)
    #: Plain WebSocket: seconds a client has to authenticate with a first ``auth`` message.
    WEBSOCKET_AUTH_TIMEOUT = _float("WEBSOCKET_AUTH_TIMEOUT", 10.0)
    #: Plain WebSocket: live messages queued for one slow client before it is dropped (1013).
    WEBSOCKET_SEND_QUEUE = _int("WEBSOCKET_SEND_QUEUE", 1000)
    #: Plain WebSocket: seconds one write may wait for a client that stopped reading.
    WEBSOCKET_SEND_TIMEOUT = _float("WEBSOCKET_SEND_TIMEOUT", 30.0)
    #: Plain WebSocket and SSE: kernel send buffer per socket in bytes (0: the OS autotunes,
    #: up to megabytes). A small one bounds memory per client and shows a stalled reader sooner.
    WEBSOCKET_SEND_BUFFER = _int("WEBSOCKET_SEND_BUFFER", 0)
    #: Socket.IO: packets queued for one client that does not read before it is cut off.
    SOCKETIO_SEND_QUEUE = _int("SOCKETIO_SEND_QUEUE", 1000)
    #: Both transports: open connections one user may hold in this process (0: no cap).
    MAX_CONNECTIONS_PER_USER = _int("MAX_CONNECTIONS_PER_USER", 100)
    #: Both transports: job subscriptions one connection may hold.
    MAX_SUBSCRIPTIONS_PER_CONNECTION = _int("MAX_SUBSCRIPTIONS_PER_CONNECTION", 1000)
    #: Both transports: inbound messages per second per connection (token bucket), burst
    #: size, and how many messages in a row may be refused before the connection is closed.
    SOCKET_RATE_LIMIT = _float("SOCKET_RATE_LIMIT", 100.0)
    SOCKET_RATE_BURST = _int("SOCKET_RATE_BURST", 200)
    SOCKET_RATE_DISCONNECT_AFTER = _int("SOCKET_RATE_DISCONNECT_AFTER", 1000)
    #: Socket.IO: seconds an Engine.IO session may stay open without connecting to the
    #: namespace (authenticating) before it is closed.
    SOCKET_CONNECT_TIMEOUT = _float("SOCKET_CONNECT_TIMEOUT", 10.0)
    #: Server-Sent Events: seconds a stream token (``POST /api/stream-tokens``) may be used
    #: to *open* a stream; an open stream lives as long as the access token that asked for it.
    STREAM_TOKEN_TTL_SECONDS = _int("STREAM_TOKEN_TTL_SECONDS", 60)
    #: Server-Sent Events: seconds between ``: ping`` comments on an idle stream (proxies
    #: close quiet connections; a write is also how a vanished reader is noticed).
    SSE_HEARTBEAT_SECONDS = _float("SSE_HEARTBEAT_SECONDS", 15.0)
    #: Server-Sent Events: the ``retry:`` hint, milliseconds a browser waits to reconnect.
    SSE_RETRY_MS = _int("SSE_RETRY_MS", 2000)
    #: Server-Sent Events: live messages queued for one stream that does not read before it
    #: is cut off (it reconnects with ``Last-Event-ID`` and is replayed from the database).
    SSE_SEND_QUEUE = _int("SSE_SEND_QUEUE", 1000)

    #: External producers (kind ``external``): seconds a producer token lives; a job still
    #: active when its token expires is failed ``producer_expired`` (the producer vanished).
    PRODUCER_TOKEN_TTL_SECONDS = _float("PRODUCER_TOKEN_TTL_SECONDS", 86_400.0)
    #: Items one ``POST /api/jobs/<id>/report`` may carry.
    PRODUCER_BATCH_MAX_ITEMS = _int("PRODUCER_BATCH_MAX_ITEMS", 1000)
    #: Characters in one reported log line, message or progress message.
    PRODUCER_MAX_LINE_CHARS = _int("PRODUCER_MAX_LINE_CHARS", 4096)

    #: Largest JSON request body in bytes (uploads stream separately, under MAX_UPLOAD_BYTES).
    MAX_JSON_BODY_BYTES = _int("MAX_JSON_BODY_BYTES", 1024 * 1024)

    UPLOAD_DIR = os.environ.get("UPLOAD_DIR", str(INSTANCE_DIR / "uploads"))
    ARTIFACT_DIR = os.environ.get("ARTIFACT_DIR", str(INSTANCE_DIR / "artifacts"))
    MAX_UPLOAD_BYTES = _int("MAX_UPLOAD_BYTES", 100 * 1024 * 1024)
    UPLOAD_ALLOWED_EXTENSIONS = _list("UPLOAD_ALLOWED_EXTENSIONS", "csv,jsonl,json,txt,xlsx")
    #: Most rows one import reads, in any format. Blank lines and empty sheet rows count too,
    #: so a sheet declaring 30 million empty rows fails instead of spinning through them.
    IMPORT_MAX_ROWS = _int("IMPORT_MAX_ROWS", 10_000_000)
    #: Most characters in one CSV record or JSON line. The csv module builds a record's whole
    #: list of fields before the column count can be checked: 1 MiB keeps that list (and the
    #: memory of one bad line) to some tens of megabytes while leaving room for 512 columns
    #: of 2 KiB each.
    IMPORT_MAX_RECORD_CHARS = _int("IMPORT_MAX_RECORD_CHARS", 1024 * 1024)
    #: XLSX: most bytes all zip members may inflate to, by their declared sizes. A workbook
    #: is XML, 5-15 times its zipped size: 256 MiB admits a full 100 MiB upload of ordinary
    #: sheets (about a million rows of ten cells) and refuses gigabyte bombs before parsing.
    IMPORT_XLSX_MAX_UNCOMPRESSED_BYTES = _int("IMPORT_XLSX_MAX_UNCOMPRESSED_BYTES", 256 * 1024 * 1024)
    #: XLSX: most bytes of the parts openpyxl keeps whole in memory (every member but the
    #: worksheets, which are streamed: shared strings, styles …). Held as Python objects they
    #: cost 5-10 times their size; 64 MiB is about a million rows of three distinct texts.
    IMPORT_XLSX_MAX_HELD_BYTES = _int("IMPORT_XLSX_MAX_HELD_BYTES", 64 * 1024 * 1024)
    #: XLSX: highest inflated/zipped ratio of any member over 1 MiB. Real sheets deflate
    #: 5-20 times, very repetitive ones up to ~50; deflate itself tops out near 1,000.
    IMPORT_XLSX_MAX_RATIO = _float("IMPORT_XLSX_MAX_RATIO", 100.0)
    #: XLSX: most members in the zip (a workbook with a few sheets has a dozen or two).
    IMPORT_XLSX_MAX_MEMBERS = _int("IMPORT_XLSX_MAX_MEMBERS", 1000)
    API_TEST_ALLOWED_HOSTS = _list("API_TEST_ALLOWED_HOSTS", "localhost,127.0.0.1,::1")
    #: Python modules imported at start (web processes and Celery workers alike) whose
    #: ``@job_kind`` functions become job kinds beside the built-in ones (``docs/PLATFORM.md``).
    HERALD_JOB_MODULES = _list("HERALD_JOB_MODULES", "")
    #: Webhook targets: hosts allowed as written (private and loopback ones only this way),
    #: ``*.example.com`` for a domain, ``*`` for any host whose addresses are all public.
    WEBHOOK_ALLOWED_HOSTS = _list("WEBHOOK_ALLOWED_HOSTS", "*")
    #: Seconds before a failed delivery's first retry; each retry doubles it (capped at an hour).
    WEBHOOK_RETRY_BASE_SECONDS = _float("WEBHOOK_RETRY_BASE_SECONDS", 30.0)
    #: Seconds after the event during which a failing delivery is retried (a day).
    WEBHOOK_RETRY_FOR_SECONDS = _float("WEBHOOK_RETRY_FOR_SECONDS", 86400.0)
    #: Seconds one delivery attempt may take (connect and answer) before it counts as failed.
    WEBHOOK_TIMEOUT_SECONDS = _float("WEBHOOK_TIMEOUT_SECONDS", 5.0)
    #: Seconds between the webhook dispatcher's looks for new job events and due attempts.
    WEBHOOK_DISPATCH_INTERVAL = _float("WEBHOOK_DISPATCH_INTERVAL", 1.0)
    #: Days a finished (``delivered`` or ``failed``) delivery's record is kept after its last
    #: attempt (0: forever); pending ones are never trimmed. Trimmed with the history, every
    #: ``HISTORY_TRIM_INTERVAL``.
    WEBHOOK_DELIVERY_RETENTION_DAYS = _float("WEBHOOK_DELIVERY_RETENTION_DAYS", 30.0)

    #: Python logging level of the process: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``.
    LOG_LEVEL = (os.environ.get("LOG_LEVEL") or "INFO").strip().upper()
    #: ``text`` (one readable line per record) or ``json`` (one JSON object per line).
    LOG_FORMAT = (os.environ.get("LOG_FORMAT") or "text").strip().lower()
    #: One log line per HTTP request (method, path, status, duration, client address).
    REQUEST_LOG = _bool("REQUEST_LOG", True)
    #: When set, ``/metrics`` wants ``Authorization: Bearer <METRICS_TOKEN>``; unset, it is
    #: open like ``/health`` (keep it on an internal network then).
    METRICS_TOKEN = os.environ.get("METRICS_TOKEN") or None

    #: Create and print a demo login when serving (development only).
    DEMO_USER = False
    #: Set by ``wsgi.py`` for a ``flask`` client command (``watch``): the process follows a
    #: job on another server, so it needs none of this server's secrets.
    CLIENT_ONLY = False

    def validate(self) -> None:
        """Refuse settings that would be unsafe in this environment."""
        self.check_jobs()
        self.check_logging()
        self.check_cookies()
        if not self.JWT_SECRET_KEY and not self.CLIENT_ONLY:
            raise ConfigError(
                "JWT_SECRET_KEY must be set in production (or run with HERALD_ENV=development for a throwaway key)"
            )
        if not self.SECRET_KEY:
            self.SECRET_KEY = self.JWT_SECRET_KEY

    def check_jobs(self) -> None:
        """The executor must be known, and Celery needs a broker; leases outlast heartbeats."""
        if self.JOB_EXECUTOR not in ("inline", "celery"):
            raise ConfigError(f"JOB_EXECUTOR must be 'inline' or 'celery', got {self.JOB_EXECUTOR!r}")
        if self.JOB_EXECUTOR == "celery" and not self.CELERY_BROKER_URL:
            raise ConfigError("JOB_EXECUTOR=celery needs CELERY_BROKER_URL or MESSAGE_QUEUE_URL (redis://…)")
        if self.JOB_LEASE_SECONDS < 2 * self.WORKER_HEARTBEAT_INTERVAL:
            raise ConfigError("JOB_LEASE_SECONDS must be at least twice WORKER_HEARTBEAT_INTERVAL")
        if self.HISTORY_MAX_EVENTS_PER_JOB < 0 or self.HISTORY_MAX_AGE_DAYS < 0:
            raise ConfigError("HISTORY_MAX_EVENTS_PER_JOB and HISTORY_MAX_AGE_DAYS must be 0 (keep all) or more")
        if self.HISTORY_TRIM_INTERVAL <= 0:
            raise ConfigError("HISTORY_TRIM_INTERVAL must be a positive number of seconds")
        for name in ("WEBHOOK_RETRY_BASE_SECONDS", "WEBHOOK_TIMEOUT_SECONDS", "WEBHOOK_DISPATCH_INTERVAL"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds")
        if self.PRODUCER_TOKEN_TTL_SECONDS <= 0:
            raise ConfigError("PRODUCER_TOKEN_TTL_SECONDS must be a positive number of seconds")
        if self.PRODUCER_BATCH_MAX_ITEMS < 1 or self.PRODUCER_MAX_LINE_CHARS < 1:
            raise ConfigError("PRODUCER_BATCH_MAX_ITEMS and PRODUCER_MAX_LINE_CHARS must be 1 or more")
        if self.WEBHOOK_DELIVERY_RETENTION_DAYS < 0:
            raise ConfigError("WEBHOOK_DELIVERY_RETENTION_DAYS must be 0 (keep all) or more")

    def check_cookies(self) -> None:
        """A misspelt ``REFRESH_COOKIE_SECURE`` must not silently drop ``Secure``."""
        self.REFRESH_COOKIE_SECURE = str(self.REFRESH_COOKIE_SECURE).strip().lower()
        if self.REFRESH_COOKIE_SECURE not in REFRESH_COOKIE_SECURE_VALUES:
            allowed = ", ".join(REFRESH_COOKIE_SECURE_VALUES)
            raise ConfigError(f"REFRESH_COOKIE_SECURE must be one of {allowed}, got {self.REFRESH_COOKIE_SECURE!r}")

    def check_logging(self) -> None:
        """A misspelt level or format would silently log too much or unparseable lines."""
        self.LOG_LEVEL = str(self.LOG_LEVEL).strip().upper()
        self.LOG_FORMAT = str(self.LOG_FORMAT).strip().lower()
        if self.LOG_LEVEL not in LOG_LEVELS:
            raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {self.LOG_LEVEL!r}")
        if self.LOG_FORMAT not in LOG_FORMATS:
            raise ConfigError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {self.LOG_FORMAT!r}")


class DevelopmentConfig(Config):
    """Local runs: a fixed throwaway secret, a printed demo login, SQLite."""

    ENV_NAME = "development"
    DEBUG = False  # the reloader and debugger do not mix with eventlet
    JWT_SECRET_KEY = os.environ.get("JWT_SECRET_KEY") or "herald-development-only-secret-key!"
    SECRET_KEY = os.environ.get("SECRET_KEY") or JWT_SECRET_KEY
    DEMO_USER = _bool("HERALD_DEMO_USER", True)
    #: ``make run`` serves plain HTTP: ``Secure`` only when a request did come over HTTPS.
    REFRESH_COOKIE_SECURE = (os.environ.get("REFRESH_COOKIE_SECURE") or "auto").strip().lower()

    def validate(self) -> None:
        """Development accepts the throwaway secret."""
        self.check_jobs()
        self.check_logging()
        self.check_cookies()


class TestingConfig(DevelopmentConfig):
    """Tests: in-memory-ish database chosen by the fixture, fast progress interval."""

    ENV_NAME = "testing"
    TESTING = True
    DEMO_USER = False
    JWT_SECRET_KEY = "herald-testing-secret-key-0123456789abcdef"
    SECRET_KEY = JWT_SECRET_KEY
    #: Tests reach no network but loopback: webhooks may only point there unless told.
    WEBHOOK_ALLOWED_HOSTS = _list("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1,::1,localhost")


CONFIGS: dict[str, type[Config]] = {
    "production": Config,
    "development": DevelopmentConfig,
    "testing": TestingConfig,
}


def load_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the settings dict for ``create_app`` from ``HERALD_ENV`` and overrides."""
    env_name = (overrides or {}).get("ENV_NAME") or os.environ.get("HERALD_ENV", "production")
    if env_name not in CONFIGS:
        raise ConfigError(f"HERALD_ENV must be one of {', '.join(CONFIGS)}, got {env_name!r}")
    config = CONFIGS[env_name]()
    for key, value in (overrides or {}).items():
        setattr(config, key, value)
    config.SQLALCHEMY_DATABASE_URI = database_uri(config.SQLALCHEMY_DATABASE_URI)
    config.validate()
    return {key: getattr(config, key) for key in dir(config) if key.isupper()}
