"""A task type for testing the framework alone: it counts to ``n`` in ``parts`` parts, sleeping
``sleep_s`` per item, and reports every ``bad`` item as an error. Registered when imported, before
the app is created (tests/tasks/conftest.py), so ``POST /tasks/counting`` exists in tests only."""
from __future__ import annotations

import time
from typing import Any, Iterator

from marshmallow import fields, validate

from app.schemas import StrictSchema
from app.tasks import registry
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from app.tasks.schemas import TimeOrNow

RUNS: dict[tuple[int, int], int] = {}  # (task_id, part) -> how often the part's body ran
SECRETS: dict[int, str] = {}  # task_id -> the secret its parts were handed (decrypted on the worker)


class CountingSchema(StrictSchema):
    n = fields.Integer(required=True, validate=validate.Range(min=0, max=10_000))
    parts = fields.Integer(load_default=2, validate=validate.Range(min=1, max=100))
    sleep_s = fields.Float(load_default=0.0)
    bad = fields.List(fields.Integer(), load_default=list)
    crash_part = fields.Integer(load_default=-1)
    # What schedules and secrets are tested with: a time filter (now-times resolve at creation)
    # and a secret (sealed at rest).
    create_time__gte = TimeOrNow()
    secret = fields.String()


def split(job: Job) -> list[dict[str, Any]]:
    n, parts = job.content["n"], job.content["parts"]
    bounds = [n * i // parts for i in range(parts + 1)]
    return [{"start": a, "stop": b} for a, b in zip(bounds, bounds[1:]) if b > a]


def part(job: Job, content: dict[str, Any]) -> dict[str, Any]:
    RUNS[job.task_id, job.part] = RUNS.get((job.task_id, job.part), 0) + 1
    if "secret" in job.content:
        SECRETS[job.task_id] = job.content["secret"]
    if job.part == job.content["crash_part"]:
        raise RuntimeError("the part crashed on purpose")
    items = range(content["start"], content["stop"])
    for done, item in enumerate(items):
        if item in job.content["bad"]:
            job.error("bad_request", f"item {item} is bad", item)
        time.sleep(job.content["sleep_s"])
        job.progress(done + 1, len(items))
    return {"sum": sum(items), "count": len(items)}


def merge(job: Job, partials: Iterator[Any]) -> Result:
    total = count = 0
    for p in partials:
        total, count = total + p["sum"], count + p["count"]
    return Result({"sum": total, "count": count})


if "counting" not in registry._TYPES:
    registry.register(TaskType("counting", CountingSchema, split, part, merge, description="test type",
                               secrets=("secret",)))
