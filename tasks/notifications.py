"""Notification tasks (``notifications.*``, routed to ``cpu``): the outbox relay and webhook sends."""
from __future__ import annotations

from typing import Any

from app.notifications import service
from tasks import celery


@celery.task(name="notifications.relay", acks_late=True)
def relay() -> dict[str, Any]:
    """Kicked by each save that has callbacks, and by beat every 30 s: pass on new outbox rows
    and send the webhooks that are due."""
    passed, due = service.relay()
    for delivery_id in due:
        deliver.delay(delivery_id)
    return {"rows": passed, "deliveries": len(due)}


@celery.task(name="notifications.deliver", acks_late=True)
def deliver(delivery_id: int) -> dict[str, Any]:
    """One try of one webhook; a failed try schedules the next after its backoff."""
    wait = service.deliver(delivery_id)
    if wait is not None:
        deliver.apply_async((delivery_id,), countdown=wait)
    return {"delivery_id": delivery_id, "retry_in_s": wait}
