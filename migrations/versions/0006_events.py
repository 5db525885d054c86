"""events, general events and the outbox

Revision ID: 0006_events
Revises: 0005_handlers
Create Date: 2026-12-04
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006_events"
down_revision = "0005_handlers"
branch_labels = None
depends_on = None

FLEX_JSON = sa.JSON().with_variant(JSONB(), "postgresql")
SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _common() -> list[sa.Column]:
    """Columns events and general events share: identity, owner, times, location, track and stream."""
    return [
        sa.Column("event_id", sa.Uuid(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("track_id", sa.String(36), nullable=True),
        sa.Column("stream_id", sa.Uuid(), nullable=True),
        *(sa.Column(name, sa.String(36), nullable=True) for name in ("city", "area", "district", "street",
                                                                     "house_number")),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "event",
        *_common(),
        sa.Column("handler_id", sa.Uuid(), nullable=True),
        sa.Column("source", sa.String(128), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("user_data", sa.String(128), nullable=True),
        sa.Column("face_id", sa.Uuid(), nullable=True),
        sa.Column("attributes", FLEX_JSON, nullable=True),
        sa.Column("top_candidate_id", sa.Uuid(), nullable=True),
        sa.Column("top_similarity", sa.Float(), nullable=True),
        sa.Column("meta", FLEX_JSON, nullable=True),
        sa.Column("detections", sa.JSON(), nullable=True),
    )
    op.create_index("ix_event_account_time", "event", ["account_id", "create_time", "event_id"])
    op.create_index("ix_event_handler", "event", ["handler_id"])
    op.create_index("ix_event_source", "event", ["source"])
    op.create_index("ix_event_external", "event", ["external_id"])
    op.create_index("ix_event_track", "event", ["track_id"])
    op.create_index("ix_event_similarity", "event", ["top_similarity"])
    op.create_index("ix_event_geo", "event", ["longitude", "latitude"])
    op.create_index("ix_event_meta", "event", ["meta"], postgresql_using="gin",
                    postgresql_ops={"meta": "jsonb_path_ops"})

    op.create_table(
        "general_event",
        *_common(),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("content", FLEX_JSON, nullable=False),
    )
    op.create_index("ix_general_event_account_time", "general_event", ["account_id", "create_time", "event_id"])
    op.create_index("ix_general_event_type", "general_event", ["event_type"])
    op.create_index("ix_general_event_stream", "general_event", ["stream_id"])
    op.create_index("ix_general_event_track", "general_event", ["track_id"])
    op.create_index("ix_general_event_geo", "general_event", ["longitude", "latitude"])

    op.create_table(
        "outbox",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("general_event")
    op.drop_table("event")
