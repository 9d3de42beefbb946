"""REST API blueprint (``/api``): jobs and kinds; other areas add their modules here."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import jobs, meta, test_cases  # noqa: E402,F401
