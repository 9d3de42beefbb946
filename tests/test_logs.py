"""Logs: tokens never written, the job id on job lines, JSON lines that parse, a request log."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ConfigError, load_config
from app.logs import (
    REDACTED,
    JobIdFilter,
    JsonFormatter,
    RedactSecrets,
    RequestLog,
    TextFormatter,
    current_job_id,
    job_logging,
    redact,
)

ROOT = Path(__file__).resolve().parent.parent
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIiwianRpIjoiYWJjIn0.c2lnbmF0dXJlLXBhcnQ"


class Collecting(logging.Handler):
    """Keeps every record it is handed (after Herald's filters, like the real handler)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(JobIdFilter())
        self.addFilter(RedactSecrets())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[Collecting]:
    """Records of the ``herald`` loggers, at DEBUG, whatever the root logger looks like."""
    handler = Collecting()
    logger = logging.getLogger("herald")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"name": "herald.test", "levelno": logging.INFO, "levelname": "INFO"})
    record.msg, record.args = message, args
    record.__dict__.update(extra)
    return record


# -- redaction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            f"GET /socket.io/?EIO=4&token={JWT}&transport=websocket",
            f"GET /socket.io/?EIO=4&token={REDACTED}&transport=websocket",
        ),
        ("GET /api/jobs?access_token=opaque-value&x=1", f"GET /api/jobs?access_token={REDACTED}&x=1"),
        (f"auth failed for {JWT}", f"auth failed for {REDACTED}"),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {REDACTED}"),
        ("payload {'token': 'abc', 'job_id': 3}", f"payload {{'token': '{REDACTED}', 'job_id': 3}}"),
        (
            '{"refresh_token": "r-1", "password": "hunter2"}',
            f'{{"refresh_token": "{REDACTED}", "password": "{REDACTED}"}}',
        ),
        ("redis://:s3cret@10.0.0.5:6379/0 is down", "redis://:***@10.0.0.5:6379/0 is down"),
        ("job 12 finished in 3 s (token_jti stays)", "job 12 finished in 3 s (token_jti stays)"),
    ],
)
def test_redact_removes_every_credential_and_keeps_the_rest(given, expected):
    assert redact(given) == expected


def test_the_filter_redacts_arguments_tracebacks_and_stacks():
    try:
        raise ValueError(f"bad token {JWT}")
    except ValueError:
        record = _record("connect with %s from %s", f"?token={JWT}", "10.0.0.1")
        record.exc_info = sys.exc_info()
    record.stack_info = f"Stack (most recent call last): token={JWT}"
    RedactSecrets().filter(record)
    for text in (record.getMessage(), record.exc_text, record.stack_info):
        assert JWT not in text and REDACTED in text
    assert record.getMessage() == f"connect with ?token={REDACTED} from 10.0.0.1"


def test_a_message_without_secrets_keeps_its_lazy_arguments():
    record = _record("job %s took %d ms", 7, 12)
    RedactSecrets().filter(record)
    assert record.args == (7, 12) and record.getMessage() == "job 7 took 12 ms"


# -- formats ----------------------------------------------------------------------------


