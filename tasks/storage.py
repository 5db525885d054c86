"""Image store upkeep."""
from __future__ import annotations

from typing import Any

from app.image_store import service as image_store
from tasks import celery


@celery.task(name="storage.cleanup", acks_late=True)
def cleanup() -> dict[str, Any]:
    """Daily (celery beat, 01:00 UTC): delete expired objects from local storage. Every beat may
    fire it; the cleanup lock lets one worker do the work and the others return at once. On S3 the
    bucket lifecycle rules delete instead, and this removes nothing."""
    removed = image_store.cleanup()
    return {"removed": removed or 0, "skipped": removed is None}
