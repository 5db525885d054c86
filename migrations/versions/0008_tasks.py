"""long tasks: tasks, subtasks, their errors, cron schedules

Revision ID: 0008_tasks
Revises: 0007_notifications
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_tasks"
down_revision = "0007_notifications"
branch_labels = None
depends_on = None

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column("task_id", SEQ, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("description", sa.String(128), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("notification_policy", sa.JSON(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("parts_total", sa.Integer(), nullable=False),
        sa.Column("parts_done", sa.Integer(), nullable=False),
        sa.Column("result_id", sa.String(64), nullable=True),
        sa.Column("result_content_type", sa.String(64), nullable=True),
        sa.Column("result_ttl", sa.Integer(), nullable=True),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("last_update_time", TIME, nullable=False),
        sa.Column("end_time", TIME, nullable=True),
        sqlite_autoincrement=True,  # a deleted task's id is never handed out again
    )
    op.create_index("ix_task_account_create", "task", ["account_id", "create_time"])
    op.create_table(
        "subtask",
        sa.Column("subtask_id", SEQ, primary_key=True, autoincrement=True),
        sa.Column("task_id", SEQ, sa.ForeignKey("task.task_id", ondelete="CASCADE"), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("start_time", TIME, nullable=True),
        sa.Column("end_time", TIME, nullable=True),
        sa.UniqueConstraint("task_id", "part", name="uq_subtask_part"),
    )
    op.create_index("ix_subtask_task_id", "subtask", ["task_id"])
    op.create_table(
        "task_error",
        sa.Column("error_id", SEQ, primary_key=True, autoincrement=True),
        sa.Column("task_id", SEQ, sa.ForeignKey("task.task_id", ondelete="CASCADE"), nullable=False),
        sa.Column("subtask_id", SEQ, nullable=True),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(128), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("additional_info", sa.Text(), nullable=True),
        sa.Column("error_time", TIME, nullable=False),
    )
    op.create_index("ix_task_error_task", "task_error", ["task_id", "error_id"])
    op.create_table(
        "task_schedule",
        sa.Column("schedule_id", SEQ, primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Uuid(), sa.ForeignKey("account.account_id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("task", sa.JSON(), nullable=False),
        sa.Column("cron", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("next_run_time", TIME, nullable=True),
        sa.Column("last_run_time", TIME, nullable=True),
        sa.Column("last_task_id", sa.Integer(), nullable=True),
        sa.Column("create_time", TIME, nullable=False),
        sa.Column("last_update_time", TIME, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_task_schedule_due", "task_schedule", ["status", "next_run_time"])


def downgrade() -> None:
    op.drop_table("task_schedule")
    op.drop_table("task_error")
    op.drop_table("subtask")
    op.drop_table("task")
