"""Report into Herald from any Python program: an external job, fed in batches.

    herald = Herald("http://127.0.0.1:5000", username="demo", password="demo-password")
    with herald.job("nightly import", total=len(rows)) as job:
        for row in job.track(rows):
            import_row(row)

Exceptions: :class:`HeraldError` (a refused request; ``code``, ``status``, ``details``
as Herald sent them; ``client_error`` when the client's own sending thread failed) and
:class:`JobCancelled` (raised by :meth:`ExternalJob.track` and
:meth:`ExternalJob.raise_if_cancelled` once the job was cancelled in Herald; the ``with``
block swallows it, the job being over already). A value that cannot be sent as JSON is a
``TypeError`` at the call that hands it in.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

import requests

__all__ = ["ExternalJob", "Herald", "HeraldError", "JobCancelled"]
__version__ = "0.1.0"

log = logging.getLogger("herald_client")

T = TypeVar("T")

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})
LOG_LEVELS = ("info", "warning", "error")


def _json_checked(value: T, what: str) -> T:
    """``value`` if it can be sent as JSON (no NaN or infinity: Herald refuses them), else
    a ``TypeError`` naming ``what`` — raised at the call, not in the sending thread."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be sent to Herald as JSON: {exc}") from None
    return value


def _number_checked(value: Any, what: str) -> Any:
    if type(value) in (int, float) and value == value and value not in (float("inf"), float("-inf")):
        return value  # the common case, without a json.dumps per progress tick
    return _json_checked(value, what)


