"""Additional extraction: what the faces or events chosen by filters lack, extracted again from
their stored samples: the descriptor of the default model version (``face_descriptor_version``),
or the basic attributes.

A part runs on a gpu worker: it reads its objects' samples and hands them to the worker's batcher
(``tasks.inference``) as aligned face samples, the same path /sdk takes for samples, so its
images share forward passes with other requests and no second model is loaded. An object without
a stored sample cannot be extracted: it is reported (``object_without_sample``) and skipped.

New face descriptors go to the matcher's change feed, so the lists' caches learn them.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
from marshmallow import fields, validate
from sqlalchemy import Select, String, bindparam, cast, exists, func, or_, select, update
from sqlalchemy.orm import Session

from app import settings
from app.attributes import service as attributes
from app.db import conflict_insert, dialect_of, session_scope
from app.errors import APIError
from app.events import service as events
from app.events.models import Event, EventDescriptor
from app.faces import changes
from app.faces import service as faces
from app.faces.models import Face, FaceDescriptor
from app.filters import json_value
from app.image_store import service as image_store
from app.scope import Scope, scoped
from app.tasks import objects, registry
from app.tasks.objects import id_ranges, in_range, key_of, selected
from app.tasks.registry import Result, TaskType
from app.tasks.runner import Job
from inference import images as image_check

PART_SIZE = 256
BATCH = 32  # samples decoded and analysed at a time, between progress reports
TARGETS = ("face_descriptor", "basic_attributes")


class AdditionalExtractSchema(objects.SelectionSchema):
    extraction_target = fields.String(required=True, validate=validate.OneOf(TARGETS), metadata={
        "description": "face_descriptor: the descriptor of the default version (setting face_descriptor_version); "
                       "basic_attributes: age and gender"})


def _lacking(session: Session, scope: Scope, content: dict[str, Any], *columns: Any) -> Select[Any]:
    """``columns`` of the selected objects that lack the extraction target."""
    query = selected(session, scope, content, *columns)
    version = settings.current().face_descriptor_version
    faces_ = content["objects_type"] == "faces"
    if content["extraction_target"] == "face_descriptor":
        held = (select(FaceDescriptor.face_id).where(FaceDescriptor.face_id == Face.face_id,
                                                     FaceDescriptor.version == version) if faces_ else
                scoped(EventDescriptor, scope, EventDescriptor.event_id)
                .where(EventDescriptor.event_id == Event.event_id, EventDescriptor.version == version))
        return query.where(~exists(held))
    if faces_:  # a face without them holds SQL NULL or JSON null
        return query.where(or_(Face.basic_attributes.is_(None), cast(Face.basic_attributes, String) == "null"))
    age = json_value(Event.attributes, "attributes.basic_attributes.age:numeric", dialect_of(session))
    return query.where(age.is_(None))


def split(job: Job) -> list[dict[str, Any]]:
    key = key_of(job.content["objects_type"])
    with session_scope() as session:
        return id_ranges(session, _lacking(session, job.scope, job.content, key), key, PART_SIZE)


def _sample_id(objects_type: str, value: Any) -> str | None:
    """A face's first sample; an event's largest face's."""
    if objects_type == "faces":
        return str(value[0]) if value else None
    found = [d for d in value or () if d.get("type") == "face" and d.get("sample_id")]
    if not found:
        return None
    return str(max(found, key=lambda d: (d.get("detection") or {}).get("rect", {}).get("width", 0.0))["sample_id"])


def _samples(job: Job, rows: list[Any]) -> Iterator[tuple[Any, np.ndarray]]:
    """(object row, decoded sample) of the rows whose sample can be read; the others are reported."""
    label = job.content["objects_type"][:-1]
    for row in rows:
        sample_id = _sample_id(job.content["objects_type"], row[1])
        if sample_id is None:
            job.error("object_without_sample", f"{label} {row[0]} has no stored sample", row[0])
            continue
        try:
            data = image_store.load_sample("face", job.scope, sample_id)
            s = settings.current()
            with image_store.image_errors(sample_id):
                image = image_check.decode_image(data, s.inference_max_image_pixels, s.image_decode_budget_mb)
        except APIError as exc:
            if exc.kind not in ("object_not_found", "bad_image", "image_format_not_allowed", "image_too_large"):
                raise
            job.error("object_without_sample", f"{label} {row[0]}: sample {sample_id} cannot be read ({exc.detail})",
                      row[0])
            continue
        yield row, image


