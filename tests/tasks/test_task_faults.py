"""A worker killed with SIGKILL in the middle of a long task: the task still finishes, each part
counted once, no duplicate errors. Real worker processes on a Redis database of their own."""
from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib
from celery import Celery
from sqlalchemy import func, select

from app.db import session_scope
from app.tasks.models import DONE, IN_PROGRESS, Subtask, Task, TaskError
from app.tasks.runner import celery_id
from tests.conftest import DATA_DIR, PG_URL, Account
from tests.platform.helpers import PLATFORM_REDIS_URL, WorkerProcess, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("platform-redelivery")]

VISIBILITY_S = 6


class TaskWorker(WorkerProcess):
    def __init__(self, name: str) -> None:
        super().__init__("cpu", {"FACEGATE_REDIS_URL": PLATFORM_REDIS_URL, "FACEGATE_BROKER_URL": "",
                                 "FACEGATE_DATABASE_URL": PG_URL, "FACEGATE_DATA_DIR": DATA_DIR,
                                 "FACEGATE_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S)}, name)
        self.argv = [sys.executable, "-m", "celery", "-A", "tests.tasks.workerapp", "worker", "--queues", "cpu",
                     "--pool", "threads", "--concurrency", "2", "--hostname", f"{self.name}@%h", "--loglevel",
                     "INFO", "--without-mingle", "--without-gossip"]


@pytest.fixture()
def sender() -> Iterator[Celery]:
    redis_lib.Redis.from_url(PLATFORM_REDIS_URL).flushdb()
    app = Celery("task-faults", set_as_current=False)
    app.conf.update(broker_url=PLATFORM_REDIS_URL, result_backend=PLATFORM_REDIS_URL, task_serializer="json",
                    accept_content=["json"])
    yield app
    app.close()


def _row(task_id: int) -> Task:
    with session_scope() as session:
        return session.get(Task, task_id)


def test_worker_killed_mid_part_task_still_finishes_once(account: Account, sender: Celery, client: Any) -> None:
    # The row as the API writes it; the split goes to the workers' own broker.
    n, parts, bad = 60, 3, [5, 25, 45]
    with session_scope() as session:
        task = Task(account_id=account.account_id, task_type="counting", description="faults",
                    content={"n": n, "parts": parts, "sleep_s": 0.1, "bad": bad})
        session.add(task)
        session.flush()
        task_id = task.task_id
    workers = [TaskWorker("a").start()]
    try:
        workers[0].wait_ready()
        sender.send_task("jobs.split", args=(task_id,), queue="cpu", task_id=celery_id(task_id, "split"))
        # Killed while parts are running: one part done at most, the others mid-way.
        wait_until(lambda: _row(task_id).status == IN_PROGRESS and _parts_started(task_id) >= 2, 60,
                   what="two parts to start")
        workers[0].kill9()
        killed = _row(task_id)
        assert killed.parts_done < parts, "the kill came too late to test anything"
        workers.append(TaskWorker("b").start())
        workers[1].wait_ready()
        done = wait_until(lambda: _row(task_id).status == DONE, VISIBILITY_S + 60, what="the task to finish")
        assert done
        row = _row(task_id)
        assert (row.parts_done, row.parts_total) == (parts, parts)
        with session_scope() as session:
            errors = session.scalar(select(func.count()).select_from(TaskError).where(TaskError.task_id == task_id))
            statuses = list(session.scalars(select(Subtask.status).where(Subtask.task_id == task_id)))
        assert errors == len(bad)  # the killed parts' errors were written once, with their checkpoint
        assert statuses == [DONE] * parts
        r = client.get(f"/tasks/{task_id}/result", headers=account.auth)
        assert r.status_code == 200 and r.json["result"] == {"sum": sum(range(n)), "count": n}
        assert f"jobs.part[{celery_id(task_id, 'part-')}" in workers[1].log()  # redelivered to b
    except BaseException:
        for w in workers:
            print(f"--- {w.name}\n{w.log()[-3000:]}")
        raise
    finally:
        for w in workers:
            w.stop()


def _parts_started(task_id: int) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(Subtask)
                              .where(Subtask.task_id == task_id, Subtask.start_time.is_not(None))) or 0
