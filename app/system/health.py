"""Health checks of every part the platform depends on."""
from __future__ import annotations

import logging
import os
from typing import Callable

from sqlalchemy import text

from app import db, dispatch, settings
from app.image_store import service as image_store

log = logging.getLogger(__name__)


class Unhealthy(Exception):
    """A finding whose message is safe to show callers (no hosts, paths or driver text)."""


def check_database() -> None:
    with db.engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def check_broker() -> None:
    with dispatch.celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.current().dependency_timeout_s)


def check_redis() -> None:
    """Task results, pub/sub, temporary attributes and locks."""
    db.redis_client().ping()


def check_image_store() -> None:
    """The store answers, its root is writable (local), and the platform's buckets exist."""
    s = settings.current()
    missing = image_store.missing_platform_buckets()  # lists the buckets: S3 or the local root answers
    if s.storage_type == "local" and not os.access(s.effective_storage_path, os.W_OK):
        raise Unhealthy("the local image store is not writable")
    if missing:
        raise Unhealthy(f"missing buckets {missing}; run `facegate buckets create`")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "redis": check_redis,
    "image_store": check_image_store,
}


def run_checks() -> dict[str, str]:
    """{part: "ok" | "error: ..."} for every check; the log has the full reason of each failure."""
    report = {}
    for name, check in CHECKS.items():
        try:
            check()
            report[name] = "ok"
        except Unhealthy as exc:
            report[name] = f"error: {exc}"
        except Exception as exc:  # any failure of a part is a finding, not a crash
            log.warning("health check %s failed: %s: %s", name, type(exc).__name__, exc)
            report[name] = f"error: {type(exc).__name__}"
    return report