def test_json_lines_carry_time_level_logger_message_and_the_extra_fields():
    record = _record("GET /api/jobs 200 1.5 ms 127.0.0.1", method="GET", path="/api/jobs", status=200, job_id=None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["level"] == "INFO" and entry["logger"] == "herald.test"
    assert entry["message"] == "GET /api/jobs 200 1.5 ms 127.0.0.1"
    assert entry["time"].endswith("Z") and "T" in entry["time"]
    assert entry["method"] == "GET" and entry["path"] == "/api/jobs" and entry["status"] == 200
    assert "job_id" not in entry  # absent, not null, outside a job


def test_json_lines_hold_the_traceback_and_stay_one_line():
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = _record("job failed", job_id=9)
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["job_id"] == 9
    assert "RuntimeError: boom" in entry["exception"]


def test_json_formatter_redacts_extra_fields_too():
    line = JsonFormatter().format(_record("request", path=f"/ws?token={JWT}"))
    assert JWT not in line and json.loads(line)["path"] == f"/ws?token={REDACTED}"


def test_text_lines_show_the_job_id():
    text = TextFormatter().format(_record("step %d done", 3, job_id=41))
    assert text.endswith("INFO herald.test: [job 41] step 3 done")
    assert "[job" not in TextFormatter().format(_record("no job here"))


# -- the job id -------------------------------------------------------------------------


def test_job_logging_stamps_the_job_id_and_restores_the_outer_one(collected):
    log = logging.getLogger("herald.jobs.test")
    log.info("before")
    with job_logging(5):
        log.info("in five")
        with job_logging(6):
            log.info("in six")
        log.info("five again")
    log.info("after")
    assert [r.job_id for r in collected.records] == [None, 5, 6, 5, None]
    assert current_job_id() is None


def test_threads_keep_their_own_job_id(collected):
    log = logging.getLogger("herald.jobs.test")
    both_inside = threading.Barrier(2)

    def run(job_id: int) -> None:
        with job_logging(job_id):
            both_inside.wait(5)  # each thread logs while the other holds a different id
            log.info("working")
            both_inside.wait(5)

    threads = [threading.Thread(target=run, args=(job_id,)) for job_id in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(r.job_id for r in collected.records) == [1, 2]


GREENLET_SCRIPT = """
import sys
MODE = sys.argv[1]
if MODE == "eventlet":
    import eventlet
    eventlet.monkey_patch()
    spawn, sleep = eventlet.spawn, eventlet.sleep
    def join(tasks):
        return [task.wait() for task in tasks]
else:
    from gevent import monkey
    monkey.patch_all()
    import gevent
    spawn, sleep = gevent.spawn, gevent.sleep
    def join(tasks):
        gevent.joinall(tasks)
        return [task.value for task in tasks]

from app.logs import current_job_id, job_logging

def job(job_id):
    with job_logging(job_id):
        seen = []
        for _ in range(5):
            sleep(0.001)  # switch to the other jobs while inside
            seen.append(current_job_id())
    return job_id, seen, current_job_id()

def outsider():
    seen = []
    for _ in range(5):
        sleep(0.001)
        seen.append(current_job_id())
    return seen

with job_logging(99):  # the spawning greenlet's id is not inherited
    tasks = [spawn(job, n) for n in (1, 2, 3)]
    other = spawn(outsider)
results = join(tasks)
assert all(seen == [n] * 5 and after is None for n, seen, after in results), results
assert join([other])[0] == [None] * 5, "a greenlet outside any job saw one"
print("ok")
"""


@pytest.mark.parametrize("mode", ["eventlet", "gevent"])
def test_greenlets_keep_their_own_job_id(mode):
    """greenlet >= 1.0 gives each greenlet its own context: eventlet and gevent jobs stay apart."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", textwrap.dedent(GREENLET_SCRIPT), mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


# -- configuration and set-up -----------------------------------------------------------


def test_log_settings_are_checked_and_normalised():
    config = load_config({"ENV_NAME": "testing", "LOG_LEVEL": "debug", "LOG_FORMAT": "JSON"})
    assert config["LOG_LEVEL"] == "DEBUG" and config["LOG_FORMAT"] == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        load_config({"ENV_NAME": "testing", "LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load_config({"ENV_NAME": "testing", "LOG_LEVEL": "LOUD"})


SETUP_SCRIPT = """
import logging, sys, warnings
from app.logs import configure_logging, job_logging
first = configure_logging("INFO", "json")
again = configure_logging("DEBUG", "json")
assert first is again and logging.getLogger().handlers == [first], logging.getLogger().handlers
logging.getLogger("herald.x").debug("Authorization: Bearer %s", "abc.def")
with job_logging(4):
    logging.getLogger("herald.jobs").info("step")
warnings.warn("a late warning")
try:
    1 / 0
except ZeroDivisionError:
    logging.getLogger("herald.x").exception("failed with token=%s", "secret-value")
"""


def test_configure_logging_writes_json_lines_warnings_included():
    done = subprocess.run([sys.executable, "-c", SETUP_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["logger"] for e in entries] == ["herald.x", "herald.jobs", "py.warnings", "herald.x"]
    assert entries[0]["message"] == f"Authorization: Bearer {REDACTED}"
    assert entries[1]["job_id"] == 4 and "job_id" not in entries[0]
    assert "a late warning" in entries[2]["message"]
    assert "ZeroDivisionError" in entries[3]["exception"] and "secret-value" not in done.stderr


def test_configure_logging_leaves_a_root_logger_someone_else_set_up():
    from app.logs import configure_logging

    root = logging.getLogger()
    assert root.handlers  # pytest's own
    before = list(root.handlers)
    assert configure_logging("DEBUG", "json") is None
    assert root.handlers == before


# -- the request log --------------------------------------------------------------------


def test_each_request_is_one_line_with_the_token_redacted(client, auth, collected):
    token = auth.token_for("alice")
    collected.records.clear()
    response = client.get(f"/api/jobs?token={token}&limit=5")
    assert response.status_code == 200
    response.close()  # servers close the body: that ends the request
    lines = [r for r in collected.records if r.name == "herald.request"]
    assert len(lines) == 1
    line = lines[0]
    assert line.levelno == logging.INFO
    assert (line.method, line.path, line.status) == ("GET", f"/api/jobs?token={REDACTED}&limit=5", 200)
    assert line.duration_ms >= 0 and line.remote_addr == "127.0.0.1"
    assert token not in line.getMessage()


def test_the_authorization_header_is_never_logged(client, auth, collected):
    token = auth.token_for("alice")
    collected.records.clear()
    client.get("/api/jobs", headers=auth.headers(token)).close()
    client.get("/api/jobs/999999", headers=auth.headers(token)).close()
    text = "\n".join(JsonFormatter().format(r) for r in collected.records)
    assert token not in text and "/api/jobs/999999 404" in text


def test_probes_and_socketio_polling_log_at_debug(client, collected):
    client.get("/health").close()
    client.get("/socket.io/?EIO=4&transport=polling&sid=unknown").close()
    levels = {r.path.split("?")[0]: r.levelno for r in collected.records if r.name == "herald.request"}
    assert levels == {"/health": logging.DEBUG, "/socket.io/": logging.DEBUG}


def test_request_log_can_be_turned_off(tmp_path, collected):
    from app import create_app

    app = create_app(
        {
            "ENV_NAME": "testing",
            "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'off.db'}",
            "SOCKETIO_ASYNC_MODE": "threading",
            "REQUEST_LOG": False,
        }
    )
    app.test_client().get("/health").close()
    assert not [r for r in collected.records if r.name == "herald.request"]


def _wsgi_app(status: str | None, body: object = None, error: Exception | None = None):
    def wsgi_app(environ, start_response):
        if status is not None:
            start_response(status, [("Content-Type", "text/plain")])
        if error is not None:
            raise error
        return body if body is not None else [b"ok"]

    return wsgi_app


def _call(middleware, path: str = "/x", query: str = "", **environ: str):
    base = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "REMOTE_ADDR": "10.1.2.3"}
    return middleware({**base, **environ}, lambda status, headers, exc_info=None: None)


def _requests(collected: Collecting) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in collected.records if r.name == "herald.request"]


def test_a_streamed_body_is_logged_when_the_server_closes_it(collected):
    class Streamed:
        closed = False

        def __iter__(self):
            yield b"a"

        def close(self):
            Streamed.closed = True

    body = _call(RequestLog(_wsgi_app("200 OK", Streamed())), "/download")
    assert list(body) == [b"a"] and not _requests(collected)
    body.close()
    assert Streamed.closed and _requests(collected) == [("/download", 200)]
    body.close()  # a second close logs nothing more
    assert len(_requests(collected)) == 1


def test_a_complete_body_is_passed_through_unchanged(collected):
    body = [b"sized"]
    assert _call(RequestLog(_wsgi_app("404 NOT FOUND", body)), "/nothing", "token=abc") is body
    assert _requests(collected) == [("/nothing?token=[redacted]", 404)]
    assert collected.records[-1].remote_addr == "10.1.2.3"


def test_websocket_upgrades_are_101_unless_refused(collected):
    _call(RequestLog(_wsgi_app(None, [])), "/ws", HTTP_UPGRADE="websocket")
    _call(RequestLog(_wsgi_app("200 OK", [])), "/socket.io/", HTTP_UPGRADE="WebSocket")
    _call(RequestLog(_wsgi_app("403 FORBIDDEN")), "/ws/tab", HTTP_UPGRADE="websocket")
    assert _requests(collected) == [("/ws", 101), ("/socket.io/", 101), ("/ws/tab", 403)]


def test_a_request_that_raises_is_logged_as_500_and_the_error_goes_on(collected):
    with pytest.raises(RuntimeError):
        _call(RequestLog(_wsgi_app(None, error=RuntimeError("boom"))), "/broken")
    assert _requests(collected) == [("/broken", 500)]
    assert collected.records[-1].levelno == logging.INFO
