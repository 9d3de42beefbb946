"""All models, imported here so that migrations and the app see every table."""

from .base import isoformat, utcnow
from .job import FINAL_STATUSES, Job, JobEvent, JobStatus, Worker
from .token import RevokedToken
from .user import User

__all__ = [
    "FINAL_STATUSES",
    "Job",
    "JobEvent",
    "JobStatus",
    "RevokedToken",
    "User",
    "Worker",
    "isoformat",
    "utcnow",
]
