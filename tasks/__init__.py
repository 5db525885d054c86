"""The worker side of the Celery application: ``celery -A tasks worker|beat|flower``.

The application object is :data:`app.dispatch.celery`, the one the API sends with; this package
registers the task modules listed in ``TASK_MODULES`` on it. Each names its tasks
``<area>.<action>`` so the routes in ``celeryconfig`` send them to the right queue.
"""
from __future__ import annotations

from typing import Any

from celery import signals

from app import settings
from app.dispatch import REQUEST_ID_HEADER, celery
from app.observability import configure_logging, request_id_var

TASK_MODULES = ["tasks.lease", "tasks.system", "tasks.storage", "tasks.inference", "tasks.matcher", "tasks.handlers",
                "tasks.notifications", "tasks.jobs", "tasks.schedules"]

celery.conf.include = TASK_MODULES
app = celery  # the name `celery -A tasks` looks for first

@signals.task_prerun.connect
def _receive_request_id(task: Any = None, **_: Any) -> None:
    request_id_var.set(getattr(task.request, REQUEST_ID_HEADER, None) or "-")


@signals.worker_process_init.connect
def _after_fork(**_: Any) -> None:
    # Pooled DB connections must not cross a fork; models load lazily after it (inference.registry).
    from app.db import dispose_all

    dispose_all()
    settings.start_watcher()


@signals.setup_logging.connect
def _logging(**_: Any) -> None:
    configure_logging()
