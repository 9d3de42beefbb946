"""What a running job sees: progress, logs, durable events, counts and cancellation.

Job code knows nothing of transports: everything it reports goes through the pipeline.
``progress()`` is the hot call (a job may make 100,000 a second): it only stores the
latest values and yields to other greenlets every few milliseconds. ``yield_if_due()`` is
that yield alone, for loops that report nothing; ``run_in_thread()`` is for a library call
that cannot yield at all.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..concurrency import run_in_os_thread, sleep_until, yield_to_loop
from ..extensions import socketio
from ..realtime.pipeline import Fence, Pipeline, ProgressState


class JobCancelled(Exception):
    """Raised inside a job by :meth:`JobContext.raise_if_cancelled` once cancel is asked."""


class LeaseLost(Exception):
    """Raised inside a job once its worker no longer holds it: stop, write nothing more."""


class JobFailed(Exception):
    """Raise from a job to fail it with a specific error code."""

    def __init__(self, message: str, *, code: str = "job_failed") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


#: How long a job may run before ``progress()`` lets other greenlets in. Busy jobs take
#: turns, so the rest of the loop can wait one such slice per busy job: at 10 ms, 50 jobs
#: logging flat out made the loop answer 60 ms late (p99); at 2 ms, 10 ms.
YIELD_EVERY = 0.002
#: The longest a job's sleep goes without looking for a cancel (a cancel asked in another
#: process reaches this one within ``JOB_CANCEL_POLL_INTERVAL``, 0.5 s, anyway).
SLEEP_SLICE = 0.25
#: Sleeps of at least ``SLEEP_GRID_FROM`` end on a grid of ``SLEEP_GRID`` seconds of the
#: monotonic clock (at most 10 % later than asked): the jobs due within one grid step
#: wake in one turn of the event loop, on one hub timer (``concurrency.sleep_until``). A
#: turn per wake-up cost ~30 µs of CPU: 200 jobs sleeping 0.1 s each took 7.6 % of a
#: core, 1.8 % on a 5 ms grid.
SLEEP_GRID = 0.005
SLEEP_GRID_FROM = 10 * SLEEP_GRID

T = TypeVar("T")


class JobContext:
    """The handle a job function receives; one per run."""

    def __init__(
        self,
        *,
        job_id: int,
        owner_id: int,
        kind: str,
        params: dict[str, Any],
        client_id: str | None,
        pipeline: Pipeline,
        fence: Fence,
        progress_type: str = "job_progress",
    ) -> None:
        self.job_id = job_id
        self.owner_id = owner_id
        self.kind = kind
        self.params = params
        self.client_id = client_id
        self._pipeline = pipeline
        #: Every durable write of this run is checked against it (the runner's lease).
        self.fence = fence
        self._state: ProgressState = pipeline.progress_state(job_id, owner_id)
        self._state.type = progress_type
        self._cancel_requested = False
        self._lease_lost = False
        self._last_yield = time.monotonic()

    # -- progress (coalesced) ------------------------------------------------------

    def progress(self, current: float, total: float | None = None, message: str | None = None, **extra: Any) -> None:
        """Report absolute progress; cheap, coalesced, the latest always goes out."""
        state = self._state
        state.current = current
        if total is not None:
            state.total = total
        if message is not None:
            state.message = message
        if extra:
            state.extra.update(extra)
        if not state.dirty:
            self._pipeline.mark_dirty(state)
        self.yield_if_due()

    def notify_rooms(self, *rooms: str) -> None:
        """Also send this job's progress ticks to ``rooms`` (e.g. the uploader's client)."""
        self._state.also_send_to(rooms)

    # -- durable events ------------------------------------------------------------

    def log(self, message: str, level: str = "info") -> int:
        """A ``job_log`` line ``{level, message}``; returns its seq."""
        return self.event("job_log", {"level": level, "message": message})

    def event(self, type_: str, data: dict[str, Any], **snapshot: Any) -> int:
        """A durable event of any type (``step_start``, ``case_result`` ...); returns its seq.

        The job goes on at once: the event is committed (then sent) behind it. What cannot
        be stored as JSON is refused here, where the job can see it.
        """
        try:
            json.dumps(data)
            if snapshot:
                json.dumps(snapshot)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{type_} event is not JSON: {exc}") from None
        seq = self._pipeline.append(self.job_id, type_, data, snapshot=snapshot or None, fence=self.fence)
        self.yield_if_due()
        return seq

    def update_counts(self, counts: dict[str, Any]) -> int:
        """Set the job's counters (durable ``job_counts`` event + snapshot)."""
        return self.event("job_counts", dict(counts), counts=dict(counts))

    def set_message(self, message: str) -> int:
        """Set the job's one-line status message (durable ``job_message`` event)."""
        return self.event("job_message", {"message": message}, message=message)

    # -- cancellation -------------------------------------------------------------

    def request_cancel(self) -> None:
        """Mark the run as cancelled; the job sees it at its next check."""
        self._cancel_requested = True

    @property
    def cancelled(self) -> bool:
        """True once cancellation was asked for, or the lease was lost."""
        return self._cancel_requested or self._lease_lost

    def lose_lease(self) -> None:
        """The runner learnt that another worker settled this job: stop at the next check."""
        self._lease_lost = True
        self._state.lease_until = 0.0

    def hold_lease_until(self, moment: float) -> None:
        """Ticks may go out until ``moment`` (``time.monotonic()``), when the lease may lapse."""
        if not self._lease_lost:
            self._state.lease_until = moment

    def raise_if_cancelled(self) -> None:
        """Raise :class:`JobCancelled` when cancellation was asked for (:class:`LeaseLost`
        when the job is no longer this worker's)."""
        if self._lease_lost:
            raise LeaseLost()
        if self._cancel_requested:
            raise JobCancelled()

    def sleep(self, seconds: float) -> None:
        """Sleep cooperatively, waking early (and raising) on cancel.

        A sleep of ``SLEEP_GRID_FROM`` or more ends on the next ``SLEEP_GRID`` step after
        ``seconds`` (a job keeping a cadence, as ``simulate`` does, keeps its pace)."""
        deadline = time.monotonic() + seconds
        on_grid = seconds >= SLEEP_GRID_FROM
        if on_grid:
            deadline = math.ceil(deadline / SLEEP_GRID) * SLEEP_GRID
        slept = False
        while True:
            self.raise_if_cancelled()
            now = time.monotonic()
            left = deadline - now
            if left <= 0:
                if slept:  # the job just gave up the loop: its next progress() need not
                    self._last_yield = now
                return
            if left > SLEEP_SLICE:
                socketio.sleep(SLEEP_SLICE)
            elif on_grid:
                sleep_until(deadline)  # one hub timer for every job waking at this step
            else:
                socketio.sleep(left)
            slept = True

    def yield_now(self) -> None:
        """Let other greenlets run (call inside CPU-heavy loops)."""
        self._last_yield = time.monotonic()
        yield_to_loop()

    def yield_if_due(self) -> None:
        """Let other greenlets run once this job has held the loop ``YIELD_EVERY``; cheap
        enough to call for every row of a file."""
        now = time.monotonic()
        if now - self._last_yield >= YIELD_EVERY:
            self._last_yield = now
            yield_to_loop()

    def run_in_thread(self, call: Callable[[], T]) -> T:
        """Run ``call`` in a real OS thread and wait for it without holding the event loop.

        For library code that loops without ever yielding (openpyxl opening a workbook):
        the interpreter switches threads every few milliseconds, so other greenlets keep
        being served.
        """
        return run_in_os_thread(call)
