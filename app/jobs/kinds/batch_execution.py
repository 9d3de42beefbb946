"""``batch_execution``: run many test cases, at most ``concurrency`` at once (seed 000).

Each case runs as a child ``api_test`` job (``parent_id`` = the batch), so every case has
its own event stream, stored result and seed-001 ``subscribe_test`` id, and the runner's
global limit still applies. The batch keeps ``Job.counts`` current on every change —
``success_count + failed_count + running_count + pending_count == total_count`` at all
times — emits a durable ``case_result`` per finished case, and ends ``completed`` even
when cases fail (they count in ``failed_count``).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from sqlalchemy import select

from ...apitests.store import get_owned_case
from ...errors import Conflict, NotFound
from ...extensions import db
from ...models import Job, JobStatus
from ..context import JobCancelled, JobContext, JobFailed
from ..registry import job_kind, unknown_reference
from ..runner import runner
from ..service import cancel_job, submit_job

#: How often the batch looks at its running children.
POLL_INTERVAL = 0.05


class BatchCounts:
    """The five counters, published as a whole on every change."""

    def __init__(self, ctx: JobContext, total: int) -> None:
        self.ctx = ctx
        self.total = total
        self.success = self.failed = self.running = 0
        self.pending = total

    def publish(self) -> None:
        self.ctx.update_counts(
            {
                "success_count": self.success,
                "failed_count": self.failed,
                "running_count": self.running,
                "pending_count": self.pending,
                "total_count": self.total,
            }
        )

    def started(self) -> None:
        self.pending -= 1
        self.running += 1
        self.publish()

    def finished(self, ok: bool) -> None:
        self.running -= 1
        if ok:
            self.success += 1
        else:
            self.failed += 1
        self.publish()


def _case_outcome(job_id: int, test_case_id: int, name: str, index: int) -> dict[str, Any]:
    """A finished child job → the ``case_result`` event data (``index``: its position in
    ``test_case_ids``, from 0, so a case listed twice gives two rows)."""
    db.session.remove()
    child = db.session.get(Job, job_id)
    data: dict[str, Any] = {
        "index": index,
        "test_case_id": test_case_id,
        "name": name,
        "job_id": job_id,
        "steps": [],
    }
    if child is not None and child.status == JobStatus.COMPLETED.value and isinstance(child.result, dict):
        data["status"] = child.result.get("status", "failed")
        data["steps"] = list(child.result.get("steps") or [])
    else:
        data["status"] = "error" if child is None or child.status == JobStatus.FAILED.value else "cancelled"
        data["error"] = (child.error if child is not None else None) or {
            "code": "lost",
            "message": "the case job is gone",
        }
    db.session.remove()
    return data


def _cancel_children(owner_id: int, job_ids: list[int]) -> None:
    for job_id in job_ids:
        child = db.session.get(Job, job_id)
        if child is not None and child.owner_id == owner_id:
            try:
                cancel_job(child)
            except Conflict:
                pass  # it finished meanwhile
    db.session.remove()


def counts_after_interruption(job_id: int) -> dict[str, Any] | None:
    """A batch cut off with its worker: nothing runs any more. Cases that passed count as
    success, every other case started (failed, cancelled, or cut off too) as failed, cases
    never started stay pending."""
    batch = db.session.get(Job, job_id)
    if batch is None or not isinstance(batch.counts, dict):
        return None
    total = int(batch.counts.get("total_count") or 0)
    success = failed = 0
    for status, result in db.session.execute(select(Job.status, Job.result).where(Job.parent_id == job_id)):
        passed = status == JobStatus.COMPLETED.value and isinstance(result, dict) and result.get("status") == "passed"
        success += passed
        failed += not passed
    return {
        "success_count": success,
        "failed_count": failed,
        "running_count": 0,
        "pending_count": max(0, total - success - failed),
        "total_count": total,
    }


def precheck(owner_id: int, params: dict[str, Any]) -> None:
    """Every case must be the user's: the first unknown one is refused (400 naming its index)."""
    try:
        for index, case_id in enumerate(params["test_case_ids"]):
            try:
                get_owned_case(owner_id, int(case_id))
            except NotFound as exc:
                raise unknown_reference(f"params.test_case_ids[{index}]", exc.message) from None
    finally:
        db.session.rollback()


def _outcome(params: dict[str, Any], result: Any) -> str:
    """Any failed case makes the batch a completed job with failures."""
    failed = int(result.get("failed_count") or 0) if isinstance(result, dict) else 0
    return "failures" if failed else "succeeded"


@job_kind(
    "batch_execution",
    title="Batch of API test cases",
    coordinator=True,
    final_counts=counts_after_interruption,
    precheck=precheck,
    outcome=_outcome,
    schema={
        "required": ["test_case_ids"],
        "properties": {
            "test_case_ids": {
                "type": "array",
                "items": {"type": "integer", "minimum": 1},
                "minItems": 1,
                "maxItems": 1000,
                "title": "Test cases",
                "description": "The test cases to run, in order (a case may appear more than once)",
            },
            "concurrency": {
                "type": "integer",
                "minimum": 1,
                "maximum": 32,
                "default": 4,
                "title": "Concurrency",
                "description": "How many cases run at once",
            },
        },
    },
)
def batch_execution(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run several API test cases with bounded concurrency; completes even when some fail."""
    case_ids: list[int] = [int(i) for i in params["test_case_ids"]]
    # A batch is a coordinator: it runs outside the worker slots its cases need.
    concurrency = max(1, min(int(params.get("concurrency") or 4), runner.max_concurrent))
    names: dict[int, str] = {}
    for case_id in case_ids:
        try:
            names[case_id] = get_owned_case(ctx.owner_id, case_id).name
        except NotFound as exc:
            raise JobFailed(exc.message, code="not_found") from None
    db.session.remove()
    counts = BatchCounts(ctx, len(case_ids))
    counts.publish()
    waiting = deque(enumerate(case_ids))
    running: dict[int, tuple[int, int]] = {}  # child job id → (position, test case id)
    outcomes: list[dict[str, Any]] = []
    try:
        while waiting or running:
            while waiting and len(running) < concurrency:
                ctx.raise_if_cancelled()
                index, case_id = waiting.popleft()
                child = submit_job(
                    ctx.owner_id, "api_test", {"test_case_id": case_id}, parent_id=ctx.job_id, internal=True
                )
                running[child.id] = (index, case_id)
                db.session.remove()
                counts.started()
            finished = [job_id for job_id in running if runner.wait(job_id, timeout=0)]
            for job_id in finished:
                index, case_id = running.pop(job_id)
                outcome = _case_outcome(job_id, case_id, names[case_id], index)
                ctx.event("case_result", outcome)
                outcomes.append(outcome)
                counts.finished(outcome["status"] == "passed")
            if not finished:
                ctx.sleep(POLL_INTERVAL)
    except JobCancelled:
        _cancel_children(ctx.owner_id, list(running))
        raise
    return {
        "total_count": counts.total,
        "success_count": counts.success,
        "failed_count": counts.failed,
        "cases": [
            {k: o[k] for k in ("index", "test_case_id", "name", "status", "job_id")}
            for o in sorted(outcomes, key=lambda o: o["index"])
        ],
    }
