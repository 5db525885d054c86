"""Request ids and logging, shared by the API and the workers.

Every request carries ``Luna-Request-Id: <unix ts>,<uuid4>`` (taken from the client when given,
made otherwise). It is kept in a context variable so each log line carries it, and it travels
in the Celery message headers so the worker's log lines for that request carry it too.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from app import settings

REQUEST_ID_HEADER = "Luna-Request-Id"
REQUEST_ID_RE = re.compile(r"^\d{10},[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


def new_request_id() -> str:
    return f"{int(time.time())},{uuid.uuid4()}"


def valid_request_id(value: str) -> bool:
    return bool(REQUEST_ID_RE.match(value))


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def configure_logging() -> None:
    """Install the request-id format on the root logger (idempotent) and follow log_level reloads."""
    root = logging.getLogger()
    if not any(isinstance(f, RequestIdFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.addFilter(RequestIdFilter())
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(handler)
        settings.on_change(lambda old, new: root.setLevel(new.log_level))
    root.setLevel(settings.current().log_level)
