"""The garbage collector: faces, events, general events or descriptors deleted by filters, with
their samples (and events' stored source images) when asked.

A user's task deletes in its own account; an admin's acts on every account (or on the one its
``account_id`` filter names), and only an admin may delete descriptors of a model version. Faces,
events and general events need at least one filter: an empty body never means "everything".

Parts delete id ranges a batch at a time, each batch in its own transaction. Deleted faces go to
the matcher's change feed (``faces.delete_faces``); deleted events take their descriptors with
them and their hours of the hourly statistics are counted again from the events left, so
``event_stats_hourly`` keeps answering what the events would.
"""
from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate
from sqlalchemy import Row, Select, delete, func, insert, select
from sqlalchemy.orm import Session

from app import settings
from app.accounts.models import Account
from app.auth import Principal
from app.db import dialect_of, session_scope
from app.errors import APIError
from app.events import service as events
from app.events.models import NO_HANDLER, NO_SOURCE, Event, EventDescriptor, EventStatsHourly, GeneralEvent
from app.faces import changes
from app.faces import service as faces
from app.faces.models import Face, FaceDescriptor
from app.filters import conditions
from app.image_store import service as image_store
from app.schemas import StrictSchema
from app.scope import ALL_ACCOUNTS, Scope, scoped
from app.tasks import registry
from app.tasks.objects import id_ranges, in_range
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from app.tasks.schemas import TimeOrNow

PART_SIZE = 10_000
TARGETS = ("faces", "events", "general_events", "descriptors")


class GcFilters(StrictSchema):
    """Every target's filters; which apply to a target is :data:`ALLOWED` (and the OpenAPI rules)."""

    account_id = fields.UUID(metadata={"description": "admin: only this account (default: all of them); "
                                                      "a user may name only its own"})
    create_time__lt = TimeOrNow()
    create_time__gte = TimeOrNow(metadata={"description": "faces only"})
    end_time__lt = TimeOrNow(metadata={"description": "events and general events"})
    user_data = fields.String(validate=validate.Length(min=1, max=128),
                              metadata={"description": "faces only: substring of user_data"})
    list_id = fields.UUID(metadata={"description": "faces only: the faces of this list"})
    handler_id = fields.UUID(metadata={"description": "events only: made by this handler"})
    descriptor_version = fields.Integer(validate=validate.Range(min=1),
                                        metadata={"description": "descriptors only, and required there"})


ALLOWED = {"faces": {"account_id", "create_time__lt", "create_time__gte", "user_data", "list_id"},
           "events": {"account_id", "create_time__lt", "end_time__lt", "handler_id"},
           "general_events": {"account_id", "create_time__lt", "end_time__lt"},
           "descriptors": {"account_id", "descriptor_version"}}


def _target_rule(target: str) -> dict[str, Any]:
    others = sorted(set(GcFilters().fields) - ALLOWED[target])
    filters: dict[str, Any] = {"not": {"anyOf": [{"required": [name]} for name in others]}}
    if target == "descriptors":
        filters["required"] = ["descriptor_version"]
    else:
        filters["minProperties"] = 1
    return {"properties": {"target": {"enum": [target]}, "filters": filters}}


class GcSchema(StrictSchema):
    target = fields.String(required=True, validate=validate.OneOf(TARGETS))
    filters = fields.Nested(GcFilters, required=True, metadata={
        "description": "faces: create_time__lt, create_time__gte, user_data, list_id; events: create_time__lt, "
                       "end_time__lt, handler_id; general_events: create_time__lt, end_time__lt; descriptors: "
                       "descriptor_version; all: account_id. Every target but descriptors needs at least one"})
    remove_samples = fields.Boolean(load_default=False, metadata={"description": "also delete their samples"})
    remove_image_origins = fields.Boolean(load_default=False, metadata={
        "description": "events only: also delete their stored source images (image_origin_id) and thumbnails"})

    @post_load
    def _target_filters(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        target, given = data["target"], {k for k, v in data["filters"].items() if v is not None}
        wrong = sorted(given - ALLOWED[target])
        if wrong:
            raise ValidationError({"filters": {name: [f"not a filter of {target}"] for name in wrong}})
        if target == "descriptors" and "descriptor_version" not in given:
            raise ValidationError({"filters": {"descriptor_version": ["required for descriptors"]}})
        if not given:
            raise ValidationError({"filters": [f"{target}: give at least one filter (an empty filter would "
                                               "delete everything)"]})
        if data["remove_image_origins"] and target != "events":
            raise ValidationError({"remove_image_origins": [f"only events have source images, not {target}"]})
        return data

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"oneOf": [_target_rule(target) for target in TARGETS]}


