"""Temporary attribute upkeep."""
from __future__ import annotations

from typing import Any

from app.services import attributes
from tasks import celery


@celery.task(name="attributes.cleanup", acks_late=True)
def cleanup() -> dict[str, Any]:
    """Every 10 minutes (celery beat): free expired temporary attributes in the database back-end
    even when no request touches them. Redis expires its keys itself; deleting twice is harmless."""
    return {"removed": attributes.cleanup_expired()}
