"""The linker task: the faces chosen by filters attached to a list, or faces made from the
chosen events and attached.

Without ``create_time__lt`` in the filters, it is set to the creation time of the task (and
stored in its body), so a part that runs again selects the same objects, whatever came since.

Everything a run writes has an id derived from the task: the list it creates and the faces it
makes from events (time-ordered by their event's time), so a split or a part delivered twice
finds its own list and faces instead of making second ones, and attaching twice changes nothing.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
from marshmallow import ValidationError, fields, validates_schema
from sqlalchemy.orm import Session

from app import settings
from app.attributes import service as attributes
from app.auth import Principal
from app.db import conflict_insert, session_scope
from app.errors import APIError
from app.events.models import Event, EventDescriptor
from app.faces import lists
from app.faces import service as faces
from app.faces.models import Face, FaceList, utcnow
from app.faces.schemas import USER_DATA
from app.handlers.processing import largest_face
from app.image_store import service as image_store
from app.schemas import StrictSchema
from app.scope import Scope, scoped
from app.tasks import objects, registry
from app.tasks.models import Task
from app.tasks.objects import id_ranges, in_range, key_of, selected
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from inference import descriptor_format as fmt

PART_SIZE = 1000
_NAMESPACE = uuid.UUID("0c8f6d2e-4b7a-4f1e-8d3c-6a5e9b2f7c10")


class ListAttributes(StrictSchema):
    user_data = fields.String(load_default="", validate=USER_DATA)


class ListTarget(StrictSchema):
    list_id = fields.UUID(metadata={"description": "an existing list of the account"})
    create_list = fields.Boolean(metadata={"description": "create a new list (1) instead"})
    attributes = fields.Nested(ListAttributes, metadata={"description": "of the new list"})

    @validates_schema
    def _one_list(self, data: dict[str, Any], **_: Any) -> None:
        if bool(data.get("list_id")) == bool(data.get("create_list")):
            raise ValidationError("give either list_id or create_list: 1")
        if "attributes" in data and not data.get("create_list"):
            raise ValidationError({"attributes": ["only for a list to create"]})

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"oneOf": [
            {"required": ["list_id"], "properties": {"create_list": {"enum": [False]}},
             "not": {"required": ["attributes"]}},
            {"required": ["create_list"], "properties": {"create_list": {"enum": [True]}},
             "not": {"required": ["list_id"]}},
        ]}


class LinkerSchema(objects.SelectionSchema):
    list = fields.Nested(ListTarget, required=True)


def prepare(content: dict[str, Any], now: datetime) -> dict[str, Any]:
    """``create_time__lt`` defaults to the task's creation time, written into the stored body."""
    filters = content.get("filters")
    if filters is None:
        filters = content["filters"] = {}
    if isinstance(filters, dict) and filters.get("create_time__lt") is None:
        filters["create_time__lt"] = now.isoformat()
    return content


def check(session: Session, principal: Principal, content: dict[str, Any]) -> None:
    objects.check(session, principal.scope, content)
    if content["list"].get("list_id"):
        faces.own_lists(session, principal.scope, [content["list"]["list_id"]])


def derived_id(moment_ms: int, *names: Any) -> uuid.UUID:
    """A time-ordered id (UUID 7 layout) of ``moment_ms`` whose other bits derive from ``names``:
    the same names give the same id."""
    digest = uuid.uuid5(_NAMESPACE, "/".join(map(str, names))).int
    value = ((moment_ms & ((1 << 48) - 1)) << 80) | (digest & ((1 << 80) - 1))
    value = (value & ~(0xF << 76)) | (0x7 << 76)
    value = (value & ~(0x3 << 62)) | (0x2 << 62)
    return uuid.UUID(int=value)


def _list_id(job: Job) -> uuid.UUID:
    given = job.content["list"].get("list_id")
    if given:
        return given
    with session_scope() as session:
        created = session.scalar(scoped(Task, job.scope, Task.create_time).where(Task.task_id == job.task_id))
    return derived_id(int(created.timestamp() * 1000), "task", job.task_id, "list")


def split(job: Job) -> list[dict[str, Any]]:
    list_id = _list_id(job)
    key = key_of(job.content["objects_type"])
    with session_scope() as session:
        if job.content["list"].get("create_list"):  # a split delivered twice finds it made
            now = utcnow()
            session.execute(conflict_insert(session, FaceList.__table__).on_conflict_do_nothing(), [{
                "list_id": list_id, "account_id": job.scope.owner, "create_time": now, "last_update_time": now,
                "user_data": (job.content["list"].get("attributes") or {}).get("user_data", "")}])
        return id_ranges(session, selected(session, job.scope, job.content, key), key, PART_SIZE)


