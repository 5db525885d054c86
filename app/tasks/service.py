"""Long tasks, API side: create (the row, then the split message), read, cancel, delete, results."""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import dispatch
from app.auth import Principal
from app.db import session_scope
from app.errors import APIError
from app.faces.models import utcnow
from app.filters import Filterable, conditions
from app.image_store import service as image_store
from app.pagination import paginate
from app.scope import Scope, get_or_404, scoped
from app.tasks import notify, registry, runner, secrets
from app.tasks.models import CANCELLED, COLLECT_RESULTS, DONE, FINISHED, IN_PROGRESS, PENDING, Subtask, Task, TaskError
from app.tasks.registry import TaskType
from app.tasks.schemas import resolve_now, task_body, validation_error

log = logging.getLogger(__name__)

# Who may call the /tasks resources. Admin accounts may run tasks too: the garbage collector's
# admin-only targets need them.
# Task and schedule ids in URLs: what a BIGINT holds, so a larger number is a 404, not a database error.
ROW_ID = "int(min=1, max=9223372036854775807)"
ACCOUNTS = ("user", "advanced_user", "admin")
FILTERS = Filterable(
    equal={"task_type": Task.task_type, "status": Task.status, "schedule_id": Task.schedule_id},
    contains={"description": Task.description},
    ranges={"create_time": Task.create_time, "end_time": Task.end_time},
)
ERROR_FILTERS = Filterable(equal={"task_id": TaskError.task_id, "error_code": TaskError.error_code},
                           ranges={"error_time": TaskError.error_time})


def task_type(name: str) -> TaskType:
    """The registered type ``name``, usable here; 404 for an unknown one, 403 for a disabled one."""
    try:
        found = registry.get(name)
    except KeyError:
        raise APIError("route_not_found", f"no task type '{name}'") from None
    if not found.enabled():
        raise APIError("task_type_disabled", f"task type '{name}' is disabled or lacks what it needs here")
    return found


def validated(name: str, body: Mapping[str, Any]) -> tuple[TaskType, dict[str, Any]]:
    """The type and its loaded body; 400 naming the fields that are wrong."""
    found = task_type(name)
    try:
        return found, task_body(name, found.schema)().load(body)
    except ValidationError as exc:
        raise APIError("validation", validation_error(exc)) from None


def create_task(principal: Principal, name: str, body: Mapping[str, Any], *, schedule_id: int | None = None,
                now: datetime | None = None) -> Task:
    """Write the task row and send its split; ``body`` is the JSON as sent (or as a schedule keeps
    it), whose now-time filters resolve here, at ``now``."""
    # Now-times first: the types' schemas then see plain ISO times, and the stored body is absolute.
    moment = now or utcnow()
    raw = resolve_now(copy.deepcopy(dict(body)), moment)
    prepare = task_type(name).prepare
    if prepare is not None and isinstance(raw.get("content"), dict):
        raw["content"] = prepare(raw["content"], moment)
    found, loaded = validated(name, raw)
    with session_scope() as session:
        if found.check is not None:
            found.check(session, principal, loaded["content"])
        task = Task(account_id=principal.account_id, task_type=name, description=loaded["description"],
                    content=secrets.sealed(raw["content"], found.secrets),
                    notification_policy=secrets.sealed_policy(loaded.get("notification_policy")),
                    schedule_id=schedule_id, result_ttl=(raw.get("result_storage_policy") or {}).get("ttl"))
        session.add(task)
        session.flush()
        task_id = task.task_id
    try:
        dispatch.enqueue(dispatch.task("jobs.split", task_id).set(task_id=runner.celery_id(task_id, "split")))
    except APIError:
        with session_scope() as session:  # no half-made task: without its message it would stay pending
            session.execute(Task.__table__.delete().where(Task.task_id == task_id))
        raise
    return task


def task_view(task: Task) -> dict[str, Any]:
    view = {c: getattr(task, c) for c in ("task_id", "task_type", "account_id", "description", "status", "parts_total",
                                          "parts_done", "result_id", "schedule_id", "create_time", "last_update_time",
                                          "end_time")}
    known = registry.types().get(task.task_type)
    view["content"] = secrets.hidden(task.content, known.secrets if known else ())
    return view


def list_tasks(session: Session, scope: Scope, filters: Mapping[str, Any], page: int, page_size: int) -> list[dict[str, Any]]:
    query = scoped(Task, scope).where(*conditions(FILTERS, filters)).order_by(Task.task_id.desc())
    return [task_view(t) for t in paginate(session, query, page, page_size)]


def get_task(session: Session, scope: Scope, task_id: int) -> Task:
    return get_or_404(session, Task, task_id, scope)


