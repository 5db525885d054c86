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
    "matcher.*": {"queue": "matcher"},
    "*": {"queue": "cpu"},
}

broker_url = _s.effective_broker_url
result_backend = _s.redis_url

# Long tasks must not be redelivered while still running: the visibility timeout exceeds the
# longest task, and it is set wherever Celery reads it (broker and Redis result backend).
broker_transport_options: dict = {"visibility_timeout": _s.visibility_timeout_s}
result_backend_transport_options = {"visibility_timeout": _s.visibility_timeout_s}
broker_connection_retry_on_startup = True

task_queues = [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES]
task_default_queue = "cpu"
task_routes = [ROUTES]

# A task is acknowledged only after it ran, and requeued if its worker dies mid-way: tasks are
# idempotent, so running one twice is safe, losing one is not.
task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1

# Visibility in Flower: events from workers and at send time, STARTED state, readable names.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
result_expires = _s.result_expires_s
result_extended = True

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# Periodic tasks (cron schedules) live here beside the routes.
beat_schedule: dict = {
    # Expired objects on local disk; the task's lock keeps it to one worker however many run.
    "storage-cleanup": {"task": "storage.cleanup", "schedule": crontab(hour=1, minute=0)},
    # Expired temporary attributes in the database back-end.
    "attributes-cleanup": {"task": "attributes.cleanup", "schedule": crontab(minute="*/10")},
}
beat_schedule_filename = str(Path(_s.data_dir) / "celerybeat-schedule")
