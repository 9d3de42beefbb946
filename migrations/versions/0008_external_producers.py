"""External producers: the highest producer ``n`` applied per job, and its token's deadline.

Revision ID: 0008_external_producers
Revises: 0007_session_tokens
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_external_producers"
down_revision = "0007_session_tokens"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("producer_seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("producer_expires_at", sa.DateTime(), nullable=True))
        batch_op.create_index("ix_jobs_producer_expires_at", ["producer_expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_producer_expires_at")
        batch_op.drop_column("producer_expires_at")
        batch_op.drop_column("producer_seq")
