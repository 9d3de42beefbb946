"""Access tokens minted by browser sessions (sign-out revokes every tab's).

Revision ID: 0007_session_tokens
Revises: 0006_job_leases
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_session_tokens"
down_revision = "0006_job_leases"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "session_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("session_jti", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("session_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_session_tokens_session_jti", ["session_jti"], unique=False)
        batch_op.create_index("ix_session_tokens_user_id", ["user_id"], unique=False)
        batch_op.create_index("ix_session_tokens_expires_at", ["expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("session_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_session_tokens_expires_at")
        batch_op.drop_index("ix_session_tokens_user_id")
        batch_op.drop_index("ix_session_tokens_session_jti")
    op.drop_table("session_tokens")
