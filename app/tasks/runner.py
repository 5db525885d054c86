"""The worker side of long tasks: split a task into subtasks, run each one as a checkpoint, and
merge when the last one is done.

The task row is the source of truth, not the result backend. Every step is a Celery task that
takes ids (``tasks/jobs.py``) and moves the rows with conditional UPDATEs, so a step delivered
twice (a worker killed mid-way, a broker hiccup) does its work again at most and counts it once:

- ``split``: the type's ``split`` lists the parts; their subtask rows and ``parts_total`` are
  written in one transaction, then one message per part not yet finished is sent.
- ``run_part``: the type's ``part`` does the work; its partial result, its errors and the
  subtask's ``done`` are written in one transaction, and ``parts_done`` grows only when that
  UPDATE changed the subtask. The worker whose part made ``parts_done`` reach ``parts_total``
  moves the task to *collect results* and sends the merge.
- ``merge``: the type's ``merge`` reads the partials in part order and returns the result, which
  goes to the ``task-result`` bucket under an id derived from the task id; then *done*.

Cancelling (``app.tasks.service.cancel``) sets the row to *cancelled*: steps check it before they
start and parts between their batches (:meth:`Job.check_cancelled`), so running work stops within a
batch and queued work never starts.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app import dispatch
from app.db import session_scope
from app.errors import ERRORS, APIError
from app.faces.models import utcnow
from app.image_store import service as image_store
from app.scope import ALL_ACCOUNTS, Scope, scoped
from app.tasks import notify, registry, secrets
from app.tasks.models import (
    CANCELLED,
    COLLECT_RESULTS,
    DONE,
    FAILED,
    FINISHED,
    IN_PROGRESS,
    PENDING,
    Subtask,
    Task,
    TaskError,
)
from app.tasks.registry import Result, TaskType

log = logging.getLogger(__name__)

# Object ids in the task-result bucket derive from the task id, so a merge or a part run twice
# overwrites its own object instead of leaving a second one.
_RESULT_NAMESPACE = uuid.UUID("5b0f2a4e-8c1d-4f7e-9a36-2d6b8e0c1f47")
CANCEL_CHECK_S = 1.0
# Blobs of a task that failed or was cancelled before its merge deleted them expire on their own.
BLOB_TTL_DAYS = 30


class TaskCancelled(Exception):
    """Raised inside a part when its task was cancelled: the part stops where it is."""


def object_id(task_id: int, name: str) -> str:
    """The id of a task's object (``result``, or a part's blob) in the task-result bucket."""
    return str(uuid.uuid5(_RESULT_NAMESPACE, f"task-{task_id}-{name}"))


def celery_id(task_id: int, step: str) -> str:
    """The Celery task id of a step (``split``, ``part-3``, ``merge``): derived from the task id,
    so Flower shows which task a message belongs to and cancel can revoke queued parts by id."""
    return f"task-{task_id}-{step}"


Progress = Callable[[dict[str, Any]], None]


class Analyzer(Protocol):
    """The gpu worker's models, handed to the parts of types that run them (``tasks.inference``
    through ``jobs.gpu_part``): ``app/`` never imports the worker side."""

    def analyze_stored(self, owner: Scope, refs: list[dict[str, Any]],
                       options: dict[str, Any]) -> tuple[list[tuple[int, int]], list[Any]]: ...

    def analyze_images(self, items: list[tuple[Any, dict[str, Any]]]) -> list[Any]: ...


def _task(session: Session, task_id: int) -> Task | None:
    """The task row by its id: a step acts for whichever account owns the task."""
    return session.scalar(scoped(Task, ALL_ACCOUNTS).where(Task.task_id == task_id))


def part_step(task_id: int) -> str:
    """The Celery task that runs the parts of a task: on ``gpu`` for types that run networks."""
    with session_scope() as session:
        name = session.scalar(scoped(Task, ALL_ACCOUNTS, Task.task_type).where(Task.task_id == task_id))
    return "jobs.gpu_part" if name is not None and registry.get(name).queue == "gpu" else "jobs.part"


@dataclass
class Job:
    """What a type's functions are handed: the task, its loaded content, and the means to record
    errors, report progress, keep blobs and notice a cancel."""

    task_id: int
    account_id: uuid.UUID
    task_type: TaskType
    content: dict[str, Any]
    subtask_id: int | None = None
    part: int | None = None
    report: Progress | None = None
    analyzer: Analyzer | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    _checked_at: float = 0.0

    @property
    def scope(self) -> Scope:
        """The task owner's account; types that act across accounts (admin GC) widen it themselves."""
        return Scope.of(self.account_id)

    @property
    def models(self) -> Analyzer:
        """The worker's models; only parts on the ``gpu`` queue have them."""
        if self.analyzer is None:
            raise RuntimeError(f"task type {self.task_type.name} runs models: set its queue to gpu")
        return self.analyzer

    def error(self, kind: str, detail: str, additional_info: Any = None) -> None:
        """Record one object's problem (``kind`` an error kind of app.errors); written with the
        part's checkpoint, so a part run twice records it once."""
        code = ERRORS[kind]
        self.errors.append({"error_code": code.code, "description": code.desc, "detail": detail[:2000],
                            "additional_info": None if additional_info is None else str(additional_info)[:2000]})

    def progress(self, done: int, total: int) -> None:
        """How far this part is (shown in Flower); also the point where a cancel is noticed."""
        if self.report is not None:
            self.report({"task_id": self.task_id, "part": self.part, "items_done": done, "items_total": total})
        self.check_cancelled()

    def check_cancelled(self) -> None:
        """Raise :class:`TaskCancelled` when the task was cancelled (read at most once a second)."""
        now = time.monotonic()
        if now - self._checked_at < CANCEL_CHECK_S:
            return
        self._checked_at = now
        with session_scope() as session:
            if session.scalar(scoped(Task, ALL_ACCOUNTS, Task.status).where(Task.task_id == self.task_id)) in (CANCELLED, None):
                raise TaskCancelled()

    def put_blob(self, name: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        """Keep a large partial (a CSV chunk) in the task-result bucket; the same ``name`` twice
        replaces it. Returns its object id. Expires after :data:`BLOB_TTL_DAYS` in any case."""
        oid = object_id(self.task_id, name)
        image_store.put(image_store.KINDS["task_result"], self.scope, data, content_type, object_id=oid,
                        ttl=BLOB_TTL_DAYS)
        return oid

    def get_blob(self, name: str) -> bytes:
        return image_store.get(image_store.KINDS["task_result"], self.scope, object_id(self.task_id, name))[0]

    def delete_blob(self, name: str) -> None:
        image_store.delete_many(image_store.KINDS["task_result"], self.scope, [object_id(self.task_id, name)])


def job_of(task: Task, subtask: Subtask | None = None, report: Progress | None = None,
           analyzer: Analyzer | None = None) -> Job:
    """What a step hands the type's functions for this task (and subtask)."""
    task_type = registry.get(task.task_type)
    content = task_type.schema().load(secrets.opened(task.content, task_type.secrets))
    return Job(task.task_id, task.account_id, task_type, content,
               subtask.subtask_id if subtask is not None else None, subtask.part if subtask is not None else None,
               report, analyzer)


def _write_errors(session: Session, job: Job) -> None:
    now = utcnow()
    session.add_all(TaskError(task_id=job.task_id, subtask_id=job.subtask_id, account_id=job.account_id,
                              error_time=now, **e) for e in job.errors)


def set_status(session: Session, task_id: int, status: int, *, when: tuple[int, ...], **values: Any) -> bool:
    """Move the task to ``status`` if it is in one of ``when``; whether it moved."""
    finished = {"end_time": utcnow()} if status in FINISHED else {}
    moved = session.execute(update(Task).where(Task.task_id == task_id, Task.status.in_(when))
                            .values(status=status, last_update_time=utcnow(), **finished, **values)).rowcount == 1
    if moved:
        notify.status_changed(session, task_id, None, status)
    return moved


def fail(task_id: int, kind: str, detail: str) -> None:
    """End a task as failed with one error saying why (a step that crashed)."""
    with session_scope() as session:
        task = _task(session, task_id)
        if task is None or not set_status(session, task_id, FAILED, when=(PENDING, IN_PROGRESS, COLLECT_RESULTS)):
            return
        job = Job(task_id, task.account_id, registry.get(task.task_type), {})
        job.error(kind, detail)
        _write_errors(session, job)


# ---- split -------------------------------------------------------------------------------------
def split(task_id: int) -> list[int]:
    """Create the subtask rows (once) and return the parts still to run."""
    with session_scope() as session:
        task = _task(session, task_id)
        if task is None or task.status in FINISHED:
            return []
        has_parts = session.scalar(select(Subtask.subtask_id).where(Subtask.task_id == task_id).limit(1))
        job = None if has_parts is not None else job_of(task)
    if job is not None:
        contents = job.task_type.split(job)  # outside the transaction: it may page through much
        with session_scope() as session:
            if not set_status(session, task_id, IN_PROGRESS, when=(PENDING,), parts_total=len(contents)):
                return []  # cancelled meanwhile, or another delivery split it first
            session.add_all(Subtask(task_id=task_id, part=i, content=c) for i, c in enumerate(contents))
        if not contents:
            start_merge(task_id)
            return []
    with session_scope() as session:
        return list(session.scalars(select(Subtask.part).where(Subtask.task_id == task_id,
                                                               Subtask.status.in_((PENDING, IN_PROGRESS)))
                                    .order_by(Subtask.part)))


def start_merge(task_id: int) -> None:
    """Send the merge of a task whose parts are all finished (or of one that has none)."""
    with session_scope() as session:
        task = _task(session, task_id)
        if task is None or task.parts_done < task.parts_total:
            return
        if task.status == IN_PROGRESS:
            failed = session.scalar(select(Subtask.subtask_id).where(Subtask.task_id == task_id,
                                                                     Subtask.status == FAILED).limit(1))
            if failed is not None:  # no result from some of the parts: the errors say which and why
                set_status(session, task_id, FAILED, when=(IN_PROGRESS,))
                return
            set_status(session, task_id, COLLECT_RESULTS, when=(IN_PROGRESS,))
        elif task.status != COLLECT_RESULTS:
            return
    dispatch.enqueue(dispatch.task("jobs.merge", task_id).set(task_id=celery_id(task_id, "merge")))


# ---- parts -------------------------------------------------------------------------------------
def run_part(task_id: int, part: int, report: Progress | None = None, analyzer: Analyzer | None = None) -> str:
    """Run one subtask and checkpoint it; what happened, for the Celery result."""
    with session_scope() as session:
        task = _task(session, task_id)
        subtask = session.scalar(select(Subtask).where(Subtask.task_id == task_id, Subtask.part == part))
        if task is None or subtask is None:
            return "gone"
        if task.status in FINISHED:
            return "task finished"
        if subtask.status in FINISHED:  # redelivered after its checkpoint: the merge may still be owed
            finished = True
        else:
            finished = False
            session.execute(update(Subtask).where(Subtask.subtask_id == subtask.subtask_id)
                            .values(status=IN_PROGRESS, start_time=utcnow()))
            if subtask.status == PENDING:
                notify.status_changed(session, task_id, subtask.subtask_id, IN_PROGRESS)
        job = job_of(task, subtask, report, analyzer)
    if finished:
        start_merge(task_id)
        return "already done"
    try:
        job.check_cancelled()
        partial = job.task_type.part(job, subtask.content)
        json.dumps(partial)  # a partial that cannot be stored is a bug of the type: fail here, loudly
        status = DONE
    except TaskCancelled:
        return "cancelled"
    except APIError as exc:
        partial, status = None, FAILED
        job.error(exc.kind, exc.detail)
    except Exception:
        log.exception("task %s part %s crashed", task_id, part)
        partial, status = None, FAILED
        job.error("task_failed", f"subtask {part} of task {task_id} failed; the worker log has the details")
    with session_scope() as session:
        changed = session.execute(
            update(Subtask).where(Subtask.subtask_id == job.subtask_id, Subtask.status.in_((PENDING, IN_PROGRESS)))
            .values(status=status, result=partial, end_time=utcnow())).rowcount == 1
        if changed:
            session.execute(TaskError.__table__.delete().where(TaskError.subtask_id == job.subtask_id))
            _write_errors(session, job)
            session.execute(update(Task).where(Task.task_id == task_id)
                            .values(parts_done=Task.parts_done + 1, last_update_time=utcnow()))
            notify.status_changed(session, task_id, job.subtask_id, status)
    start_merge(task_id)
    return "done" if status == DONE else "failed"


# ---- merge -------------------------------------------------------------------------------------
def _partials(task_id: int) -> Iterator[Any]:
    with session_scope() as session:
        rows = session.execute(select(Subtask.result).where(Subtask.task_id == task_id, Subtask.status == DONE)
                               .order_by(Subtask.part).execution_options(yield_per=100))
        for (partial,) in rows:
            yield partial


def _error_views(task_id: int) -> list[dict[str, Any]]:
    """The errors the parts recorded, as a JSON result lists them beside its ``result``."""
    with session_scope() as session:
        rows = session.scalars(select(TaskError).where(TaskError.task_id == task_id).order_by(TaskError.error_id))
        return [{"error_id": e.error_id, "task_id": e.task_id, "subtask_id": e.subtask_id, "error_code": e.error_code,
                 "description": e.description, "detail": e.detail, "additional_info": e.additional_info,
                 "error_time": e.error_time.isoformat()} for e in rows]


def merge(task_id: int) -> str:
    """Merge the partials into the task's result and mark it done."""
    with session_scope() as session:
        task = _task(session, task_id)
        if task is None or task.status != COLLECT_RESULTS:
            return "nothing to merge"
        job, ttl = job_of(task), task.result_ttl
    try:
        result: Result = job.task_type.merge(job, _partials(task_id))
    except APIError as exc:
        fail(task_id, exc.kind, exc.detail)
        return "failed"
    data = result.data if isinstance(result.data, bytes) else json.dumps(
        {"result": result.data, "errors": [*_error_views(task_id), *job.errors]}, default=str).encode()
    oid = object_id(task_id, "result")
    image_store.put(image_store.KINDS["task_result"], job.scope, data, result.content_type, object_id=oid,
                    ttl=ttl)
    with session_scope() as session:
        if set_status(session, task_id, DONE, when=(COLLECT_RESULTS,), result_id=oid,
                     result_content_type=result.content_type):
            _write_errors(session, job)  # once, by the merge that finished the task
    return "done"
