"""verifiers

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verifier",
        sa.Column("verifier_id", sa.Uuid(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("description", sa.String(128), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_verifier_account_verifier", "verifier", ["account_id", "verifier_id"])


def downgrade() -> None:
    op.drop_index("ix_verifier_account_verifier", table_name="verifier")
    op.drop_table("verifier")
