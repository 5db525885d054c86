"""The Celery application: ``celery -A tasks worker|beat|flower``.

Task modules are listed in ``TASK_MODULES``; each names its tasks ``<area>.<action>`` so the
routes in ``celeryconfig`` send them to the right queue.
"""
from __future__ import annotations

from typing import Any

from celery import Celery, signals

from app import settings
from app.observability import configure_logging, request_id_var

TASK_MODULES = ["tasks.system", "tasks.storage", "tasks.attributes", "tasks.inference", "tasks.matcher"]

celery = Celery("facegate", include=TASK_MODULES)
celery.config_from_object("celeryconfig")
app = celery  # the name `celery -A tasks` looks for first

REQUEST_ID_HEADER = "luna_request_id"


@signals.before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and request_id_var.get() != "-":
        headers.setdefault(REQUEST_ID_HEADER, request_id_var.get())


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
