"""REST API blueprint (``/api``): jobs, kinds, uploads, datasets, artifacts; other areas add modules here."""

from flask import Blueprint

bp = Blueprint("api", __name__)

from . import artifacts, datasets, jobs, meta, uploads  # noqa: E402,F401
