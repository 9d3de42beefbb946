"""``workflow``: a workflow execution (seed 004) — its steps run as child jobs, in order.

Step params may reference the execution's input and earlier results: a string that is
exactly ``${input.x}`` or ``${steps.<n>.result.y}`` (``n`` counts from 0) becomes that
value with its type; inside a longer string it is formatted as text. Progress is weighted
by step (step ``i`` of ``n`` at ``p`` % → ``(i + p/100) / n``). Each step reports durable
``node_status`` events ``{step, kind, status, progress, job_id}`` and log lines. A failing
step fails the execution with that step's error code; cancelling the execution cancels
the running step.
"""

from __future__ import annotations

import re
from typing import Any

from ...errors import Conflict, HeraldError, ValidationFailed
from ...extensions import db
from ...models import Job, JobStatus
from ...workflows.executions import EXECUTION_KIND, percent
from ..context import JobCancelled, JobContext, JobFailed
from ..registry import get_kind, job_kind

MAX_STEPS = 50
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
_WHOLE_REFERENCE = re.compile(r"^\$\{([^}]*)\}$")


class UnresolvedReference(LookupError):
    """A ``${...}`` that names nothing in the input or the earlier results."""


# -- references -------------------------------------------------------------------------


def _parse_reference(expression: str) -> tuple[str, int | None, list[str]]:
    """``input.a.b`` → ("input", None, [a, b]); ``steps.2.result.y`` → ("steps", 2, [y])."""
    parts = expression.strip().split(".")
    if parts[0] == "input" and all(parts[1:]):
        return "input", None, parts[1:]
    if len(parts) >= 3 and parts[0] == "steps" and parts[1].isdigit() and parts[2] == "result" and all(parts[3:]):
        return "steps", int(parts[1]), parts[3:]
    raise ValidationFailed(
        f"bad reference ${{{expression}}}: use ${{input.<key>}} or ${{steps.<n>.result.<key>}}",
        code="invalid_reference",
    )


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REFERENCE.findall(value)
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _references(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _references(item)]
    return []


def _lookup(root: Any, path: list[str], expression: str) -> Any:
    value = root
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            raise UnresolvedReference(f"${{{expression}}} does not resolve")
    return value


def _value_of(expression: str, input_data: dict[str, Any], results: list[Any]) -> Any:
    source, index, path = _parse_reference(expression)
    if source == "input":
        return _lookup(input_data, path, expression)
    assert index is not None
    if index >= len(results):
        raise UnresolvedReference(f"${{{expression}}} refers to a step that has not run")
    return _lookup(results[index], path, expression)


def resolve(value: Any, input_data: dict[str, Any], results: list[Any]) -> Any:
    """``value`` with every reference replaced (raises ``UnresolvedReference``)."""
    if isinstance(value, str):
        whole = _WHOLE_REFERENCE.match(value)
        if whole:
            return _value_of(whole.group(1), input_data, results)
        return _REFERENCE.sub(lambda m: str(_value_of(m.group(1), input_data, results)), value)
    if isinstance(value, dict):
        return {key: resolve(item, input_data, results) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, input_data, results) for item in value]
    return value


def validate_steps(steps: list[dict[str, Any]], owner_id: int | None = None) -> list[dict[str, Any]]:
    """Check a workflow's steps when it is saved: known kinds, references to earlier steps;
    with ``owner_id``, the params of steps that use no ``${...}`` are checked as a
    submission would be (shape, and test cases, uploads, datasets the owner has: 400
    naming ``steps[i].params.<field>``)."""
    if not steps:
        raise ValidationFailed("a workflow needs at least one step", details={"path": "steps"})
    if len(steps) > MAX_STEPS:
        raise ValidationFailed(f"a workflow has at most {MAX_STEPS} steps", details={"path": "steps"})
    clean = []
    for index, step in enumerate(steps):
        path = f"steps[{index}]"
        kind = step["kind"]
        if kind == EXECUTION_KIND:
            raise ValidationFailed("a workflow step cannot be a workflow", details={"path": f"{path}.kind"})
        try:
            get_kind(kind)
        except ValidationFailed as exc:
            raise ValidationFailed(exc.message, details={"path": f"{path}.kind"}) from None
        params = step.get("params") or {}
        if owner_id is not None and not _references(params):
            _check_step_params(kind, params, owner_id, path)
        for expression in _references(params):
            try:
                source, ref_index, _ = _parse_reference(expression)
            except ValidationFailed as exc:
                raise ValidationFailed(exc.message, code=exc.code, details={"path": f"{path}.params"}) from None
            if source == "steps" and ref_index is not None and ref_index >= index:
                raise ValidationFailed(
                    f"${{{expression}}} in step {index} must refer to an earlier step",
                    code="invalid_reference",
                    details={"path": f"{path}.params"},
                )
        clean.append({"kind": kind, "params": params})
    return clean