def check(session: Session, principal: Principal, content: dict[str, Any]) -> None:
    if principal.account_type == "admin":
        return
    account_id = content["filters"].get("account_id")
    if content["target"] == "descriptors":
        raise APIError("admin_only", "only an admin account may delete the descriptors of a model version")
    if account_id is not None and account_id != principal.account_id:
        raise APIError("admin_only", "only an admin account may delete other accounts' objects")
    if content["filters"].get("list_id"):
        faces.own_lists(session, principal.scope, [content["filters"]["list_id"]])


def _scope(job: Job) -> Scope:
    """Whose objects the task deletes: the owner's, or for an admin every account's (or the one named)."""
    account_id = job.content["filters"].get("account_id")
    with session_scope() as session:
        admin = session.scalar(select(Account.account_type).where(Account.account_id == job.account_id)) == "admin"
    if not admin:
        return job.scope
    return ALL_ACCOUNTS if account_id is None else Scope.of(account_id)


# ---- what each target selects: (query of its columns, key) ------------------------------------------
def _faces(session: Session, scope: Scope, f: Mapping[str, Any], *columns: Any) -> Select[Any]:
    wanted = {k: f.get(k) for k in ("create_time__lt", "create_time__gte", "user_data", "list_id")}
    return faces.filtered(scoped(Face, scope, *columns), wanted)


def _events(session: Session, scope: Scope, f: Mapping[str, Any], *columns: Any) -> Select[Any]:
    wanted = {"create_time__lt": f.get("create_time__lt"), "end_time__lt": f.get("end_time__lt"),
              "handler_ids": [f["handler_id"]] if f.get("handler_id") else None}
    return scoped(Event, scope, *columns).where(*conditions(events.EVENTS.filters, wanted, dialect_of(session)))


def _general_events(session: Session, scope: Scope, f: Mapping[str, Any], *columns: Any) -> Select[Any]:
    wanted = {"create_time__lt": f.get("create_time__lt"), "end_time__lt": f.get("end_time__lt")}
    return scoped(GeneralEvent, scope, *columns).where(*conditions(events.GENERAL_EVENTS.filters, wanted))


def _face_descriptors(session: Session, scope: Scope, f: Mapping[str, Any], *columns: Any) -> Select[Any]:
    return (scoped(Face, scope, *columns).join(FaceDescriptor, FaceDescriptor.face_id == Face.face_id)
            .where(FaceDescriptor.version == f["descriptor_version"]))


def _event_descriptors(session: Session, scope: Scope, f: Mapping[str, Any], *columns: Any) -> Select[Any]:
    return scoped(EventDescriptor, scope, *columns).where(EventDescriptor.version == f["descriptor_version"])


SELECTIONS = {"faces": (_faces, Face.face_id), "events": (_events, Event.event_id),
              "general_events": (_general_events, GeneralEvent.event_id),
              "face_descriptors": (_face_descriptors, Face.face_id),
              "event_descriptors": (_event_descriptors, EventDescriptor.event_id)}


def split(job: Job) -> list[dict[str, Any]]:
    target = job.content["target"]
    kinds = ("face_descriptors", "event_descriptors") if target == "descriptors" else (target,)
    scope = _scope(job)
    out = []
    with session_scope() as session:
        for kind in kinds:
            select_, key = SELECTIONS[kind]
            query = select_(session, scope, job.content["filters"], key)
            out += [{"kind": kind, **bounds} for bounds in id_ranges(session, query, key, PART_SIZE)]
    return out


