"""Cron schedules of tasks: a stored task body that beat turns into a task at each cron time.

Why our own scheduler rather than sqlalchemy-celery-beat or celery-redbeat: both replace beat's
scheduler with one whose entries are Celery periodic tasks (rows in their own tables, or hashes
in Redis guarded by a lock that lets one beat tick). Our schedules are rows of one account each,
carrying a task body with sealed secrets and now-time filters, made and listed through our own
API and scope; keeping them as Celery entries would mean a second copy of each in another store
kept in step with ours, a beat process that must reload it, and (for redbeat) exactly-once that
rests on a lock's expiry. Instead one fixed beat entry sends ``schedules.tick`` every
``schedule_tick_s``; the worker claims each due row with a conditional UPDATE (``next_run_time``
from the value it read to the next cron time), so however many beats or ticks run at once, one
claim per firing wins and one task is created; nothing else runs beside beat and the workers.

A firing creates the task at most once: a worker that dies between the claim and the task loses
that firing (the next cron time still comes). One that was away for several cron times fires
once, not once per missed time. Cron expressions have five fields in UTC, weeks starting on
Sunday (0; 7 too); a day of month together with a day of week means both must hold ("0 9 1,15 * 1":
the 1st and 15th, when a Monday).
"""
from __future__ import annotations

import copy
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from croniter import croniter
from croniter.croniter import CroniterError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.accounts.models import Account
from app.auth import Principal
from app.db import session_scope
from app.errors import APIError
from app.faces.models import utcnow
from app.filters import Filterable, conditions
from app.pagination import paginate
from app.scope import ALL_ACCOUNTS, Scope, get_or_404, scoped
from app.tasks import registry, secrets, service
from app.tasks.models import Schedule
from app.tasks.registry import TaskType
from app.tasks.schemas import resolve_now

log = logging.getLogger(__name__)

RUNNING, STOPPED = "running", "stopped"
BATCH = 100  # due schedules one tick fires; the rest wait for the next tick
_TOKEN = re.compile(r"^(\*|\?|L|LW|\d+|\d+W|\d#\d|\d?L|[A-Za-z]{3})$")
FILTERS = Filterable(equal={"task_type": Schedule.task_type, "status": Schedule.status},
                     ranges={"create_time": Schedule.create_time, "next_run_time": Schedule.next_run_time})


def next_run(cron: str, after: datetime) -> datetime:
    """The first cron time after ``after``; 400 ``bad_cron`` for an expression that has none."""
    fields = cron.split()
    if len(fields) != 5:
        raise APIError("bad_cron", f"'{cron[:128]}': a cron expression has 5 fields (minute hour day month weekday)")
    # croniter's own extensions (R random, H hashed) would move a schedule each time it is read
    if not all(_TOKEN.match(t) for f in fields for t in re.split(r"[,/-]", f)):
        raise APIError("bad_cron", f"'{cron[:128]}': a field has numbers, names (JAN, SUN), *, ?, L, W, #, "
                                   "ranges (-), steps (/) and lists (,)")
    try:
        return croniter(cron, after, day_or=False).get_next(datetime)
    except (CroniterError, ValueError, KeyError):
        raise APIError("bad_cron", f"'{cron[:128]}' is not a valid cron expression or never comes") from None


def _type_of(task: Mapping[str, Any]) -> str:
    name = task.get("task_type")
    if not isinstance(name, str) or name not in registry.types():
        raise APIError("validation", f"task.task_type: one of {', '.join(sorted(registry.types()))}")
    return name


def _secret_paths(found: TaskType | None) -> dict[str, tuple[str, ...]]:
    """Where a stored body keeps its secrets: the content's (by type) and the policy's callbacks'."""
    return {"content": found.secrets if found else (),
            "notification_policy": secrets.POLICY_SECRETS}


def _each_secret(body: Mapping[str, Any], found: TaskType | None, change: Any) -> dict[str, Any]:
    out = dict(body)
    for key, paths in _secret_paths(found).items():
        if isinstance(out.get(key), dict):
            out[key] = change(out[key], paths)
    return out


