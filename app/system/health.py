"""Health checks of every part the platform depends on."""
from __future__ import annotations

import os
from typing import Callable

from sqlalchemy import text

from app import db, settings
from app.image_store import service as image_store


def check_database() -> None:
    with db.engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def check_broker() -> None:
    from tasks import celery

    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)


def check_result_backend() -> None:
    from tasks import celery

    celery.backend.client.ping()


def check_image_store() -> None:
    """The store answers, its root is writable (local), and the platform's buckets exist."""
    s = settings.current()
    missing = image_store.missing_platform_buckets()  # lists the buckets: S3 or the local root answers
    if s.storage_type == "local" and not os.access(s.effective_storage_path, os.W_OK):
        raise OSError(f"{s.effective_storage_path} is not writable")
    if missing:
        raise LookupError(f"missing buckets {missing}; run `facegate buckets create`")


CHECKS: dict[str, Callable[[], None]] = {
    "database": check_database,
    "broker": check_broker,
    "result_backend": check_result_backend,
    "image_store": check_image_store,
}


def run_checks() -> dict[str, str]:
    """{part: "ok" | "error: ..."} for every check."""
    report = {}
    for name, check in CHECKS.items():
        try:
            check()
            report[name] = "ok"
        except Exception as exc:  # any failure of a part is a finding, not a crash
            report[name] = f"error: {type(exc).__name__}: {exc}"
    return report
