"""Running a Celery task on behalf of a REST call and waiting for its result."""
from __future__ import annotations

from typing import Any

from celery import Signature
from celery.exceptions import TimeoutError as CeleryTimeout

from app import settings
from app.errors import APIError


def run_and_wait(signature: Signature, timeout: float | None = None) -> tuple[str, Any]:
    """Enqueue ``signature`` and wait for it; 503 ``worker_timeout`` when no worker answers in time.

    Returns (task id, result). A timed-out task is revoked so a worker that comes back later does
    not do work nobody waits for.
    """
    timeout = settings.current().worker_wait_timeout_s if timeout is None else timeout
    result = signature.apply_async()
    try:
        value = result.get(timeout=timeout, propagate=False, interval=0.05)
    except CeleryTimeout:
        result.revoke()
        raise APIError("worker_timeout", f"task {result.id} got no answer within {timeout:g} s; "
                                         "are the workers running?") from None
    if result.failed():
        raise APIError("task_failed", f"task {result.id} failed: {type(value).__name__}: {value}")
    return result.id, value
