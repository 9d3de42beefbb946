"""Room names, built only here (``job:42``, ``user:7``, ``user:7:jobs``, ``client:7:abc``, ``batch:42``)."""

from __future__ import annotations


def job_room(job_id: int) -> str:
    """Everyone subscribed to one job."""
    return f"job:{job_id}"


def user_jobs_room(user_id: int) -> str:
    """Connections that asked for every job of a user (``subscribe {all: true}``)."""
    return f"user:{user_id}:jobs"


def user_room(user_id: int) -> str:
    """Every connection of a user: user-level notices such as upload progress."""
    return f"user:{user_id}"


def client_room(user_id: int, client_id: str) -> str:
    """One client of one user; keyed by both so a borrowed client id reaches nothing."""
    return f"client:{user_id}:{client_id}"


def batch_room(job_id: int) -> str:
    """Watchers of one job as a seed-000 batch execution (``batch_execution_update``)."""
    return f"batch:{job_id}"


def test_room(job_id: int) -> str:
    """Seed-001 ``subscribe_test`` subscribers of one test job (``test:42``)."""
    return f"test:{job_id}"
