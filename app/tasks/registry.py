"""Task types: one registry entry per type, so adding a type is one module in ``app/tasks/types``.

As Redash registers its destinations, a type names itself, gives the marshmallow schema of its
content and says whether it is usable here (``enabled``). The runner (``app.tasks.runner``)
calls its three functions, each on a worker:

- ``split(job) -> [part content, ...]``: the subtasks, small JSON each (id ranges, page numbers,
  file names), saved as subtask rows before any runs;
- ``part(job, content) -> partial``: one subtask's work; its JSON-able return value is saved
  on the subtask row in the transaction that marks it done (the checkpoint). Large partials go to
  the image store with ``job.put_blob``;
- ``merge(job, partials) -> Result``: run once, by the worker that finished the last part; its
  result is stored in the ``task-result`` bucket.

Every one of them may run twice (a redelivered message after a worker died), so each writes
under ids derived from the task and part, never from a fresh random id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterator

from marshmallow import Schema

if TYPE_CHECKING:
    from app.tasks.runner import Job


@dataclass(frozen=True)
class Result:
    """What a task produced: JSON (``data`` a dict or list), or a file (``data`` bytes with its
    content type and download name)."""

    data: Any
    content_type: str = "application/json"
    filename: str | None = None


@dataclass(frozen=True)
class TaskType:
    name: str
    schema: type[Schema]
    split: Callable[[Job], list[dict[str, Any]]]
    part: Callable[[Job, dict[str, Any]], Any]
    merge: Callable[[Job, Iterator[Any]], Result]
    description: str = ""
    # "gpu" for parts that run neural networks (the estimator); the split and merge run on "cpu".
    queue: str = "cpu"
    enabled: Callable[[], bool] = lambda: True
    # Checks at creation that need the caller or the database (ids exist, admin-only targets):
    # check(session, principal, content) raises APIError.
    check: Callable[[Any, Any, dict[str, Any]], None] | None = None
    # Why a body cannot be scheduled (a one-off ZIP archive), or None.
    unschedulable: Callable[[dict[str, Any]], str | None] = lambda content: None
    # Content fields holding secrets (dotted paths), encrypted at rest (app.tasks.secrets).
    secrets: tuple[str, ...] = field(default_factory=tuple)
    # prepare(content JSON, now) -> content JSON: defaults that depend on the creation time (the
    # linker's create_time__lt), written into the stored body so a rerun selects the same objects.
    prepare: Callable[[dict[str, Any], datetime], dict[str, Any]] | None = None


_TYPES: dict[str, TaskType] = {}


def register(task_type: TaskType) -> TaskType:
    if task_type.name in _TYPES:
        raise ValueError(f"task type {task_type.name} registered twice")
    _TYPES[task_type.name] = task_type
    return task_type


def types() -> dict[str, TaskType]:
    """Every registered type, by name (importing ``app.tasks.types`` registers them all)."""
    import app.tasks.types  # noqa: F401

    return dict(_TYPES)


def get(name: str) -> TaskType:
    known = types()
    if name not in known:
        raise KeyError(name)
    return known[name]