def _batches(job: Job, scope: Scope, kind: str, bounds: Mapping[str, Any],
             *columns: Any) -> Iterator[list[Row[Any]]]:
    """The range's rows (the key first), a batch at a time, each read after the one before was
    handled: the next batch starts after the last key seen, so rows that stay never loop."""
    select_, key = SELECTIONS[kind]
    batch = settings.current().faces_batch_max
    last: uuid.UUID | None = None
    done = 0
    while True:
        with session_scope() as session:
            query = in_range(select_(session, scope, job.content["filters"], key, *columns), key, bounds)
            if last is not None:
                query = query.where(key > last)
            rows = session.execute(query.order_by(key).limit(batch)).all()
        if not rows:
            return
        yield rows
        last, done = rows[-1][0], done + len(rows)
        job.progress(done, max(done, PART_SIZE))


def _by_account(rows: list[Row[Any]]) -> dict[uuid.UUID, list[Row[Any]]]:
    out: dict[uuid.UUID, list[Row[Any]]] = defaultdict(list)
    for row in rows:
        out[row.account_id].append(row)
    return out


def _remove_stored(scope: Scope, objects: list[tuple[str, str]]) -> int:
    """Delete (image store kind, object id) pairs, a store batch at a time; how many were there."""
    by_kind: dict[str, list[str]] = defaultdict(list)
    for kind, object_id in objects:
        by_kind[kind].append(object_id)
    removed = 0
    for kind, ids in by_kind.items():
        for start in range(0, len(ids), image_store.BATCH_MAX):
            removed += len(image_store.delete_many(image_store.KINDS[kind], scope,
                                                   ids[start:start + image_store.BATCH_MAX]))
    return removed


def _event_samples(detections: Any) -> list[tuple[str, str]]:
    return [(image_store.SAMPLE_KINDS[d["type"]], str(d["sample_id"])) for d in detections or ()
            if d.get("sample_id") and d.get("type") in image_store.SAMPLE_KINDS]


def _recount_hours(session: Session, hours: set[tuple[uuid.UUID, datetime]]) -> None:
    """Count the hourly statistics of these (account, hour) keys again from the events left: one
    grouped read of each hour's index range, whatever share of it was deleted."""
    for account_id, hour in sorted(hours):
        session.execute(Scope.of(account_id).filter(delete(EventStatsHourly), EventStatsHourly)  # type: ignore[arg-type]
                        .where(EventStatsHourly.create_time == hour))
        similarity = Event.top_similarity
        groups = session.execute(
            scoped(Event, Scope.of(account_id), Event.handler_id, Event.source, func.count(), func.count(similarity),
                   func.coalesce(func.sum(similarity), 0.0), func.min(similarity), func.max(similarity))
            .where(Event.create_time >= hour, Event.create_time < hour + timedelta(hours=1))
            .group_by(Event.handler_id, Event.source)).all()
        if groups:
            session.execute(insert(EventStatsHourly.__table__), [
                {"account_id": account_id, "create_time": hour, "handler_id": handler or NO_HANDLER,
                 "source": NO_SOURCE if source is None else source, "events": n, "similarity_count": counted,
                 "similarity_sum": total, "similarity_min": least, "similarity_max": most}
                for handler, source, n, counted, total, least, most in groups])


def _counts(job: Job, deleted: int, samples: int, origins: int = 0) -> dict[str, int]:
    return {"deleted": deleted, **({"samples_deleted": samples} if job.content["remove_samples"] else {}),
            **({"image_origins_deleted": origins} if job.content["remove_image_origins"] else {})}


