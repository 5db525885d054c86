"""Long tasks: the task row (the source of truth for state and progress), its subtasks, their
errors, and the cron schedules that create tasks."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.faces.models import SEQ, utcnow
from app.scope import AccountOwned

# Status codes are part of the API (integrators poll on them): never renumber.
PENDING, IN_PROGRESS, CANCELLED, FAILED, COLLECT_RESULTS, DONE = 0, 1, 2, 3, 4, 5
STATUS_NAMES = {PENDING: "pending", IN_PROGRESS: "in progress", CANCELLED: "cancelled", FAILED: "failed",
                COLLECT_RESULTS: "collect results", DONE: "done"}
FINISHED = (CANCELLED, FAILED, DONE)


class Task(AccountOwned, Base):
    """One long task. Workers move it through its statuses with conditional UPDATEs on this row,
    so a redelivered message or a second worker never moves it twice."""

    __tablename__ = "task"
    not_found = "task_not_found"
    label = "task"
    # SQLite would hand a deleted task's id to the next one: ids are what clients follow.
    __table_args__ = (Index("ix_task_account_create", "account_id", "create_time"), {"sqlite_autoincrement": True})

    task_id: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(128), default="")
    # The validated request body as JSON, "now-time" filters already resolved; secrets encrypted.
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    notification_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=PENDING)
    parts_total: Mapped[int] = mapped_column(Integer, default=0)
    parts_done: Mapped[int] = mapped_column(Integer, default=0)
    result_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_content_type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    result_ttl: Mapped[int | None] = mapped_column(Integer, nullable=True)  # days; None: the bucket's
    schedule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_update_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime | None] = mapped_column(nullable=True)


class Subtask(Base):
    """One checkpointed part of a task: what it covers (``content``) and what it found (``result``)."""

    __tablename__ = "subtask"
    __table_args__ = (UniqueConstraint("task_id", "part", name="uq_subtask_part"),)

    subtask_id: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(SEQ, ForeignKey("task.task_id", ondelete="CASCADE"), index=True)
    part: Mapped[int] = mapped_column(Integer)  # 0-based position among the task's subtasks
    content: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[int] = mapped_column(Integer, default=PENDING)
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    start_time: Mapped[datetime | None] = mapped_column(nullable=True)
    end_time: Mapped[datetime | None] = mapped_column(nullable=True)


class TaskError(Base):
    """A problem met while running a task: one object that could not be processed (an unreadable
    image, a face without a sample) or a subtask that failed as a whole."""

    __tablename__ = "task_error"
    __table_args__ = (Index("ix_task_error_task", "task_id", "error_id"),)

    error_id: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    task_id: Mapped[int] = mapped_column(SEQ, ForeignKey("task.task_id", ondelete="CASCADE"))
    subtask_id: Mapped[int | None] = mapped_column(SEQ, nullable=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    error_code: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(128))
    detail: Mapped[str] = mapped_column(Text)
    additional_info: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_time: Mapped[datetime] = mapped_column(default=utcnow)


class Schedule(AccountOwned, Base):
    """A task body that beat creates on a cron expression. ``next_run_time`` is claimed with a
    conditional UPDATE, so however many beats tick, each firing creates one task."""

    __tablename__ = "task_schedule"
    __table_args__ = (Index("ix_task_schedule_due", "status", "next_run_time"), {"sqlite_autoincrement": True})
    not_found = "schedule_not_found"
    label = "schedule"

    schedule_id: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(32))
    # The task body as sent: "now-time" filters stay relative until each run resolves them.
    task: Mapped[dict[str, Any]] = mapped_column(JSON)
    cron: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))  # "running" or "stopped"
    next_run_time: Mapped[datetime | None] = mapped_column(nullable=True)
    last_run_time: Mapped[datetime | None] = mapped_column(nullable=True)
    last_task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_update_time: Mapped[datetime] = mapped_column(default=utcnow)
