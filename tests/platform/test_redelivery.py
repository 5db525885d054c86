"""Redelivery on real servers: a worker killed with SIGKILL in the middle of a task.

Each broker set-up is tested as deployed: Redis as broker (visibility timeout, swept by every
worker, with the lease that live workers renew) and RabbitMQ as broker (skipped when none answers
on 127.0.0.1:5672); results always in Redis. The task counts its starts and finishes in Redis.

- killed, then a worker restarts at once: the task runs exactly once more and its result arrives;
- killed, and the next worker comes after the message's ``expires``: the task never runs again
  (Redis: the worker that receives it checks ``expires`` and marks it REVOKED; RabbitMQ: the
  message's TTL, which Celery sets from ``expires``, makes the broker drop it);
- killed while another worker runs: how long until that worker redoes it (recorded);
- a task longer than the visibility timeout is not redelivered while it runs (the lease).

Workers here run with FACEGATE_VISIBILITY_TIMEOUT_S=6 (FACEGATE_PLATFORM_VISIBILITY_S to measure
another value); set FACEGATE_PLATFORM_TIMINGS=<file> to append the measured times as JSON lines.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis as redis_lib

from tests.platform.helpers import (
    AMQP_URL,
    PLATFORM_REDIS_URL,
    WorkerProcess,
    amqp_available,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("platform-redelivery")]

VISIBILITY_S = int(os.environ.get("FACEGATE_PLATFORM_VISIBILITY_S", "6"))
RESTORE_S = max(1, VISIBILITY_S // 6)  # as celeryconfig derives it
# Worst case for a dead worker's task to be back on its queue (Redis), plus a margin for the
# sweep, the receiving worker and a loaded 2-core machine.
REDIS_REDELIVERY_BOUND_S = VISIBILITY_S + RESTORE_S + 8
BROKERS = ["redis", pytest.param("amqp", marks=pytest.mark.skipif(not amqp_available(),
                                                                  reason="no RabbitMQ on 127.0.0.1:5672"))]


def _record(name: str, **values: Any) -> None:
    line = {"test": name, "visibility_timeout_s": VISIBILITY_S, **values}
    print(json.dumps(line))
    path = os.environ.get("FACEGATE_PLATFORM_TIMINGS")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


class Rig:
    """One broker set-up: a sending app, a queue of its own, worker processes, the counters."""

    def __init__(self, broker: str) -> None:
        from celery import Celery

        self.broker = broker
        self.broker_url = PLATFORM_REDIS_URL if broker == "redis" else AMQP_URL
        self.queue = f"platform-{uuid.uuid4().hex[:10]}"
        self.redis = redis_lib.Redis.from_url(PLATFORM_REDIS_URL)
        self.app = Celery("platform-test", set_as_current=False)
        self.app.conf.update(
            broker_url=self.broker_url, result_backend=PLATFORM_REDIS_URL, task_serializer="json",
            accept_content=["json"], result_extended=True, task_create_missing_queues=True,
            broker_transport_options={"confirm_publish": True} if broker == "amqp" else {})
        self.env = {"FACEGATE_REDIS_URL": PLATFORM_REDIS_URL,
                    "FACEGATE_BROKER_URL": "" if broker == "redis" else self.broker_url,
                    "FACEGATE_VISIBILITY_TIMEOUT_S": str(VISIBILITY_S),
                    "FACEGATE_PLATFORM_COUNTERS_URL": PLATFORM_REDIS_URL}
        self.workers: list[WorkerProcess] = []
        self.keys: list[str] = []

    def worker(self, name: str) -> WorkerProcess:
        w = WorkerProcess(self.queue, self.env, name)
        self.workers.append(w)
        return w.start()

    def send(self, seconds: float, expires: float | None = None) -> tuple[str, Any]:
        """Send ``platform.work``; ``expires`` in seconds from now, as request-reply calls do."""
        key = f"platform:{uuid.uuid4().hex}"
        self.keys.append(key)
        result = self.app.send_task("platform.work", args=(key, seconds), queue=self.queue,
                                    expires=expires)
        return key, result

    def count(self, key: str, what: str) -> int:
        return int(self.redis.get(f"{key}:{what}") or 0)

    def runs(self, key: str) -> list[tuple[float, int]]:
        out = []
        for raw in self.redis.lrange(f"{key}:runs", 0, -1):
            t, pid = raw.decode().split()
            out.append((float(t), int(pid)))
        return out

    def logs(self) -> str:
        return "\n".join(f"--- {w.name}\n{w.log()[-3000:]}" for w in self.workers)

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        try:
            with self.app.connection_for_write() as conn:
                conn.default_channel.queue_delete(self.queue)
        except Exception:
            pass
        for key in self.keys:
            self.redis.delete(f"{key}:started", f"{key}:done", f"{key}:runs")
        self.app.close()


@pytest.fixture(params=BROKERS)
def rig(request: Any) -> Iterator[Rig]:
    r = Rig(request.param)
    yield r
    if getattr(request.node, "platform_failed", False):
        print(r.logs())
    r.close()


def test_killed_worker_task_runs_once_more_when_a_worker_restarts_in_time(rig: Rig) -> None:
    a = rig.worker("a").wait_ready()
    key, result = rig.send(seconds=8, expires=120)
    wait_until(lambda: rig.count(key, "started") == 1, 30, what="the task to start")
    a.kill9()
    killed_at = time.time()
    b = rig.worker("b").wait_ready()  # what the supervisor does: start it again at once
    ready_s = time.time() - killed_at
    value = result.get(timeout=REDIS_REDELIVERY_BOUND_S + 30, propagate=True)
    runs = rig.runs(key)
    assert value["key"] == key, rig.logs()
    assert rig.count(key, "started") == 2 and rig.count(key, "done") == 1, (runs, rig.logs())
    assert runs[1][1] == b.popen.pid
    redelivered_s = runs[1][0] - killed_at
    if rig.broker == "redis":
        assert redelivered_s <= REDIS_REDELIVERY_BOUND_S, rig.logs()
    # Ran longer than the visibility timeout on b and was still not handed out a third time.
    time.sleep(RESTORE_S + 2)
    assert rig.count(key, "started") == 2, (rig.runs(key), rig.logs())
    _record("restart_in_time", broker=rig.broker, worker_ready_s=round(ready_s, 2),
            redone_after_kill_s=round(redelivered_s, 2))


def test_killed_worker_task_never_runs_after_it_expired(rig: Rig) -> None:
    a = rig.worker("a").wait_ready()
    expires_in = 8
    key, result = rig.send(seconds=30, expires=expires_in)
    sent_at = time.time()
    wait_until(lambda: rig.count(key, "started") == 1, 30, what="the task to start")
    a.kill9()
    # The caller gave up (and its revoke lived only in a's memory); the next worker comes later.
    time.sleep(max(0.0, sent_at + expires_in + 1 - time.time()))
    rig.worker("b").wait_ready()
    if rig.broker == "redis":
        # b receives the requeued message, sees it expired, marks it REVOKED and drops it.
        wait_until(lambda: result.state == "REVOKED", REDIS_REDELIVERY_BOUND_S + 20, 0.2,
                   "the expired task to be marked REVOKED")
    else:
        # The message carries a RabbitMQ TTL (Celery sets it from expires): the broker itself
        # drops it when the dead worker's connection gives it back, so b never receives it.
        time.sleep(5)
        assert "received" not in rig.workers[-1].log()
    time.sleep(2)
    assert rig.count(key, "started") == 1 and rig.count(key, "done") == 0, (rig.runs(key), rig.logs())
    _record("restart_after_expiry", broker=rig.broker, revoked_after_kill_s=round(time.time() - sent_at, 1))


def test_killed_worker_task_redone_by_a_live_worker(rig: Rig) -> None:
    workers = {w.popen.pid: w for w in (rig.worker("a"), rig.worker("b"))}
    for w in workers.values():
        w.wait_ready()
    key, result = rig.send(seconds=3, expires=120)
    wait_until(lambda: rig.count(key, "started") == 1, 30, what="the task to start")
    holder = workers[rig.runs(key)[0][1]]
    holder.kill9()
    killed_at = time.time()
    value = result.get(timeout=REDIS_REDELIVERY_BOUND_S + 30)
    assert value["key"] == key
    runs = rig.runs(key)
    assert len(runs) == 2 and runs[1][1] != holder.popen.pid, (runs, rig.logs())
    redelivered_s = runs[1][0] - killed_at
    if rig.broker == "redis":
        assert VISIBILITY_S - RESTORE_S - 2 <= redelivered_s <= REDIS_REDELIVERY_BOUND_S, rig.logs()
    else:
        assert redelivered_s < 10, rig.logs()  # the connection dropped: RabbitMQ requeues at once
    _record("live_peer", broker=rig.broker, redone_after_kill_s=round(redelivered_s, 2))


@pytest.mark.parametrize("rig", ["redis"], indirect=True)
def test_lease_keeps_a_long_task_from_being_redelivered(rig: Rig) -> None:
    for w in (rig.worker("a"), rig.worker("b")):  # both sweep the unacked index
        w.wait_ready()
    seconds = 2.5 * VISIBILITY_S
    key, result = rig.send(seconds=seconds, expires=120)
    result.get(timeout=seconds + 30)
    time.sleep(RESTORE_S + 1)
    assert rig.count(key, "started") == 1 and rig.count(key, "done") == 1, (rig.runs(key), rig.logs())
