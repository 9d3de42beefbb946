"""Plugin job kinds: ``HERALD_JOB_MODULES`` names modules whose ``@job_kind`` functions
become kinds beside the built-in ones.

Every process that builds the app imports them (web processes, Celery workers, CLI), so a
kind submitted anywhere runs anywhere. A module that cannot be imported, or that takes a
name already registered, stops the start with one line naming the module and the reason:
an operator reads what to fix, not a traceback through the import machinery.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Iterable

from .registry import KindCollision, all_kinds

log = logging.getLogger(__name__)

#: Exit status of a start refused for a job module: gunicorn's "App failed to load" (it
#: stops instead of forking workers that fail the same way, one after another).
EXIT_STATUS = 4


class JobModulesError(SystemExit):
    """A ``HERALD_JOB_MODULES`` module that cannot be used; ``message`` is the one line.

    A ``SystemExit``: whatever entry point builds the app (``python wsgi.py``, gunicorn,
    ``celery -A app.worker``, ``flask``) stops with that line and no traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(EXIT_STATUS)
        self.message = message

    def __str__(self) -> str:
        return self.message


def load_job_modules(names: Iterable[str]) -> list[str]:
    """Import each module (once per process); returns the kinds they added.

    Raises :class:`JobModulesError` (after printing its line to stderr) when one fails.
    """
    added: list[str] = []
    for name in names:
        first_import = name not in sys.modules
        before = {kind.name for kind in all_kinds()}
        try:
            importlib.import_module(name)
        except KindCollision as exc:
            what = "a built-in kind" if exc.existing.startswith("app.") else f"taken by {exc.existing}"
            _refuse(f"HERALD_JOB_MODULES: {name!r} registers job kind {exc.name!r}, {what}; rename it")
        except Exception as exc:
            _refuse(f"HERALD_JOB_MODULES: cannot import {name!r}: {_one_line(exc)}")
        kinds = sorted({kind.name for kind in all_kinds()} - before)
        if kinds:
            log.info("job kinds from %s: %s", name, ", ".join(kinds))
        elif first_import:  # imported for nothing: most likely the wrong module named
            log.warning("HERALD_JOB_MODULES: %r registers no job kind (no @job_kind function in it)", name)
        added += kinds
    return added


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    detail = text[0] if text else ""
    # A bare "No module named 'x'" says it all; other errors need their class too.
    if isinstance(exc, ModuleNotFoundError) and detail:
        return detail
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def _refuse(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
    raise JobModulesError(message) from None
