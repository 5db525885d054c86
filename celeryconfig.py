"""Celery configuration: queues, routing and delivery guarantees, in one place.

Read by the Celery app (``tasks``) in every process: API (which only sends), workers, beat and
Flower. Values that depend on the deployment come from ``app.settings``.

Routing: every task name starts with its area. Neural-network work (``inference.*``) goes to the
``gpu`` queue, matching (``matcher.*``) to its own ``matcher`` queue so matcher workers scale apart,
everything else to ``cpu``. Call sites never name a queue.
"""
from __future__ import annotations

from pathlib import Path

from celery.schedules import crontab
from kombu import Exchange, Queue

from app.settings import current

_s = current()
Path(_s.data_dir).mkdir(parents=True, exist_ok=True)  # beat's schedule file lives there

QUEUES = ("gpu", "cpu", "matcher")
ROUTES = {
    "inference.*": {"queue": "gpu"},
    "jobs.gpu_part": {"queue": "gpu"},  # parts of long tasks that run neural networks (the estimator)
    "matcher.*": {"queue": "matcher"},
    "*": {"queue": "cpu"},
}

broker_url = _s.effective_broker_url
result_backend = _s.redis_url

# --- Delivery: work of a dead worker comes back in seconds, never hours later (docs/deployment.md).
#
# Redis broker (the default, embedded and production alike): a delivered task waits in kombu's
# ``unacked`` hash, scored in the ``unacked_index`` sorted set by its delivery time, until the worker
# acknowledges it; any worker's sweep puts entries older than ``visibility_timeout`` back on their
# queue. Live workers renew the score of every task they hold every LEASE_RENEW_S (the
# consumer step in ``tasks/lease.py``), so a task that runs for hours is never redelivered while it runs,
# and the tasks of a worker that died (SIGKILL, OOM, lost machine) are back on their queue within
# visibility_timeout + RESTORE_INTERVAL_S. RabbitMQ (broker_url=amqp://...) gives a dead worker's
# tasks back as soon as its connection drops, or after two missed heartbeats for a lost machine.
VISIBILITY_TIMEOUT_S = _s.visibility_timeout_s
LEASE_RENEW_S = max(1.0, VISIBILITY_TIMEOUT_S / 6)  # tasks/lease.py renews this often
RESTORE_INTERVAL_S = max(1, int(VISIBILITY_TIMEOUT_S // 6))
_REDIS_BROKER = broker_url.split("://", 1)[0] in ("redis", "rediss", "unix", "sentinel")

if _REDIS_BROKER:
    broker_transport_options: dict = {
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": RESTORE_INTERVAL_S,  # every worker sweeps this often...
        "unacked_restore_throttle": 1,                   # ...and really scans each time
        "unacked_mutex_expire": max(10, VISIBILITY_TIMEOUT_S),  # a sweeper that died mid-sweep
        # Broker hiccups: dead connections are noticed and replaced, never waited on forever.
        "health_check_interval": 10,
        "socket_keepalive": True,
        "socket_connect_timeout": _s.dependency_timeout_s,  # a server that is down is retried, not awaited
        "socket_timeout": 30,
        "retry_on_timeout": True,
    }
else:
    broker_transport_options = {"confirm_publish": True}  # a send returns once RabbitMQ has it
    broker_heartbeat = 10  # a lost worker machine is noticed in ~20 s, its tasks redelivered
# Outages (docs/deployment.md "Outages"): a request meets a dependency that is down within
# dependency_timeout_s, answered 503 by app.dispatch. Celery's result consumer (the API waiting for
# an answer) reconnects for that long instead of its default 20 tries a second apart (a request
# hung ~19 s, then a 500); a worker storing a result is not bounded by it (result_backend_always_retry
# below retries that policy for as long as Redis is away).
_DEPENDENCY_S = _s.dependency_timeout_s
result_backend_transport_options: dict = {
    "retry_policy": {"max_retries": 20, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5,
                     "timeout": _DEPENDENCY_S},
}

# A worker retries the broker forever (the default gives up, and exits, after 100 tries); each try
# waits dependency_timeout_s for the connection, so the API's sends do too.
broker_connection_retry = True
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
broker_connection_timeout = _DEPENDENCY_S
# Results, pub/sub and revokes on Redis: the same care.
redis_backend_health_check_interval = 10
redis_socket_keepalive = True
redis_socket_connect_timeout = _DEPENDENCY_S
redis_socket_timeout = _DEPENDENCY_S
redis_retry_on_timeout = True
result_backend_always_retry = True  # storing a result waits out a Redis restart, does not fail the task
result_backend_base_sleep_between_retries_ms = 100

task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
task_default_queue = "cpu"
task_routes = [ROUTES]

# A task is acknowledged only after it ran, and requeued if its worker dies mid-way: tasks are
# idempotent, so running one twice is safe, losing one is not. Request-reply sends carry
# ``expires`` (the caller's timeout): a worker that receives one later, redelivered or not, marks
# it REVOKED without running it, so nothing runs after its caller gave up.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Visibility in Flower: events from workers and at send time (Flower's task names, arguments and
# states come from these), and the STARTED state in the result store.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
result_expires = _s.result_expires_s
# Results hold the answer only, not the task's name and arguments again: nothing reads them from
# the result store, and a handler chain's steps carry what the previous step found, so storing it
# twice per step cost about a tenth of POST /handlers/{id}/events' throughput (bench/events.py).
result_extended = False

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# Periodic tasks (cron schedules) live here beside the routes.
beat_schedule: dict = {
    # Expired objects on local disk; the task's lock keeps it to one worker however many run.
    "storage-cleanup": {"task": "storage.cleanup", "schedule": crontab(hour=1, minute=0)},
    # Outbox rows whose kick was lost with its worker, and webhook retries whose task was lost
    # (app.notifications). Saves kick the relay themselves, so this is a safety net: every 30 s
    # keeps a lost kick's delay short without three log lines a few seconds apart.
    "notifications-relay": {"task": "notifications.relay", "schedule": 30.0, "options": {"expires": 30.0}},
    # Task schedules (app.tasks.schedules): the tick claims due rows, so beats may overlap; a tick
    # that waited past the next one is dropped, the next covers it.
    "task-schedules": {"task": "schedules.tick", "schedule": _s.schedule_tick_s,
                       "options": {"expires": _s.schedule_tick_s}},
}
beat_schedule_filename = str(Path(_s.data_dir) / "celerybeat-schedule")
