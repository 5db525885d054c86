"""Schedule tasks (``schedules.*``, routed to ``cpu``): beat's tick that creates the tasks of the
cron schedules that are due (app.tasks.schedules)."""
from __future__ import annotations

from typing import Any

from app.tasks import schedules
from tasks import celery


@celery.task(name="schedules.tick", acks_late=True)
def tick() -> dict[str, Any]:
    """Fire every due schedule; two ticks at once (two beats, a late message) fire each once."""
    return {"task_ids": schedules.tick()}