def _check_step_params(kind: str, params: dict[str, Any], owner_id: int, path: str) -> None:
    """A step's literal params, checked now: refusals name the step (state that may still
    change before a run, such as a dataset that exists, is left to the run)."""
    job_kind = get_kind(kind)
    try:
        clean = job_kind.validate(params)
        if job_kind.precheck is not None:
            job_kind.precheck(owner_id, clean)
    except ValidationFailed as exc:
        detail = exc.details if isinstance(exc.details, dict) else (exc.details or [{}])[0]
        field = str(detail.get("path", "params"))
        where = f"{path}.{field}"
        raise ValidationFailed(f"{where}: {exc.message}", code=exc.code, details={"path": where}) from None
    except HeraldError:
        pass
    finally:
        db.session.rollback()


def missing_inputs(steps: list[dict[str, Any]], input_data: dict[str, Any]) -> list[str]:
    """Input references an execution's ``input_data`` cannot satisfy."""
    missing = []
    for step in steps:
        for expression in _references(step.get("params") or {}):
            source, _, path = _parse_reference(expression)
            if source == "input":
                try:
                    _lookup(input_data, path, expression)
                except UnresolvedReference:
                    missing.append(f"${{{expression}}}")
    return missing


# -- the job kind ------------------------------------------------------------------------------


def _child_outcome(child_id: int) -> tuple[str, Any, dict[str, Any] | None]:
    db.session.expire_all()
    child = db.session.get(Job, child_id)
    outcome = (child.status, child.result, child.error) if child is not None else ("failed", None, None)
    db.session.remove()
    return outcome


def _cancel_child(child_id: int) -> None:
    from ..runner import runner
    from ..service import cancel_job

    child = db.session.get(Job, child_id)
    try:
        if child is not None:
            cancel_job(child)
    except Conflict:
        pass
    finally:
        db.session.remove()
    runner.wait(child_id, timeout=30)


@job_kind(
    EXECUTION_KIND,
    title="Workflow execution",
    submittable=False,
    coordinator=True,
    schema={
        "properties": {
            "workflow_id": {"type": "integer", "title": "Workflow"},
            "name": {"type": "string", "title": "Name"},
            "steps": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_STEPS,
                "items": {"type": "object"},
                "title": "Steps",
            },
            "input": {"type": "object", "default": {}, "title": "Input"},
        },
        "required": ["steps"],
    },
)
def run_workflow(ctx: JobContext, params: dict[str, Any]) -> dict[str, Any]:
    """Run a workflow's steps as child jobs, in order; started by ``POST /api/v1/executions``."""
    from ..runner import runner
    from ..service import latest_progress, submit_job

    steps: list[dict[str, Any]] = params["steps"]
    input_data: dict[str, Any] = params.get("input") or {}
    total = len(steps)
    results: list[Any] = []
    for index, step in enumerate(steps):
        ctx.event("node_status", {"step": index, "kind": step["kind"], "status": "pending", "progress": 0})
    ctx.log(f"executing {total} step(s)")
    for index, step in enumerate(steps):
        kind = step["kind"]
        label = f"step {index + 1} of {total}: {kind}"
        ctx.raise_if_cancelled()
        try:
            step_params = resolve(step.get("params") or {}, input_data, results)
            child_id = submit_job(ctx.owner_id, kind, step_params, parent_id=ctx.job_id, internal=True).id
        except (UnresolvedReference, HeraldError) as exc:
            message = getattr(exc, "message", None) or str(exc)
            ctx.event("node_status", {"step": index, "kind": kind, "status": "failed", "progress": 0})
            raise JobFailed(f"step {index} ({kind}) could not start: {message}", code="invalid_step") from None
        finally:
            db.session.remove()
        ctx.event("node_status", {"step": index, "kind": kind, "status": "running", "progress": 0, "job_id": child_id})
        ctx.log(f"{label} started (job {child_id})")
        ctx.progress(index * 100 / total, 100, label, step=index, step_kind=kind, step_percent=0)
        while not runner.wait(child_id, timeout=0.2):
            if ctx.cancelled:
                _cancel_child(child_id)
                ctx.event("node_status", {"step": index, "kind": kind, "status": "cancelled", "job_id": child_id})
                raise JobCancelled()
            step_percent = percent(latest_progress(child_id))
            ctx.progress((index + step_percent / 100) * 100 / total, 100, label, step_percent=step_percent)
        status, result, error = _child_outcome(child_id)
        node = {"step": index, "kind": kind, "status": status, "job_id": child_id}
        if status == JobStatus.COMPLETED.value:
            results.append(result)
            ctx.event("node_status", {**node, "progress": 100})
            ctx.progress((index + 1) * 100 / total, 100, label, step_percent=100)
            ctx.log(f"{label} completed")
            continue
        ctx.event("node_status", {**node, "progress": percent(latest_progress(child_id)), "error": error})
        ctx.raise_if_cancelled()
        error = error or {"code": "step_" + status, "message": f"the step was {status}"}
        ctx.log(f"{label} {status}: {error.get('message')}", "error")
        raise JobFailed(f"step {index} ({kind}) {status}: {error.get('message')}", code=str(error.get("code")))
    ctx.log(f"all {total} step(s) completed")
    return {"output": results[-1] if results else None, "steps": results}
