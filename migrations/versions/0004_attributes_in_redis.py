"""temporary attributes live in Redis only: drop the attribute table

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows here are short-lived by design (TTL of minutes to a day): nothing worth moving.
    op.drop_index("ix_attribute_expire_time", table_name="attribute")
    op.drop_index("ix_attribute_account_id", table_name="attribute")
    op.drop_table("attribute")


def downgrade() -> None:
    op.create_table(
        "attribute",
        sa.Column("attribute_id", sa.Uuid(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("expire_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
    )
    op.create_index("ix_attribute_account_id", "attribute", ["account_id"])
    op.create_index("ix_attribute_expire_time", "attribute", ["expire_time"])
