"""faces, descriptors, lists, temporary attributes, change log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "face",
        sa.Column("face_id", sa.Uuid(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("external_id", sa.String(64), nullable=True),
        sa.Column("user_data", sa.String(128), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=True),
        sa.Column("avatar", sa.String(256), nullable=False),
        sa.Column("basic_attributes", sa.JSON(), nullable=True),
        sa.Column("sample_ids", sa.JSON(), nullable=True),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_face_account_face", "face", ["account_id", "face_id"])
    op.create_index("ix_face_account_external", "face", ["account_id", "external_id"])
    op.create_table(
        "face_descriptor",
        sa.Column("face_id", sa.Uuid(), sa.ForeignKey("face.face_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("descriptor", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "face_list",
        sa.Column("list_id", sa.Uuid(), primary_key=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("user_data", sa.String(128), nullable=False),
        sa.Column("create_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_update_time", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_face_list_account_list", "face_list", ["account_id", "list_id"])
    op.create_table(
        "list_face",
        sa.Column("list_id", sa.Uuid(), sa.ForeignKey("face_list.list_id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("face_id", sa.Uuid(), sa.ForeignKey("face.face_id", ondelete="CASCADE"), primary_key=True),
    )
    op.create_index("ix_list_face_face_id", "list_face", ["face_id"])
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
    op.create_table(
        "change_log",
        sa.Column("seq", SEQ, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("face_id", sa.Uuid(), nullable=True),
        sa.Column("list_id", sa.Uuid(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("change_log")
    op.drop_index("ix_attribute_expire_time", table_name="attribute")
    op.drop_index("ix_attribute_account_id", table_name="attribute")
    op.drop_table("attribute")
    op.drop_index("ix_list_face_face_id", table_name="list_face")
    op.drop_table("list_face")
    op.drop_index("ix_face_list_account_list", table_name="face_list")
    op.drop_table("face_list")
    op.drop_table("face_descriptor")
    op.drop_index("ix_face_account_external", table_name="face")
    op.drop_index("ix_face_account_face", table_name="face")
    op.drop_table("face")
