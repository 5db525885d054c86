"""Callbacks on task and subtask status changes (a task's ``notification_policy``).

A change the policy wants becomes one webhook delivery row per callback, written in the
transaction that changes the status, so a change that rolls back sends nothing and one that
commits is never lost. The rows are those of the event webhooks (app.notifications): the same
``notifications.deliver`` sends them, with the same retries and backoff, and the relay's sweep
sends any whose message was lost. Their messages go out after the commit (a worker must not take a
row it cannot see yet). The callbacks' passwords and tokens stay sealed on the rows, as in the
policy; the sender opens them.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from sqlalchemy import event
from sqlalchemy.orm import Session

from app import dispatch
from app.notifications.models import PENDING, CallbackDelivery
from app.scope import ALL_ACCOUNTS, scoped
from app.tasks import secrets
from app.tasks.models import Task

log = logging.getLogger(__name__)

TARGET_SECRETS = ("auth.password", "bearer")
_QUEUED = "task_deliveries"  # session.info key: deliveries to send once the session commits
_HOOKED = "task_deliveries_hooked"


def wanted(policy: Mapping[str, Any] | None, subtask_id: int | None, status: int) -> bool:
    """Whether ``policy`` asks to hear of this change."""
    if not policy or not policy.get("task_callbacks"):
        return False
    if subtask_id is not None and not policy.get("subtasks"):
        return False
    statuses = policy.get("statuses")
    return not statuses or status in statuses


def target(callback: Mapping[str, Any]) -> dict[str, Any]:
    """A task callback as the webhook sender reads a target (secrets still sealed)."""
    out: dict[str, Any] = {"url": callback["url"], "headers": callback.get("headers") or []}
    if callback.get("timeout_s"):
        out["timeout_s"] = callback["timeout_s"]
    auth = callback.get("authorization") or {}
    if auth.get("type") == "basic":
        out["auth"] = {"login": auth.get("login", ""), "password": auth.get("password", "")}
    elif auth.get("type") == "bearer":
        out["bearer"] = auth.get("token", "")
    return out


def status_changed(session: Session, task_id: int, subtask_id: int | None, status: int) -> None:
    """Queue the callbacks the task's policy asks for this change, in the caller's transaction."""
    subtasks_changed(session, task_id, [subtask_id], status)


def subtasks_changed(session: Session, task_id: int, subtask_ids: Iterable[int | None], status: int) -> None:
    """:func:`status_changed` for several subtasks (None: the task) that moved to one status
    together (a cancel), reading the policy once."""
    row = session.execute(scoped(Task, ALL_ACCOUNTS, Task.notification_policy, Task.task_type, Task.account_id)
                          .where(Task.task_id == task_id)).first()
    if row is None:
        return
    now = datetime.now(timezone.utc)
    deliveries = [
        CallbackDelivery(outbox_seq=None, callback=n, account_id=row.account_id, event_id=None, task_id=task_id,
                         payload={"task_id": task_id, "subtask_id": subtask_id, "status": status,
                                  "task_type": row.task_type, "time": now.isoformat()},
                         target=target(callback), status=PENDING, attempts=0, next_attempt_time=now, create_time=now)
        for subtask_id in subtask_ids if wanted(row.notification_policy, subtask_id, status)
        for n, callback in enumerate(row.notification_policy["task_callbacks"])]
    if not deliveries:
        return
    session.add_all(deliveries)
    session.flush()
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _send_queued)
        event.listen(session, "after_soft_rollback", _forget_queued)
    session.info.setdefault(_QUEUED, []).extend(d.delivery_id for d in deliveries)


def _send_queued(session: Session) -> None:
    for delivery_id in session.info.pop(_QUEUED, []):
        try:
            dispatch.enqueue(dispatch.task("notifications.deliver", delivery_id))
        except Exception as exc:  # the row is pending: the relay's sweep sends it
            log.warning("task callback delivery %s not queued (%s); the relay will send it", delivery_id,
                        type(exc).__name__)


def _forget_queued(session: Session, previous_transaction: Any) -> None:
    session.info.pop(_QUEUED, None)


def reseal(delivery: CallbackDelivery, old: Any) -> None:
    """Re-seal the credentials of a task's pending delivery with the current key (``old`` as in
    app.tasks.secrets.resealed)."""
    delivery.target = secrets.resealed(delivery.target, TARGET_SECRETS, old)