def list_subtasks(session: Session, scope: Scope, task_id: int, page: int, page_size: int) -> list[Subtask]:
    get_task(session, scope, task_id)
    return paginate(session, select(Subtask).where(Subtask.task_id == task_id).order_by(Subtask.part), page, page_size)


def list_errors(session: Session, scope: Scope, filters: Mapping[str, Any], page: int, page_size: int) -> list[TaskError]:
    query = select(TaskError).where(*conditions(ERROR_FILTERS, filters)).order_by(TaskError.error_id)
    if not scope.all_accounts:
        query = query.where(TaskError.account_id == scope.account_id)
    return paginate(session, query, page, page_size)


def _step_ids(session: Session, task_id: int) -> list[str]:
    parts = session.scalars(select(Subtask.part).where(Subtask.task_id == task_id))
    return [runner.celery_id(task_id, "split"), runner.celery_id(task_id, "merge"),
            *(runner.celery_id(task_id, f"part-{p}") for p in parts)]


def cancel(scope: Scope, task_id: int) -> Task:
    """Stop a task: queued steps are revoked, running parts stop at their next batch."""
    with session_scope() as session:
        task = get_task(session, scope, task_id)
        if task.status in FINISHED:
            raise APIError("task_finished", f"task {task_id} has already ended (status {task.status})")
        if runner.set_status(session, task_id, CANCELLED, when=(PENDING, IN_PROGRESS, COLLECT_RESULTS)):
            stopped = session.scalars(update(Subtask).where(Subtask.task_id == task_id,
                                                            Subtask.status.in_((PENDING, IN_PROGRESS)))
                                      .values(status=CANCELLED, end_time=utcnow()).returning(Subtask.subtask_id))
            notify.subtasks_changed(session, task_id, list(stopped), CANCELLED)
        ids = _step_ids(session, task_id)
    try:
        dispatch.celery.control.revoke(ids)
    except Exception as exc:  # the row says cancelled: every step checks it before it works
        log.warning("could not revoke the queued steps of task %s: %r", task_id, exc)
    with session_scope() as session:
        return get_task(session, scope, task_id)


def delete_task(scope: Scope, task_id: int) -> None:
    """Delete a task, its subtasks, errors and result (a running task is cancelled first)."""
    with session_scope() as session:
        task = get_task(session, scope, task_id)
        running = task.status not in FINISHED
    if running:
        cancel(scope, task_id)
    with session_scope() as session:
        task = get_task(session, scope, task_id)
        parts = list(session.scalars(select(Subtask.part).where(Subtask.task_id == task_id)))
        owner = Scope.of(task.account_id)
        session.delete(task)
    names = ["result", *(f"part-{p}" for p in parts)]
    image_store.delete_many(image_store.KINDS["task_result"], owner,
                            [runner.object_id(task_id, n) for n in names])


def result(scope: Scope, task_id: int) -> tuple[bytes, str, str]:
    """The stored result of a done task: bytes, content type, download name."""
    with session_scope() as session:
        task = get_task(session, scope, task_id)
        if task.status != DONE or task.result_id is None:
            raise APIError("task_result_not_found", f"task {task_id} has no result (status {task.status})")
        owner, result_id, task_type = Scope.of(task.account_id), task.result_id, task.task_type
    data, obj = image_store.get(image_store.KINDS["task_result"], owner, result_id)
    extension = {"application/json": "json", "application/zip": "zip", "text/csv": "csv"}.get(obj.content_type, "bin")
    return data, obj.content_type, f"task_{task_id}_{task_type}.{extension}"


def reseal(task: Task, old: Any) -> None:
    """Re-seal the secrets of a task's content and policy with the current key (``old``: the key
    they were sealed with, or None for plain ones and the current key's): ``facegate tasks reencrypt``."""
    known = registry.types().get(task.task_type)
    task.content = secrets.resealed(task.content, known.secrets if known else (), old)
    if task.notification_policy is not None:
        task.notification_policy = secrets.resealed(task.notification_policy, secrets.POLICY_SECRETS, old)


def notification_policy(scope: Scope, task_id: int) -> dict[str, Any] | None:
    with session_scope() as session:
        return secrets.hidden_policy(get_task(session, scope, task_id).notification_policy)


def replace_notification_policy(scope: Scope, task_id: int, raw: Mapping[str, Any]) -> dict[str, Any] | None:
    with session_scope() as session:
        task = get_task(session, scope, task_id)
        task.notification_policy = secrets.sealed_policy(dict(raw))
        return secrets.hidden_policy(task.notification_policy)
