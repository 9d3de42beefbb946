"""Revoked tokens (logout).

Revision ID: 0005_token_revocation
Revises: 0001_core
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_token_revocation"
down_revision = "0001_core"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("jti"),
    )
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_revoked_tokens_user_id", ["user_id"], unique=False)
        batch_op.create_index("ix_revoked_tokens_expires_at", ["expires_at"], unique=False)


def downgrade():
    with op.batch_alter_table("revoked_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_revoked_tokens_expires_at")
        batch_op.drop_index("ix_revoked_tokens_user_id")
    op.drop_table("revoked_tokens")
