"""REST API blueprint (``/api``): one module per resource (jobs, uploads, datasets, ...)."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import artifacts, datasets, jobs, meta, producers, stream, test_cases, uploads, webhooks, workflows  # noqa: E402,F401