def _batches(ids: list[Any]) -> Iterator[list[Any]]:
    size = settings.current().faces_batch_max
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _attach(job: Job, list_id: uuid.UUID, face_ids: list[uuid.UUID]) -> None:
    done = 0
    for batch in _batches(face_ids):
        with session_scope() as session:
            lists.change_faces(session, job.scope, list_id, "attach", batch)
        done += len(batch)
        job.progress(done, len(face_ids))


def _stored_sample(scope: Scope, detections: Any) -> list[str]:
    """The sample of an event's largest face, when the image store still has it."""
    found = [d for d in detections or () if d.get("type") == "face"]
    sample_id = largest_face(found).get("sample_id") if found else None
    if not sample_id:
        return []
    try:
        image_store.head(image_store.KINDS["face_sample"], scope, sample_id)
    except APIError as exc:
        if exc.kind == "object_not_found":
            return []
        raise
    return [str(sample_id)]


def _face_of(job: Job, list_id: uuid.UUID, version: int, row: Any) -> dict[str, Any]:
    """What ``faces.create_faces`` makes of an event: its descriptor, its largest face's sample and
    basic attributes, its external id and user data."""
    basic = (row.attributes or {}).get("basic_attributes")
    return {
        "face_id": derived_id(row.event_id.int >> 80, "task", job.task_id, "event", row.event_id),
        "event_id": row.event_id, "external_id": row.external_id, "user_data": row.user_data or "",
        "descriptors": [] if row.descriptor is None else [
            {"format": "raw", "version": version,
             "descriptor": fmt.encode_raw(np.frombuffer(row.descriptor, dtype="<f4"), version)}],
        "basic_attributes": attributes.stored_basic(basic) if basic else None,
        "sample_ids": _stored_sample(job.scope, row.detections), "list_ids": [list_id]}


def _faces_from_events(job: Job, list_id: uuid.UUID, bounds: dict[str, Any]) -> list[uuid.UUID]:
    version = settings.current().face_descriptor_version
    with session_scope() as session:
        query = (selected(session, job.scope, job.content, Event.event_id, Event.external_id, Event.user_data,
                          Event.attributes, Event.detections, EventDescriptor.descriptor)
                 .outerjoin(EventDescriptor, (EventDescriptor.event_id == Event.event_id)
                            & (EventDescriptor.version == version)))
        rows = session.execute(in_range(query, Event.event_id, bounds).order_by(Event.event_id)).all()
    items = [_face_of(job, list_id, version, row) for row in rows]
    ids = [item["face_id"] for item in items]
    for batch in _batches(items):
        with session_scope() as session:
            made = set(session.scalars(scoped(Face, job.scope, Face.face_id)
                                       .where(Face.face_id.in_([i["face_id"] for i in batch]))))
            new = [i for i in batch if i["face_id"] not in made]
            if new:
                faces.create_faces(session, job.scope, new)
        job.check_cancelled()
    _attach(job, list_id, ids)  # faces a run before made: attached already, or since detached
    return ids


def part(job: Job, bounds: dict[str, Any]) -> dict[str, Any]:
    list_id = _list_id(job)
    if job.content["objects_type"] == "events":
        ids = _faces_from_events(job, list_id, bounds)
    else:
        with session_scope() as session:
            query = in_range(selected(session, job.scope, job.content, Face.face_id), Face.face_id, bounds)
            ids = list(session.scalars(query.order_by(Face.face_id)))
        _attach(job, list_id, ids)
    return {"faces": [str(i) for i in ids]}


def merge(job: Job, partials: Iterator[Any]) -> Result:
    linked = [face_id for partial in partials for face_id in partial["faces"]]
    return Result({"list_id": str(_list_id(job)), "faces": linked, "faces_count": len(linked)})


registry.register(TaskType(
    "linker", LinkerSchema, split, part, merge, check=check, prepare=prepare,
    description="Attach the faces chosen by filters to a list (an existing one, or one created with "
                "`create_list`), or make faces of the chosen events and attach them. Without "
                "`create_time__lt` the filters end at the task's creation. The result names the list and "
                "the faces linked."))
