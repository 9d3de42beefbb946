"""Webhook delivery retention: an index that finds finished deliveries by their last attempt.

Without it every trim (each process, every ``HISTORY_TRIM_INTERVAL``) would scan the whole
``webhook_deliveries`` table to find the few rows old enough to delete.

Revision ID: 0010_webhook_retention
Revises: 0009_webhooks
"""

from alembic import op

revision = "0010_webhook_retention"
down_revision = "0009_webhooks"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index("ix_webhook_deliveries_finished", ["status", "last_attempt_at"], unique=False)


def downgrade():
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_webhook_deliveries_finished")
