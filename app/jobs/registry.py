"""The registry of job kinds: a decorator, a JSON Schema for params, validation.

A kind is a function ``run(ctx: JobContext, params: dict) -> result`` registered with
:func:`job_kind`. Its schema is plain JSON Schema, so the same document validates REST
submissions (400 with details) and drives the "New job" form in the browser.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jsonschema.protocols import Validator

from ..errors import ValidationFailed
from ..inputs import SchemaValidator

if TYPE_CHECKING:
    from .context import JobContext

JobFunction = Callable[["JobContext", dict[str, Any]], Any]
#: ``precheck(owner_id, params)`` raises a ``HeraldError`` (400, 409 ...) to refuse a submission.
Precheck = Callable[[int, dict[str, Any]], None]
#: ``outcome(params, result)`` of a completed job: ``"succeeded"`` or ``"failures"`` (its
#: work ran to the end but some of it failed: a failed case, rows rejected past a threshold).
OutcomeRule = Callable[[dict[str, Any], Any], str]

#: What a job came to, as pages and clients show it first (``None`` while it is active).
OUTCOMES = ("succeeded", "failures", "failed", "cancelled")


class KindCollision(ValueError):
    """A second function registered under a kind's name: refused, or a plugin could
    silently replace a built-in kind (or another plugin's)."""

    def __init__(self, name: str, existing: str, newcomer: str) -> None:
        super().__init__(f"job kind {name!r} is already registered by {existing}; {newcomer} cannot take its name")
        self.name = name
        self.existing = existing
        self.newcomer = newcomer


def _where(func: JobFunction) -> str:
    return f"{func.__module__}.{func.__qualname__}"


def _always_succeeded(params: dict[str, Any], result: Any) -> str:
    return "succeeded"


@dataclass(frozen=True)
class JobKind:
    """A registered kind: its name, function, params schema and how it reports."""

    name: str
    run: JobFunction
    schema: dict[str, Any]
    title: str
    description: str
    #: The progress event type its ticks use (``job_progress`` unless kind-specific).
    progress_type: str = "job_progress"
    #: Whether ``{kind, params}`` alone starts a run of it: ``POST /api/jobs`` through
    #: ``service.submit_job``, the New-job form, a workflow step, Re-run. False for kinds
    #: created by their own operation: uploads (``POST /api/uploads``), workflow executions,
    #: and external jobs (``POST /api/jobs`` with kind ``external`` creates one together with
    #: its producer token; no runner ever runs it).
    submittable: bool = True
    #: Mostly waits for child jobs (batches, workflows): runs outside the worker slots.
    coordinator: bool = False
    #: Claimed and run by a job runner; False for jobs a request drives itself (uploads).
    queued: bool = True
    #: Optional check against current state at submit time (e.g. "dataset exists" → 409).
    precheck: Precheck | None = field(default=None, repr=False, compare=False)
    #: For kinds that keep counts: the counts of a run that was cut off (its worker died),
    #: recomputed from what survives, for its terminal row.
    final_counts: Callable[[int], dict[str, Any] | None] | None = field(default=None, repr=False, compare=False)
    #: How a completed run's result reads as an outcome (see :data:`OUTCOMES`).
    outcome_rule: OutcomeRule = field(default=_always_succeeded, repr=False, compare=False)
    validator: Validator = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def validate(self, params: Any) -> dict[str, Any]:
        """Return params with defaults filled in, or raise ``ValidationFailed``."""
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ValidationFailed("params must be an object", details={"path": "params"})
        errors = sorted(self.validator.iter_errors(params), key=lambda e: list(e.path))
        if errors:
            details = [
                {
                    "path": "params" + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in e.path),
                    "message": e.message,
                }
                for e in errors
            ]
            raise ValidationFailed(
                f"invalid params for kind {self.name!r}: {details[0]['path']}: {details[0]['message']}",
                details=details,
            )
        filled = dict(params)
        for name, prop in self.schema.get("properties", {}).items():
            if name not in filled and isinstance(prop, dict) and "default" in prop:
                filled[name] = prop["default"]
        return filled

    def describe(self) -> dict[str, Any]:
        """Public description, served to the dashboard's form."""
        return {
            "kind": self.name,
            "title": self.title,
            "description": self.description,
            "schema": self.schema,
            "progress_type": self.progress_type,
            "submittable": self.submittable,
        }