class HeraldError(Exception):
    """A request Herald refused, or a server that stayed out of reach."""

    def __init__(self, message: str, *, code: str = "error", status: int | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.details = details


class JobCancelled(Exception):
    """The job was cancelled in Herald (its page, or ``POST /api/jobs/<id>/cancel``)."""


class _Retry(Exception):
    """A failure worth sending the same batch again for (network, 5xx, a racing report)."""


def _error_of(response: requests.Response) -> HeraldError:
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    return HeraldError(
        str(error.get("message") or f"HTTP {response.status_code}"),
        code=str(error.get("code") or "http_error"),
        status=response.status_code,
        details=error.get("details"),
    )


class Herald:
    """A Herald server and a user's access token (given, or from ``username``/``password``)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.token = token
        #: Kept to log in again when the access token expires (a long-lived ``Herald``).
        self._credentials: tuple[str, str] | None = None
        if token is None and username is not None:
            self.login(username, password or "")

    def login(self, username: str, password: str) -> str:
        """Log in; later calls use the access token (and log in again once it expires)."""
        body = self.request("POST", "/api/auth/login", json={"username": username, "password": password}, auth=None)
        self.token = str(body["access_token"])
        self._credentials = (username, password)
        return self.token

    def request(self, method: str, path: str, *, json: Any = None, auth: str | None = "") -> Any:
        """One REST call (``auth=""``: the user's token; None: no token); a 4xx/5xx raises
        :class:`HeraldError`, an unreachable server ``requests.RequestException``. With the
        user's token, a ``401 token_expired`` logs in again (when the password is known) and
        makes the call once more."""
        try:
            return self._request(method, path, json=json, auth=auth)
        except HeraldError as error:
            if auth != "" or error.code != "token_expired" or self._credentials is None:
                raise
            log.info("the access token expired: logging in again as %s", self._credentials[0])
            self.login(*self._credentials)
            return self._request(method, path, json=json, auth=auth)

    def _request(self, method: str, path: str, *, json: Any, auth: str | None) -> Any:
        token = self.token if auth == "" else auth
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.http.request(method, self.url + path, json=json, headers=headers, timeout=self.timeout)
        if response.status_code >= 400:
            raise _error_of(response)
        return response.json() if response.content else None

    def job(
        self,
        name: str,
        *,
        total: float | None = None,
        flush_interval: float = 0.5,
        batch_size: int = 500,
        max_line_chars: int = 4096,
        retry_for: float = 300.0,
    ) -> ExternalJob:
        """An external job, created when the ``with`` block starts (or by ``start()``).

        Items go out every ``flush_interval`` seconds or once ``batch_size`` are waiting; a
        batch that fails to arrive is sent again for up to ``retry_for`` seconds.
        """
        return ExternalJob(
            self,
            name,
            total=total,
            flush_interval=flush_interval,
            batch_size=batch_size,
            max_line_chars=max_line_chars,
            retry_for=retry_for,
        )


class ExternalJob:
    """One external job: what the program reports is queued here and sent in batches."""

    #: Seconds between empty reports while nothing else is sent: how the job hears of a cancel.
    poll_interval = 2.0

    def __init__(
        self,
        herald: Herald,
        name: str,
        *,
        total: float | None,
        flush_interval: float,
        batch_size: int,
        max_line_chars: int,
        retry_for: float,
    ) -> None:
        self.herald = herald
        self.name = name
        self.total = total
        self.flush_interval = flush_interval
        self.batch_size = max(1, min(batch_size, 1000))
        self.max_line_chars = max_line_chars
        self.retry_for = retry_for
        #: The job's id and snapshot as created, the producer token (after ``start()``).
        self.id: int | None = None
        self.snapshot: dict[str, Any] = {}
        self.token: str | None = None
        #: The job's status as the last report answer said.
        self.status = "pending"
        #: The counters sent so far (``count()`` merges into them).
        self.counts: dict[str, float] = {}
        self._report_path = ""
        self._queue: list[dict[str, Any]] = []
        self._n = 0
        #: Items at the head of the queue being sent now (they must not change).
        self._in_flight = 0
        self._result: Any = None
        self._has_result = False
        self._error: HeraldError | None = None
        #: Set when the sending thread itself failed: every later call raises it.
        self._crash: HeraldError | None = None
        self._closing = False
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> ExternalJob:
        """Create the job in Herald and start the sending thread."""
        body: dict[str, Any] = {"kind": "external", "name": self.name}
        if self.total is not None:
            body["total"] = self.total
        created = self.herald.request("POST", "/api/jobs", json=body)
        self.snapshot = dict(created["job"])
        self.id = int(self.snapshot["id"])
        self.token = str(created["producer_token"])
        self._report_path = str(created["report_url"])
        self._put({"type": "status", "status": "running"})
        self._thread = threading.Thread(target=self._sender, name=f"herald-job-{self.id}", daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> ExternalJob:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if kind is None:
            self.complete()
        elif issubclass(kind, JobCancelled) and self.cancelled:
            self.close()
            return True  # cancelled in Herald: the job is over already
        else:
            try:
                self.fail(f"{kind.__name__}: {exc}")
            except HeraldError as error:  # the block's own exception is the one to see
                log.error("job %s: its failure could not be reported: %s", self.id, error)
        return False

    def complete(self, result: Any = None) -> None:
        """End the job ``completed`` (with ``result``, or the last :meth:`result`) and wait."""
        if result is not None:
            self.result(result)
        self._end({"type": "status", "status": "completed"})

    def fail(self, error: str, *, code: str = "producer_failed") -> None:
        """End the job ``failed`` with ``error`` and wait until it is sent."""
        self._end({"type": "status", "status": "failed", "error": {"code": code, "message": error[:4000]}})

    def cancel(self) -> None:
        """End the job ``cancelled`` (the producer gave up) and wait until it is sent."""
        self._end({"type": "status", "status": "cancelled"})

    def _end(self, item: dict[str, Any]) -> None:
        with self._lock:
            if self.status not in FINAL_STATUSES and not self._closing and self._error is None:
                self._put_locked(item)
        self.close(raise_errors=True)

    def close(self, *, raise_errors: bool = False) -> None:
        """Send what is queued, then stop the sending thread."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        if raise_errors and self._error is not None:
            raise self._error

    # -- what the program reports ---------------------------------------------------------

    def progress(self, current: float, total: float | None = None, message: str | None = None) -> None:
        """Absolute progress; cheap: the progress item queued and not yet sent is replaced."""
        item: dict[str, Any] = {"type": "progress", "current": _number_checked(current, "progress current")}
        if total is not None:
            self.total = _number_checked(total, "progress total")
            item["total"] = total
        if message is not None:
            item["message"] = self._line(message)
        with self._lock:
            last = self._take_queued("progress")
            if last is not None:
                if "total" in last and "total" not in item:
                    item["total"] = last["total"]
                if "message" in last and "message" not in item:
                    item["message"] = last["message"]
            self._put_locked(item)

    def log(self, line: str, level: str = "info") -> None:
        """A log line (cut to ``max_line_chars``); ``level`` one of info, warning, error."""
        if level not in LOG_LEVELS:
            raise ValueError(f"level must be one of {', '.join(LOG_LEVELS)}, not {level!r}")
        self._put({"type": "log", "message": self._line(str(line)), "level": level})

    def message(self, text: str) -> None:
        """The job's one-line status text."""
        self._put({"type": "message", "message": self._line(str(text))})

    def count(self, counts: Mapping[str, float] | None = None, **values: float) -> None:
        """Set counters (absolute values, merged with the ones set before)."""
        merged = {**(counts or {}), **values}
        for key, value in merged.items():
            _number_checked(value, f"count {key!r}")
        with self._lock:
            self.counts.update(merged)
            self._take_queued("counts")  # counters are absolute: the newest set says it all
            self._put_locked({"type": "counts", "counts": dict(self.counts)})

    def result(self, value: Any) -> None:
        """The job's result (JSON: anything else is a ``TypeError`` here), stored now and
        carried by its completion."""
        _json_checked(value, "the result")
        self._result, self._has_result = value, True
        self._put({"type": "result", "result": value})

    def track(self, iterable: Iterable[T], total: float | None = None) -> Iterator[T]:
        """Yield ``iterable``'s items, reporting progress after each (total from ``len()``
        when it has one); raises :class:`JobCancelled` once the job was cancelled."""
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = self.total
        done = 0
        for item in iterable:
            self.raise_if_cancelled()
            yield item
            done += 1
            self.progress(done, total)

    @property
    def cancelled(self) -> bool:
        """True once Herald said the job was cancelled (by its user)."""
        return self.status == "cancelled"

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` once the job was cancelled in Herald."""
        if self.cancelled:
            raise JobCancelled(f"job {self.id} was cancelled")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far has been sent (or could not be); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._wake:
            self._wake.notify_all()
            while (self._queue or self._in_flight) and self._error is None and self.status not in FINAL_STATUSES:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._wake.wait(left if left is not None else 0.5)
        return True

    # -- queue and sending ----------------------------------------------------------------

    def _line(self, text: str) -> str:
        if len(text) <= self.max_line_chars:
            return text
        marker = " […]"
        return text[: self.max_line_chars - len(marker)] + marker

    def _put(self, item: dict[str, Any]) -> None:
        with self._lock:
            self._put_locked(item)

    def _put_locked(self, item: dict[str, Any]) -> None:
        if self._crash is not None:
            raise self._crash
        if self.status in FINAL_STATUSES:
            return  # the job is over: nothing more can be reported
        self._n += 1
        self._queue.append({"n": self._n, **item})
        if len(self._queue) >= self.batch_size:
            self._wake.notify_all()

    def _take_queued(self, type_: str) -> dict[str, Any] | None:
        """Remove and return the queued item of ``type_`` not being sent yet, if any (there
        is at most one: progress and counts are absolute, the newest replaces it). Call locked."""
        for index in range(len(self._queue) - 1, self._in_flight - 1, -1):
            if self._queue[index]["type"] == type_:
                return self._queue.pop(index)
        return None

    def _sender(self) -> None:
        """The background thread. It cannot end silently: whatever stops it early is kept
        for the program (raised by ``complete()``, the ``with`` block, or — a failure of the
        thread itself — the next call) and, unless Herald is out of reach, ends the job failed."""
        try:
            self._send_loop()
        except BaseException as exc:  # the thread's last word: anything at all must be told
            log.exception("job %s: the sending thread failed", self.id)
            error = HeraldError(f"the client's sending thread failed: {type(exc).__name__}: {exc}", code="client_error")
            error.__cause__ = exc
            with self._wake:
                self._crash = error
            self._give_up(error)

    def _send_loop(self) -> None:
        """Send a batch when due, and resend it unchanged until it lands."""
        last_sent = time.monotonic()
        while True:
            with self._wake:
                while not self._closing and len(self._queue) < self.batch_size:
                    waited_for = time.monotonic() - last_sent
                    due = self.flush_interval if self._queue else self.poll_interval
                    if waited_for >= due:
                        break
                    self._wake.wait(due - waited_for)
                if self._error is not None or self.status in FINAL_STATUSES or (self._closing and not self._queue):
                    self._queue.clear()
                    self._wake.notify_all()
                    return
                batch = list(self._queue[: self.batch_size])
                self._in_flight = len(batch)
            try:
                answer = self._send(batch)
            except HeraldError as error:
                self._give_up(error, end=error.code != "unreachable")
                return
            last_sent = time.monotonic()
            with self._wake:
                self._in_flight = 0
                del self._queue[: len(batch)]
                self.status = str(answer.get("status", self.status))
                self._wake.notify_all()

    def _send(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """POST one batch, again and again on network errors, 5xx and racing reports; in
        smaller batches when Herald's limit (``batch_too_large``, ``details.max_items``) is lower."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.2
        while True:
            try:
                return self._post(batch)
            except _Retry as reason:
                if time.monotonic() + delay > deadline:
                    raise HeraldError(f"gave up sending to Herald: {reason}", code="unreachable") from None
                log.warning("job %s: report failed (%s); sending it again in %.1f s", self.id, reason, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            except HeraldError as error:
                limit = (error.details or {}).get("max_items") if isinstance(error.details, dict) else None
                if error.code != "batch_too_large" or not isinstance(limit, int) or not 1 <= limit < len(batch):
                    raise
                log.warning("job %s: Herald takes %d items a report; sending %d in parts", self.id, limit, len(batch))
                with self._lock:
                    self.batch_size = min(self.batch_size, limit)
                answer: dict[str, Any] = {}
                for start in range(0, len(batch), limit):
                    answer = self._send(batch[start : start + limit])
                    if answer.get("status") in FINAL_STATUSES:
                        break
                return answer

    def _post(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        try:
            response = self.herald.http.post(
                self.herald.url + self._report_path,
                json={"items": batch},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=self.herald.timeout,
            )
        except requests.RequestException as exc:
            raise _Retry(type(exc).__name__) from None
        if response.status_code >= 500:
            raise _Retry(f"HTTP {response.status_code}")
        if response.status_code == 409:
            error = _error_of(response)
            if error.code == "report_conflict":
                raise _Retry("another report raced this one")
            if error.code == "job_finished":
                return {"status": (error.details or {}).get("status", "cancelled")}
            raise error
        if response.status_code >= 400:
            raise _error_of(response)
        return dict(response.json())

    def _give_up(self, error: HeraldError, *, end: bool = True) -> None:
        """Stop reporting for ``error``; with ``end``, try once to end the job failed with it
        (rather than leave it active until its token expires)."""
        log.error("job %s: reporting stopped: %s (%s)", self.id, error, error.code)
        with self._wake:
            self._error = self._error or error
            self._queue.clear()
            self._in_flight = 0
            self._wake.notify_all()
            if not end or self.status in FINAL_STATUSES or self._report_path == "":
                return
            self._n += 1  # above every n sent: a refused batch applied nothing
            message = self._line(f"the producer stopped reporting: {error} ({error.code})")
            item: dict[str, Any] = {"n": self._n, "type": "status", "status": "failed"}
            item["error"] = {"code": "reporting_failed", "message": message}
        try:
            answer = self._post([item])
        except Exception as exc:  # best effort: the first error is the one to raise
            log.error("job %s: it could not be ended failed either: %s", self.id, exc)
            return
        with self._wake:
            self.status = str(answer.get("status", "failed"))
            self._wake.notify_all()
