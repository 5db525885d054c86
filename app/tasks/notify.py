"""Callbacks on task and subtask status changes (a task's ``notification_policy``)."""
from __future__ import annotations

from sqlalchemy.orm import Session


def status_changed(session: Session, task_id: int, subtask_id: int | None, status: int) -> None:
    """Queue the callbacks the task's policy asks for this change, in the caller's transaction."""
    # Filled in by the notification work of issue 13 (see docs/tasks.md).
    return None
