"""notifications: what the outbox carries for callbacks, the relay's cursor, webhook deliveries;
events' descriptors (matching by and against events); hourly event statistics

Revision ID: 0007_notifications
Revises: 0006_events
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_notifications"
down_revision = "0006_events"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("callbacks", sa.JSON(), nullable=True))
    op.create_table(
        "relay_cursor",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "callback_delivery",
        sa.Column("delivery_id", SEQ, primary_key=True, autoincrement=True),
        sa.Column("outbox_seq", sa.BigInteger(), nullable=False),
        sa.Column("callback", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("target", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_result", sa.String(64), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivery_time", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("outbox_seq", "callback", name="uq_callback_delivery"),
    )
    op.create_index("ix_callback_delivery_due", "callback_delivery", ["status", "next_attempt_time"])
    op.create_table(
        "event_descriptor",
        sa.Column("event_id", sa.Uuid(), sa.ForeignKey("event.event_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("descriptor", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_event_descriptor_account", "event_descriptor", ["account_id", "version"])
    op.create_table(
        "event_stats_hourly",
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("create_time", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("handler_id", sa.Uuid(), primary_key=True),
        sa.Column("source", sa.String(129), primary_key=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("similarity_count", sa.Integer(), nullable=False),
        sa.Column("similarity_sum", sa.Float(), nullable=False),
        sa.Column("similarity_min", sa.Float(), nullable=True),
        sa.Column("similarity_max", sa.Float(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("event_stats_hourly")
    op.drop_table("event_descriptor")
    op.drop_table("callback_delivery")
    op.drop_table("relay_cursor")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("callbacks")
        batch.drop_column("payload")
