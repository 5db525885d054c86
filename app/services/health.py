"""Health checks of every part the platform depends on."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import text

from app import db, settings


def check_database() -> None:
    with db.engine().connect() as conn:
        conn.execute(text("SELECT 1"))


def check_broker() -> None:
    from tasks import celery

    with celery.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)


def check_result_backend() -> None:
    from tasks import celery

    backend = celery.backend
    url = settings.current().effective_result_backend
    if url.startswith("file://"):
        probe = Path(url[len("file://"):]) / ".healthcheck"
        probe.write_text(str(time.time()))
        probe.unlink()
    elif url.startswith("redis"):
        backend.client.ping()
    else:
        backend.get_state("healthcheck-probe")


def check_image_store() -> None:
    s = settings.current()
    if s.storage_type == "local":
        path = s.effective_storage_path
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            raise OSError(f"{path} is not writable")
    else:
        import boto3
        from botocore.config import Config

        client = boto3.client("s3", endpoint_url=s.s3_endpoint_url or None, region_name=s.s3_region,
                              aws_access_key_id=s.s3_access_key or None,
                              aws_secret_access_key=s.s3_secret_key or None, verify=s.s3_verify_ssl,
                              config=Config(signature_version=s.s3_signature_version, connect_timeout=3,
                                            retries={"max_attempts": 1}))
        client.list_buckets()


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
