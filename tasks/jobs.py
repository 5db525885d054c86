"""Long-task steps (``jobs.*``; ``jobs.gpu_part`` goes to ``gpu``, the rest to ``cpu``): each takes
a task id (and a part number), never data, and reads and moves the task's rows (app.tasks.runner).

Progress shows in Flower: a running part reports the custom state ``PROGRESS`` with its task id,
part and items done of items total, next to the row's ``parts_done``/``parts_total``.
"""
from __future__ import annotations

import logging
from typing import Any

from app import dispatch
from app.errors import APIError
from app.tasks import runner
from tasks import celery, inference

log = logging.getLogger(__name__)

PROGRESS = "PROGRESS"


@celery.task(name="jobs.split", acks_late=True)
def split(task_id: int) -> dict[str, Any]:
    """List the task's subtasks and send one message per part not finished yet."""
    try:
        parts = runner.split(task_id)
    except APIError as exc:  # the type's own verdict (a source refusing credentials): its kind and words
        runner.fail(task_id, exc.kind, exc.detail)
        return {"task_id": task_id, "parts": 0}
    except Exception:
        log.exception("task %s could not be split", task_id)
        runner.fail(task_id, "task_failed", f"task {task_id} could not be split into subtasks; "
                                            "the worker log has the details")
        return {"task_id": task_id, "parts": 0}
    name = runner.part_step(task_id)
    for part in parts:
        dispatch.enqueue(dispatch.task(name, task_id, part).set(task_id=runner.celery_id(task_id, f"part-{part}")))
    return {"task_id": task_id, "parts": len(parts)}


def _run_part(step: Any, task_id: int, part: int, analyzer: runner.Analyzer | None = None) -> dict[str, Any]:
    def report(meta: dict[str, Any]) -> None:
        step.update_state(state=PROGRESS, meta=meta)

    return {"task_id": task_id, "part": part, "outcome": runner.run_part(task_id, part, report, analyzer)}


@celery.task(name="jobs.part", bind=True, acks_late=True)
def part(self: Any, task_id: int, part: int) -> dict[str, Any]:
    """One subtask on a cpu worker."""
    return _run_part(self, task_id, part)


@celery.task(name="jobs.gpu_part", bind=True, acks_late=True)
def gpu_part(self: Any, task_id: int, part: int) -> dict[str, Any]:
    """One subtask of a type whose parts run neural networks, on a gpu worker, with its models."""
    return _run_part(self, task_id, part, inference)


@celery.task(name="jobs.merge", acks_late=True)
def merge(task_id: int) -> dict[str, Any]:
    """Merge the partials of a task whose parts are all done into its result."""
    try:
        outcome = runner.merge(task_id)
    except Exception:
        log.exception("task %s could not be merged", task_id)
        runner.fail(task_id, "task_failed", f"the results of task {task_id} could not be merged; "
                                            "the worker log has the details")
        outcome = "failed"
    return {"task_id": task_id, "outcome": outcome}
