"""All models, imported here so that migrations and the app see every table."""

from .artifact import Artifact
from .base import isoformat, utcnow
from .dataset import Dataset, DatasetPage
from .job import FINAL_STATUSES, Job, JobEvent, JobStatus, Worker
from .test_case import TestCase, TestCaseResult
from .token import RevokedToken, SessionToken
from .upload import Upload
from .user import User
from .webhook import DELIVERY_STATUSES, Webhook, WebhookCursor, WebhookDelivery
from .workflow import Workflow

__all__ = [
    "Artifact",
    "Dataset",
    "DatasetPage",
    "Upload",
    "FINAL_STATUSES",
    "Job",
    "JobEvent",
    "JobStatus",
    "RevokedToken",
    "SessionToken",
    "TestCase",
    "TestCaseResult",
    "User",
    "DELIVERY_STATUSES",
    "Webhook",
    "WebhookCursor",
    "WebhookDelivery",
    "Worker",
    "Workflow",
    "isoformat",
    "utcnow",
]
