"""REST API blueprint (``/api``): jobs, kinds, workflows; other areas add their modules here."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import jobs, meta, workflows  # noqa: E402,F401
