"""The platform's Celery app plus one test task, for worker subprocesses started by these tests:
``celery -A tests.platform.taskapp worker -Q <queue>``.

``platform.work`` counts its starts and finishes in Redis (the side effect the tests check) and
sleeps in between, long enough for a test to kill its worker mid-task.
"""
from __future__ import annotations

import os
import time

import redis

from app import settings
from tasks import celery

app = celery


def counters_url() -> str:
    # Always the test's Redis, also when the broker under test is RabbitMQ.
    return os.environ.get("FACEGATE_PLATFORM_COUNTERS_URL") or settings.current().redis_url


@celery.task(name="platform.work", acks_late=True)
def work(key: str, seconds: float) -> dict[str, object]:
    client = redis.Redis.from_url(counters_url())
    client.incr(f"{key}:started")
    client.rpush(f"{key}:runs", f"{time.time():.3f} {os.getpid()}")
    time.sleep(seconds)
    client.incr(f"{key}:done")
    return {"key": key, "pid": os.getpid()}
