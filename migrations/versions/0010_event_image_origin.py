"""events keep the id of their stored source image (image_origin_policy), so gc can delete it

Revision ID: 0010_event_image_origin
Revises: 0009_task_notifications
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_event_image_origin"
down_revision = "0009_task_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("event") as batch:
        batch.add_column(sa.Column("image_origin_id", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("event") as batch:
        batch.drop_column("image_origin_id")
