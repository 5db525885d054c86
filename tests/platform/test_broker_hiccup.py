"""A worker outlives its broker going away: Redis (an embedded server of its own here) is killed
with SIGKILL while the worker runs a task and comes back 6 s later (less than the visibility
timeout, 15 s here). The worker reconnects by itself,
the task it was running finishes, stores its result once Redis is back and is acknowledged (not
redelivered), and the next task runs. (kombu 5.7.0 alone kills the worker there: see
the lease renewal of tasks/lease.py.)"""
from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest
import redis as redis_lib

from app import embedded
from tests.platform.helpers import (
    PLATFORM_REDIS_URL,
    WorkerProcess,
    free_port,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("platform-hiccup")]


def test_worker_reconnects_after_the_redis_server_restarts(tmp_path: Path) -> None:
    from celery import Celery

    url = f"redis://127.0.0.1:{free_port()}/0"
    server = embedded.start_redis(url, tmp_path)
    queue = f"platform-{uuid.uuid4().hex[:10]}"
    worker = WorkerProcess(queue, {"FACEGATE_REDIS_URL": url, "FACEGATE_BROKER_URL": "",
                                   "FACEGATE_VISIBILITY_TIMEOUT_S": "15",
                                   "FACEGATE_PLATFORM_COUNTERS_URL": PLATFORM_REDIS_URL}, "hiccup").start()
    app = Celery("platform-hiccup", set_as_current=False)
    app.conf.update(broker_url=url, result_backend=url, task_create_missing_queues=True)
    counters = redis_lib.Redis.from_url(PLATFORM_REDIS_URL)  # a server that stays up
    held_key, after_key = f"platform:{uuid.uuid4().hex}", f"platform:{uuid.uuid4().hex}"
    try:
        worker.wait_ready()
        held = app.send_task("platform.work", args=(held_key, 4), queue=queue, expires=120)
        wait_until(lambda: counters.get(f"{held_key}:started") == b"1", 30, what="the task to start")
        time.sleep(1.2)  # appendfsync everysec: the delivered message is on disk
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        time.sleep(6)  # the worker retries meanwhile (forever: the default gives up after 100 tries)
        assert worker.popen.poll() is None, worker.log()[-3000:]
        server = embedded.start_redis(url, tmp_path)
        after = app.send_task("platform.work", args=(after_key, 0), queue=queue, expires=120)
        assert after.get(timeout=60)["key"] == after_key, worker.log()[-3000:]
        assert held.get(timeout=60)["key"] == held_key, worker.log()[-3000:]
        assert counters.get(f"{held_key}:done") == b"1"
        time.sleep(15 + 2 + 3)  # visibility timeout + sweep: an unsettled message would be back
        assert counters.get(f"{held_key}:started") == b"1", worker.log()[-3000:]
        assert worker.popen.poll() is None, worker.log()[-3000:]
        assert "Connection to broker lost" in worker.log() and "Unrecoverable error" not in worker.log()
    finally:
        worker.stop()
        app.close()
        counters.delete(*(f"{k}:{w}" for k in (held_key, after_key) for w in ("started", "done", "runs")))
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)
