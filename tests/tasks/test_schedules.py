"""Cron schedules of tasks: the API, firing by the tick (called here and through the worker),
exactly one task per firing under concurrent ticks, now-time filters resolved at each firing."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from app.db import session_scope
from app.tasks import schedules
from app.tasks.models import Schedule, Task
from tests.conftest import Account
from tests.tasks.test_framework import wait_status

BODY = {"task_type": "counting", "description": "nightly count", "content": {"n": 6, "parts": 2}}


def _create(client: Any, account: Account, cron: str = "* * * * *", **extra: Any) -> int:
    r = client.post("/tasks/schedules", json={"task": BODY, "cron": cron, **extra}, headers=account.auth)
    assert r.status_code == 201, r.json
    assert r.json["url"] == f"/tasks/schedules/{r.json['schedule_id']}"
    return r.json["schedule_id"]


def _tasks_of(schedule_id: int) -> list[Task]:
    with session_scope() as session:
        rows = list(session.scalars(select(Task).where(Task.schedule_id == schedule_id).order_by(Task.task_id)))
        session.expunge_all()
        return rows


def _stop(client: Any, account: Account, schedule_id: int) -> None:
    """Tests end their firing schedules by stopping them: SQLite gives a deleted row's id to the next
    row, whose tests would then see the tasks of the one before."""
    assert client.patch(f"/tasks/schedules/{schedule_id}", json={"action": "stop"}, headers=account.auth).status_code == 200


def _due_now(schedule_id: int) -> datetime:
    """Make the schedule due (as if its cron time just passed); the time it was due."""
    due = datetime.now(timezone.utc) - timedelta(seconds=5)
    with session_scope() as session:
        session.execute(update(Schedule).where(Schedule.schedule_id == schedule_id).values(next_run_time=due))
    return due


def test_create_get_list_replace_stop_start_delete(client: Any, account: Account) -> None:
    before = datetime.now(timezone.utc)
    schedule_id = _create(client, account, "0 3 * * *")
    r = client.get(f"/tasks/schedules/{schedule_id}", headers=account.auth)
    assert r.status_code == 200, r.json
    got = r.json
    assert got["status"] == "running" and got["cron"] == "0 3 * * *"
    assert got["task"] == {**BODY, "content": BODY["content"]}
    next_run = datetime.fromisoformat(got["next_run_time"])
    assert next_run > before and (next_run.hour, next_run.minute) == (3, 0) and next_run - before <= timedelta(days=1)
    assert got["last_run_time"] is None and got["last_task_id"] is None

    stopped = _create(client, account, "30 18 * * 5", start=False)
    r = client.get("/tasks/schedules", headers=account.auth)
    assert [s["schedule_id"] for s in r.json["schedules"]] == [stopped, schedule_id]
    r = client.get("/tasks/schedules?status=stopped", headers=account.auth)
    assert [(s["schedule_id"], s["next_run_time"]) for s in r.json["schedules"]] == [(stopped, None)]

    r = client.patch(f"/tasks/schedules/{stopped}", json={"action": "start"}, headers=account.auth)
    assert r.status_code == 200 and r.json["status"] == "running"
    friday = datetime.fromisoformat(r.json["next_run_time"])
    assert (friday.isoweekday(), friday.hour, friday.minute) == (5, 18, 30)  # weekday 5: Friday (0 = Sunday)
    r = client.patch(f"/tasks/schedules/{stopped}", json={"action": "stop"}, headers=account.auth)
    assert (r.json["status"], r.json["next_run_time"]) == ("stopped", None)

    new_body = {**BODY, "content": {"n": 2, "parts": 1}}
    r = client.put(f"/tasks/schedules/{schedule_id}", json={"task": new_body, "cron": "*/15 * * * *"},
                   headers=account.auth)
    assert r.status_code == 200, r.json
    assert r.json["cron"] == "*/15 * * * *" and r.json["task"]["content"] == {"n": 2, "parts": 1}
    assert datetime.fromisoformat(r.json["next_run_time"]).minute % 15 == 0

    assert client.delete(f"/tasks/schedules/{schedule_id}", headers=account.auth).status_code == 204
    r = client.get(f"/tasks/schedules/{schedule_id}", headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 70005
    client.delete(f"/tasks/schedules/{stopped}", headers=account.auth)


def test_bad_schedules_are_400(client: Any, account: Account) -> None:
    for cron in ("* * * *", "61 * * * *", "0 0 31 2 *", "a b c d e", "* * * * * *", "H * * * *", "*/0 * * * *"):
        r = client.post("/tasks/schedules", json={"task": BODY, "cron": cron}, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 70006, (cron, r.json)
    for task in ({"content": {"n": 1}}, {"task_type": "nope", "content": {}},
                 {**BODY, "content": {"n": -1}}, {**BODY, "extra": 1}):
        r = client.post("/tasks/schedules", json={"task": task, "cron": "0 3 * * *"}, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005, (task, r.json)
    r = client.patch("/tasks/schedules/1", json={"action": "pause"}, headers=account.auth)
    assert r.status_code == 400


def test_other_accounts_see_nothing(client: Any, account_factory: Any) -> None:
    owner, other = account_factory(), account_factory()
    schedule_id = _create(client, owner, "0 3 * * *")
    assert client.get(f"/tasks/schedules/{schedule_id}", headers=other.auth).status_code == 404
    assert client.get("/tasks/schedules", headers=other.auth).json["schedules"] == []
    r = client.patch(f"/tasks/schedules/{schedule_id}", json={"action": "stop"}, headers=other.auth)
    assert r.status_code == 404
    assert client.delete(f"/tasks/schedules/{schedule_id}", headers=other.auth).status_code == 404
    assert client.get(f"/tasks/schedules/{schedule_id}", headers=owner.auth).json["status"] == "running"
    client.delete(f"/tasks/schedules/{schedule_id}", headers=owner.auth)


def test_every_minute_fires_once_per_minute(client: Any, account: Account) -> None:
    schedule_id = _create(client, account)
    planned = datetime.fromisoformat(client.get(f"/tasks/schedules/{schedule_id}", headers=account.auth)
                                     .json["next_run_time"])
    schedules.tick(planned - timedelta(seconds=1))
    assert _tasks_of(schedule_id) == []
    at = planned + timedelta(seconds=1)
    created = schedules.tick(at)
    tasks = _tasks_of(schedule_id)
    assert len(tasks) == 1 and tasks[0].task_id in created and tasks[0].task_type == "counting" and tasks[0].content == BODY["content"]
    got = client.get(f"/tasks/schedules/{schedule_id}", headers=account.auth).json
    assert got["last_task_id"] == tasks[0].task_id
    assert datetime.fromisoformat(got["last_run_time"]) == at
    assert datetime.fromisoformat(got["next_run_time"]) == planned + timedelta(minutes=1)
    schedules.tick(at)  # the same minute again: nothing new
    assert len(_tasks_of(schedule_id)) == 1
    r = client.get(f"/tasks?schedule_id={schedule_id}", headers=account.auth)
    assert [t["task_id"] for t in r.json["tasks"]] == [tasks[0].task_id]
    _stop(client, account, schedule_id)


def test_a_stopped_schedule_never_fires(client: Any, account: Account) -> None:
    schedule_id = _create(client, account, start=False)
    schedules.tick(datetime.now(timezone.utc) + timedelta(days=2))
    assert _tasks_of(schedule_id) == []
    client.delete(f"/tasks/schedules/{schedule_id}", headers=account.auth)


def test_concurrent_ticks_create_one_task(client: Any, account: Account) -> None:
    schedule_id = _create(client, account)
    _due_now(schedule_id)
    start = threading.Barrier(4)
    results: list[list[int]] = []

    def tick() -> None:
        start.wait()
        results.append(schedules.tick())

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    tasks = _tasks_of(schedule_id)
    assert len(tasks) == 1
    assert sum(r.count(tasks[0].task_id) for r in results) == 1
    _stop(client, account, schedule_id)


def test_now_time_filters_resolve_at_each_firing(client: Any, account: Account) -> None:
    body = {**BODY, "content": {"n": 2, "create_time__gte": "now-1d"}}
    r = client.post("/tasks/schedules", json={"task": body, "cron": "* * * * *"}, headers=account.auth)
    schedule_id = r.json["schedule_id"]
    assert client.get(f"/tasks/schedules/{schedule_id}", headers=account.auth).json["task"]["content"] == \
        {"n": 2, "create_time__gte": "now-1d"}  # kept relative
    firing = datetime.now(timezone.utc) + timedelta(days=3)
    _due_now(schedule_id)
    schedules.tick(firing)
    (task,) = _tasks_of(schedule_id)
    since = datetime.fromisoformat(task.content["create_time__gte"])
    assert abs(since - (firing - timedelta(days=1))) < timedelta(seconds=1)
    _stop(client, account, schedule_id)


def test_the_tick_task_fires_through_the_worker(client: Any, account: Account, celery_worker: Any) -> None:
    from tasks.schedules import tick

    schedule_id = _create(client, account)
    _due_now(schedule_id)
    answer = tick.delay().get(timeout=30)
    (task,) = _tasks_of(schedule_id)
    assert task.task_id in answer["task_ids"]
    done = wait_status(client, account.auth, task.task_id, (3, 5))
    assert done["status"] == 5 and done["schedule_id"] == schedule_id
    assert client.get(f"/tasks/{task.task_id}/result", headers=account.auth).json["result"] == {"sum": 15, "count": 6}
    _stop(client, account, schedule_id)


def test_beat_sends_the_tick() -> None:
    from celeryconfig import beat_schedule

    entry = beat_schedule["task-schedules"]
    assert entry["task"] == "schedules.tick" and entry["schedule"] == entry["options"]["expires"] > 0