def _checked(principal: Principal, task: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The type and the stored form (secrets sealed, now-times relative) of a schedule's task body,
    checked as ``POST /tasks/<type>`` would check it now."""
    name = _type_of(task)
    body = {k: v for k, v in task.items() if k != "task_type"}
    found, loaded = service.validated(name, resolve_now(copy.deepcopy(body), utcnow()))
    reason = found.unschedulable(loaded["content"])
    if reason:
        raise APIError("not_schedulable", reason)
    if found.check is not None:
        with session_scope() as session:
            found.check(session, principal, loaded["content"])
    return name, _each_secret(body, found, secrets.sealed)


def create(principal: Principal, task: Mapping[str, Any], cron: str, start: bool) -> Schedule:
    """A new schedule, running from the next cron time (``start``) or stopped until started."""
    first = next_run(cron, utcnow())
    name, stored = _checked(principal, task)
    with session_scope() as session:
        schedule = Schedule(account_id=principal.account_id, task_type=name, task=stored, cron=cron,
                            status=RUNNING if start else STOPPED, next_run_time=first if start else None)
        session.add(schedule)
        session.flush()
        session.expunge(schedule)
    return schedule


def view(schedule: Schedule) -> dict[str, Any]:
    """A schedule as the API shows it: its task body with secrets left out."""
    out = {c: getattr(schedule, c) for c in ("schedule_id", "account_id", "cron", "status", "next_run_time",
                                             "last_run_time", "last_task_id", "create_time", "last_update_time")}
    hidden = _each_secret(schedule.task, registry.types().get(schedule.task_type), secrets.hidden)
    out["task"] = {"task_type": schedule.task_type, **hidden}
    return out


def list_schedules(session: Session, scope: Scope, filters: Mapping[str, Any], page: int,
                   page_size: int) -> list[dict[str, Any]]:
    query = scoped(Schedule, scope).where(*conditions(FILTERS, filters)).order_by(Schedule.schedule_id.desc())
    return [view(s) for s in paginate(session, query, page, page_size)]


def get_schedule(session: Session, scope: Scope, schedule_id: int) -> Schedule:
    return get_or_404(session, Schedule, schedule_id, scope)


def replace(principal: Principal, schedule_id: int, task: Mapping[str, Any], cron: str) -> dict[str, Any]:
    """New cron and task body; a running schedule next fires at the new cron's next time."""
    first = next_run(cron, utcnow())
    name, stored = _checked(principal, task)
    with session_scope() as session:
        schedule = get_schedule(session, principal.scope, schedule_id)
        schedule.task_type, schedule.task, schedule.cron, schedule.last_update_time = name, stored, cron, utcnow()
        if schedule.status == RUNNING:
            schedule.next_run_time = first
        return view(schedule)


def act(scope: Scope, schedule_id: int, action: str) -> dict[str, Any]:
    """``start`` (from the next cron time) or ``stop`` a schedule."""
    with session_scope() as session:
        schedule = get_schedule(session, scope, schedule_id)
        if action == "start" and schedule.status != RUNNING:
            schedule.status, schedule.next_run_time = RUNNING, next_run(schedule.cron, utcnow())
        elif action == "stop":
            schedule.status, schedule.next_run_time = STOPPED, None
        schedule.last_update_time = utcnow()
        return view(schedule)


def delete(scope: Scope, schedule_id: int) -> None:
    """The schedule goes; the tasks it created stay (with its ``schedule_id``)."""
    with session_scope() as session:
        session.delete(get_schedule(session, scope, schedule_id))


# ---- firing ------------------------------------------------------------------------------------
def tick(now: datetime | None = None) -> list[int]:
    """Fire every running schedule due at ``now``; the ids of the tasks this call created."""
    now = now or utcnow()
    with session_scope() as session:
        due = session.execute(scoped(Schedule, ALL_ACCOUNTS, Schedule.schedule_id, Schedule.next_run_time)
                              .where(Schedule.status == RUNNING, Schedule.next_run_time <= now)
                              .order_by(Schedule.next_run_time).limit(BATCH)).all()
    created = [fire(schedule_id, planned, now) for schedule_id, planned in due]
    return [task_id for task_id in created if task_id is not None]


def fire(schedule_id: int, planned: datetime, now: datetime) -> int | None:
    """Claim the firing planned for ``planned`` and create its task; None when another tick
    claimed it first, or the task could not be created (logged: the next cron time still comes)."""
    with session_scope() as session:
        schedule = session.scalar(scoped(Schedule, ALL_ACCOUNTS).where(Schedule.schedule_id == schedule_id))
        if schedule is None:
            return None
        claimed = session.execute(
            update(Schedule).where(Schedule.schedule_id == schedule_id, Schedule.status == RUNNING,
                                   Schedule.next_run_time == planned)
            .values(next_run_time=next_run(schedule.cron, now), last_run_time=now, last_update_time=now)
        ).rowcount == 1
        if not claimed:
            return None
        account_type = session.scalar(select(Account.account_type).where(Account.account_id == schedule.account_id))
        owner, name, stored = schedule.account_id, schedule.task_type, schedule.task
    try:
        body = _each_secret(stored, registry.types().get(name), secrets.opened)
        task = service.create_task(Principal(owner, account_type, None), name, body, schedule_id=schedule_id, now=now)
    except (APIError, ValueError) as exc:
        log.warning("schedule %s did not create its task at %s: %s", schedule_id, now.isoformat(),
                    getattr(exc, "detail", str(exc)))
        return None
    with session_scope() as session:
        session.execute(update(Schedule).where(Schedule.schedule_id == schedule_id).values(last_task_id=task.task_id))
    return task.task_id


def reseal(schedule: Schedule, old: Any) -> None:
    """Re-seal the secrets of a schedule's body with the current key (``old``: the key they were
    sealed with, or None for plain ones and the current key's)."""
    found = registry.types().get(schedule.task_type)
    schedule.task = _each_secret(schedule.task, found, lambda v, paths: secrets.resealed(v, paths, old))
