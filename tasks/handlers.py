"""The cpu step of ``POST /handlers/{id}/events`` (``handlers.*``, routed to ``cpu``)."""
from __future__ import annotations

from typing import Any

from app.dispatch import reported
from app.handlers import processing
from app.scope import Scope
from tasks import celery


@celery.task(name="handlers.save_events", acks_late=True)
@reported
def save_events(found: dict[str, Any], scope: str, origin: dict[str, Any], policies: dict[str, Any],
                request: dict[str, Any], refs: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Faces, links, attributes, images and events of one request; the events answered."""
    return processing.save(found, Scope.from_wire(scope), origin, policies, request, refs)