def _delete_faces(job: Job, scope: Scope, bounds: Mapping[str, Any]) -> dict[str, int]:
    deleted = samples = 0
    for rows in _batches(job, scope, "faces", bounds, Face.account_id, Face.sample_ids):
        for account_id, own in _by_account(rows).items():
            with session_scope() as session:
                faces.delete_faces(session, Scope.of(account_id), [r.face_id for r in own])
        deleted += len(rows)
        if job.content["remove_samples"]:
            samples += _remove_stored(scope, [("face_sample", str(s)) for r in rows for s in r.sample_ids or ()])
    return _counts(job, deleted, samples)


def _delete_events(job: Job, scope: Scope, bounds: Mapping[str, Any]) -> dict[str, int]:
    deleted = samples = origins = 0
    for rows in _batches(job, scope, "events", bounds, Event.account_id, Event.create_time, Event.detections,
                         Event.image_origin_id):
        ids = [r.event_id for r in rows]
        with session_scope() as session:
            session.execute(delete(EventDescriptor).where(EventDescriptor.event_id.in_(ids)))
            session.execute(delete(Event).where(Event.event_id.in_(ids)))
            _recount_hours(session, {(r.account_id, events.hour_of(r.create_time)) for r in rows})
        deleted += len(rows)
        if job.content["remove_samples"]:
            samples += _remove_stored(scope, [s for r in rows for s in _event_samples(r.detections)])
        if job.content["remove_image_origins"]:  # the "image" kind takes the thumbnails with them
            origins += _remove_stored(scope, [("image", str(r.image_origin_id)) for r in rows if r.image_origin_id])
    return _counts(job, deleted, samples, origins)


def _delete_general_events(job: Job, scope: Scope, bounds: Mapping[str, Any]) -> dict[str, int]:
    deleted = 0
    for rows in _batches(job, scope, "general_events", bounds):
        with session_scope() as session:
            session.execute(delete(GeneralEvent).where(GeneralEvent.event_id.in_([r[0] for r in rows])))
        deleted += len(rows)
    return {"deleted": deleted}


def _delete_face_descriptors(job: Job, scope: Scope, bounds: Mapping[str, Any]) -> dict[str, int]:
    version, deleted = job.content["filters"]["descriptor_version"], 0
    for rows in _batches(job, scope, "face_descriptors", bounds, Face.account_id):
        for account_id, own in _by_account(rows).items():
            ids = [r.face_id for r in own]
            with session_scope() as session:
                session.execute(delete(FaceDescriptor).where(FaceDescriptor.face_id.in_(ids),
                                                             FaceDescriptor.version == version))
                changes.record(session, "descriptor_removed", account_id, face_ids=ids, version=version)
        deleted += len(rows)
    return {"deleted": deleted}


def _delete_event_descriptors(job: Job, scope: Scope, bounds: Mapping[str, Any]) -> dict[str, int]:
    version, deleted = job.content["filters"]["descriptor_version"], 0
    for rows in _batches(job, scope, "event_descriptors", bounds):
        with session_scope() as session:
            session.execute(delete(EventDescriptor).where(EventDescriptor.event_id.in_([r[0] for r in rows]),
                                                          EventDescriptor.version == version))
        deleted += len(rows)
    return {"deleted": deleted}


DELETERS = {"faces": _delete_faces, "events": _delete_events, "general_events": _delete_general_events,
            "face_descriptors": _delete_face_descriptors, "event_descriptors": _delete_event_descriptors}


def part(job: Job, content: dict[str, Any]) -> dict[str, int]:
    return DELETERS[content["kind"]](job, _scope(job), content)


def merge(job: Job, partials: Iterator[Any]) -> Result:
    total = _counts(job, 0, 0) if job.content["target"] in ("faces", "events") else {"deleted": 0}
    for partial in partials:
        for name, n in partial.items():
            total[name] = total.get(name, 0) + n
    return Result(total)


registry.register(TaskType(
    "gc", GcSchema, split, part, merge, check=check,
    description="Delete faces, events, general events (at least one filter each) or, for admin accounts, the "
                "descriptors of a model version; an admin account's task acts on every account. Samples go "
                "too with `remove_samples`, events' stored source images with `remove_image_origins`. The result "
                "counts what was deleted."))
