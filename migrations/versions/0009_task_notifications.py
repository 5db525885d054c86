"""task notifications: webhook deliveries of task status changes (no outbox row, their own payload)

Revision ID: 0009_task_notifications
Revises: 0008_tasks
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_task_notifications"
down_revision = "0008_tasks"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # batch: SQLite changes a column's nullability only by copying the table
    with op.batch_alter_table("callback_delivery") as batch:
        batch.alter_column("outbox_seq", existing_type=sa.BigInteger(), nullable=True)
        batch.alter_column("event_id", existing_type=sa.Uuid(), nullable=True)
        batch.add_column(sa.Column("task_id", SEQ, nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM callback_delivery WHERE outbox_seq IS NULL")
    with op.batch_alter_table("callback_delivery") as batch:
        batch.drop_column("payload")
        batch.drop_column("task_id")
        batch.alter_column("event_id", existing_type=sa.Uuid(), nullable=False)
        batch.alter_column("outbox_seq", existing_type=sa.BigInteger(), nullable=False)