_KINDS: dict[str, JobKind] = {}


def job_kind(
    name: str,
    *,
    schema: dict[str, Any],
    title: str | None = None,
    progress_type: str = "job_progress",
    submittable: bool = True,
    precheck: Precheck | None = None,
    coordinator: bool = False,
    queued: bool = True,
    final_counts: Callable[[int], dict[str, Any] | None] | None = None,
    outcome: OutcomeRule | None = None,
) -> Callable[[JobFunction], JobFunction]:
    """Register the decorated function as job kind ``name`` (:class:`KindCollision` if
    another function has it)."""

    def register(func: JobFunction) -> JobFunction:
        existing = _KINDS.get(name)
        if existing is not None and _where(existing.run) != _where(func):
            raise KindCollision(name, _where(existing.run), _where(func))
        full_schema = {"type": "object", "additionalProperties": False, **schema}
        SchemaValidator.check_schema(full_schema)
        _KINDS[name] = JobKind(
            name=name,
            run=func,
            schema=full_schema,
            title=title or name.replace("_", " ").capitalize(),
            description=_plain_summary(func.__doc__),
            progress_type=progress_type,
            submittable=submittable,
            precheck=precheck,
            coordinator=coordinator,
            queued=queued,
            final_counts=final_counts,
            outcome_rule=outcome or _always_succeeded,
            validator=SchemaValidator(full_schema),
        )
        return func

    return register


def _plain_summary(docstring: str | None) -> str:
    """A docstring's first paragraph as the pages show it: one line, without the double
    backticks of reStructuredText code (``name`` reads as name)."""
    first = (docstring or "").strip().split("\n\n")[0]
    return re.sub(r"``(.+?)``", r"\1", " ".join(first.split()))


def unknown_reference(path: str, message: str) -> ValidationFailed:
    """The 400 a submission gets when its params name something the user does not have
    (a test case, an upload, a dataset): refused now, not failed later."""
    return ValidationFailed(f"{path}: {message}", code="unknown_reference", details={"path": path})


def get_kind(name: str) -> JobKind:
    """The kind called ``name``, or ``ValidationFailed`` naming the known ones."""
    try:
        return _KINDS[name]
    except KeyError:
        known = ", ".join(sorted(_KINDS))
        raise ValidationFailed(f"unknown job kind {name!r}; known kinds: {known}", details={"path": "kind"}) from None


def outcome_of(kind: str, status: str, params: dict[str, Any] | None, result: Any) -> str | None:
    """A job's outcome (see :data:`OUTCOMES`) from its row: None while it is active; a
    completed one as its kind's rule reads the result (an unknown kind, or a result the
    rule cannot read, as ``succeeded``)."""
    if status in ("failed", "cancelled"):
        return status
    if status != "completed":
        return None
    job_kind = _KINDS.get(kind)
    rule = job_kind.outcome_rule if job_kind is not None else _always_succeeded
    try:
        return rule(params or {}, result)
    except (TypeError, ValueError, AttributeError, KeyError):
        return "succeeded"


def all_kinds() -> list[JobKind]:
    """Every registered kind, by name."""
    return [_KINDS[name] for name in sorted(_KINDS)]


def queued_kind_names(*, coordinator: bool) -> list[str]:
    """Names of the kinds a runner claims for one kind of slot (coordinators or workers)."""
    return sorted(name for name, kind in _KINDS.items() if kind.queued and kind.coordinator == coordinator)