def _analysed(job: Job, images: list[np.ndarray]) -> list[Any]:
    """What the models find in the samples: through the gpu worker's batcher, with its model switches."""
    version = settings.current().face_descriptor_version
    options = ({"detect_face": 1, "extract_descriptor": 1, "descriptor_version": version, "sample": True}
               if job.content["extraction_target"] == "face_descriptor" else
               {"detect_face": 1, "estimate_basic_attributes": 1, "sample": True})
    return job.models.analyze_images([(image, options) for image in images])


def _store_face_descriptors(session: Session, job: Job, found: list[tuple[uuid.UUID, bytes]]) -> None:
    version = settings.current().face_descriptor_version
    ids = [face_id for face_id, _ in found]
    # Faces that get their first descriptor count towards the licence's face limit.
    first = session.scalar(scoped(Face, job.scope, func.count()).where(Face.face_id.in_(ids), ~exists(
        select(FaceDescriptor.face_id).where(FaceDescriptor.face_id == Face.face_id))))
    faces.check_face_limit(session, first or 0)
    added = list(session.scalars(conflict_insert(session, FaceDescriptor.__table__).on_conflict_do_nothing()
                                 .returning(FaceDescriptor.face_id),
                                 [{"face_id": f, "version": version, "descriptor": d} for f, d in found]))
    changes.record(session, "descriptor_added", job.scope.owner, face_ids=sorted(added), version=version)


def _store(job: Job, pairs: list[tuple[Any, Any]]) -> None:
    """Write what was extracted of each (object row, analysis) in one transaction."""
    objects_type, version = job.content["objects_type"], settings.current().face_descriptor_version
    with session_scope() as session:
        if job.content["extraction_target"] == "face_descriptor":
            found = [(row[0], a.descriptors[0].astype("<f4").tobytes()) for row, a in pairs]
            if objects_type == "faces":
                _store_face_descriptors(session, job, found)
            else:
                events.save_descriptors(session, job.scope, [(i, version, d) for i, d in found])
        elif objects_type == "faces":
            session.execute(update(Face.__table__).where(Face.__table__.c.face_id == bindparam("id")),
                            [{"id": row[0], "basic_attributes": attributes.stored_basic(a.faces[0]["basic_attributes"])}
                             for row, a in pairs])
        else:
            session.execute(update(Event.__table__).where(Event.__table__.c.event_id == bindparam("id")),
                            [{"id": row[0], "attributes": {**(row[2] or {}),
                                                           "basic_attributes": a.faces[0]["basic_attributes"]}}
                             for row, a in pairs])


def part(job: Job, bounds: dict[str, Any]) -> dict[str, int]:
    objects_type = job.content["objects_type"]
    key = key_of(objects_type)
    columns = (Face.sample_ids,) if objects_type == "faces" else (Event.detections, Event.attributes)
    with session_scope() as session:
        rows = session.execute(in_range(_lacking(session, job.scope, job.content, key, *columns), key, bounds)
                               .order_by(key)).all()
    extracted = 0
    for start in range(0, len(rows), BATCH):
        readable = list(_samples(job, rows[start:start + BATCH]))
        if readable:
            found = _analysed(job, [image for _, image in readable])
            _store(job, [(row, a) for (row, _), a in zip(readable, found)])
            extracted += len(readable)
        job.progress(min(start + BATCH, len(rows)), len(rows))
    return {"extracted": extracted, "skipped": len(rows) - extracted}


def merge(job: Job, partials: Iterator[Any]) -> Result:
    total = {"extracted": 0, "skipped": 0}
    for partial in partials:
        total = {name: total[name] + partial[name] for name in total}
    return Result(total)


registry.register(TaskType(
    "additional_extract", AdditionalExtractSchema, split, part, merge, queue="gpu",
    check=lambda session, principal, content: objects.check(session, principal.scope, content),
    description="Extract what the faces or events chosen by filters lack (the descriptor of the default version, "
                "or basic attributes) from their stored samples. Objects without a sample are reported as "
                "errors. The result counts the objects extracted and skipped."))
