"""handlers

Revision ID: 0005_handlers
Revises: 0004
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_handlers"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "handler",
        sa.Column("handler_id", sa.Uuid(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("description", sa.String(128), nullable=False),
        sa.Column("handler_type", sa.String(16), nullable=False),
        sa.Column("policies", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_handler_account_handler", "handler", ["account_id", "handler_id"])


def downgrade() -> None:
    op.drop_index("ix_handler_account_handler", table_name="handler")
    op.drop_table("handler")
