"""Job leases: the worker holding a job, until when, and when it was last dispatched.

Revision ID: 0006_job_leases
Revises: 0004_apitests
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_job_leases"
down_revision = "0004_apitests"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_expires_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_jobs_worker_id", ["worker_id"], unique=False)
    # Jobs left active by the previous version were held by their process without a lease:
    # give them an expired one, so the sweep settles them (pending ones are claimed again).
    op.execute(
        "UPDATE jobs SET lease_expires_at = CURRENT_TIMESTAMP WHERE status IN ('pending', 'running')"
    )
    op.execute("UPDATE jobs SET worker_id = NULL WHERE status = 'pending'")


def downgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_worker_id")
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("lease_expires_at")
