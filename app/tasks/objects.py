"""The objects a task works on: faces or events chosen by the filters of their own resource.

A selection is ``{"objects_type": "faces" | "events", "filters": {...}}`` with the filters of
``GET /faces`` or of ``GET /events`` (as a statistics body takes them: arrays or comma-separated
text, ``meta.*`` paths), always within the task owner's account: ``account_id`` is no filter here.

Work is split by id ranges: both ids are time-ordered, so ``[gte, lt)`` ranges of about ``size``
objects each are read from the primary key's order, and a part rereads its own range with the same
filters (objects created after the split that fall in a range simply join it).
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from marshmallow import ValidationError, fields, post_load, validate
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app import settings
from app.db import dialect_of, session_scope
from app.events import service as events
from app.events.models import Event, EventDescriptor
from app.events.schemas import MAX_FILTER_IDS, EventStatsFilters, ListOrText
from app.faces import service as faces
from app.faces.models import Face, FaceDescriptor
from app.faces.schemas import EXTERNAL_ID, FaceFilterArgs
from app.filters import conditions
from app.matching.service import descriptor_chunks
from app.schemas import StrictSchema
from app.scope import Scope, scoped
from app.tasks.runner import Job

OBJECTS_TYPES = ("faces", "events")
Range = dict[str, str | None]  # {"gte": id or None, "lt": id or None}: what a part's content carries


class FaceBodyFilters(FaceFilterArgs):
    """The face filters in a JSON body: id lists as arrays (or comma-separated text, as in a query)."""

    face_ids = ListOrText(fields.UUID(), validate=validate.Length(max=MAX_FILTER_IDS))
    external_ids = ListOrText(fields.String(validate=EXTERNAL_ID), validate=validate.Length(max=MAX_FILTER_IDS))


FILTER_SCHEMAS = {"faces": FaceBodyFilters, "events": EventStatsFilters}


class SelectionSchema(StrictSchema):
    objects_type = fields.String(required=True, validate=validate.OneOf(OBJECTS_TYPES))
    filters = fields.Dict(keys=fields.String(), load_default=dict,
                          metadata={"description": "the filters of GET /faces or GET /events (by `objects_type`), "
                                                   "within the task owner's account (no `account_id`)"})

    @post_load
    def _typed_filters(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        schema = FILTER_SCHEMAS[data["objects_type"]](exclude=("account_id",))
        try:
            data["filters"] = schema.load(data["filters"])
        except ValidationError as exc:
            raise ValidationError({"filters": exc.messages}) from None
        return data


def key_of(objects_type: str) -> Any:
    """The id column of the objects: time-ordered, what ranges split by."""
    return Face.face_id if objects_type == "faces" else Event.event_id


def selected(session: Session, scope: Scope, selection: Mapping[str, Any], *columns: Any) -> Select[Any]:
    """``columns`` of every object the selection's filters name, with a descriptor or without."""
    filters = selection["filters"]
    if selection["objects_type"] == "faces":
        return faces.filtered(scoped(Face, scope, *columns), filters)
    return scoped(Event, scope, *columns).where(*conditions(events.EVENTS.filters, filters, dialect_of(session)))


def described(session: Session, scope: Scope, selection: Mapping[str, Any], *columns: Any) -> Select[Any]:
    """:func:`selected` narrowed to the objects with a descriptor of the default version; ``columns``
    may name the descriptor (``FaceDescriptor.descriptor`` or ``EventDescriptor.descriptor``)."""
    version = settings.current().face_descriptor_version
    query = selected(session, scope, selection, *columns)
    if selection["objects_type"] == "faces":
        return query.join(FaceDescriptor, (FaceDescriptor.face_id == Face.face_id) & (FaceDescriptor.version == version))
    return query.join(EventDescriptor,
                      (EventDescriptor.event_id == Event.event_id) & (EventDescriptor.version == version))


def in_range(query: Select[Any], key: Any, bounds: Mapping[str, Any]) -> Select[Any]:
    """``query`` narrowed to ``key`` in ``[gte, lt)`` (an absent bound: open)."""
    if bounds.get("gte"):
        query = query.where(key >= uuid.UUID(bounds["gte"]))
    if bounds.get("lt"):
        query = query.where(key < uuid.UUID(bounds["lt"]))
    return query


def check(session: Session, scope: Scope, selection: Mapping[str, Any]) -> None:
    """Compile the selection's filters (a bad JSON path is a 400 at creation, not a failed part)."""
    selected(session, scope, selection, key_of(selection["objects_type"]))


def id_ranges(session: Session, query: Select[Any], key: Any, size: int) -> list[Range]:
    """Consecutive ``key`` ranges of about ``size`` rows of ``query`` each, covering all of them
    (none when it has no rows); the first is open below, the last above."""
    numbered = query.with_only_columns(key.label("id"), func.row_number().over(order_by=key).label("n")).subquery()
    starts = [str(i) for i in session.scalars(select(numbered.c.id).where((numbered.c.n - 1) % size == 0)
                                              .order_by(numbered.c.id))]
    if not starts:
        return []
    bounds: list[str | None] = [None, *starts[1:], None]
    return [{"gte": a, "lt": b} for a, b in zip(bounds, bounds[1:])]


def described_ranges(session: Session, scope: Scope, selection: Mapping[str, Any], size: int) -> list[Range]:
    """:func:`id_ranges` of the selected objects with descriptors."""
    key = key_of(selection["objects_type"])
    return id_ranges(session, described(session, scope, selection, key), key, size)


def descriptors(session: Session, scope: Scope, selection: Mapping[str, Any],
                bounds: Mapping[str, Any] | None = None) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, float32 descriptors) of the selected objects in ``bounds``, a chunk at a time, in id order."""
    objects_type = selection["objects_type"]
    key = key_of(objects_type)
    column = FaceDescriptor.descriptor if objects_type == "faces" else EventDescriptor.descriptor
    query = in_range(described(session, scope, selection, key, column), key, bounds or {}).order_by(key)
    return descriptor_chunks(session, query)


def load(session: Session, scope: Scope, selection: Mapping[str, Any],
         bounds: Mapping[str, Any] | None = None) -> tuple[list[str], np.ndarray]:
    """All of :func:`descriptors` at once: for a part's own range, which holds about one chunk."""
    ids: list[str] = []
    blocks: list[np.ndarray] = []
    for chunk_ids, chunk in descriptors(session, scope, selection, bounds):
        ids += chunk_ids
        blocks.append(chunk)
    dim = blocks[0].shape[1] if blocks else 0
    return ids, np.concatenate(blocks) if blocks else np.empty((0, dim), dtype=np.float32)


def report_missing(job: Job, selection: Mapping[str, Any]) -> None:
    """Record an error for each id the selection lists (``face_ids``, ``event_ids``) that takes no
    part: missing, another account's, outside the other filters, or without a descriptor."""
    objects_type = selection["objects_type"]
    listed = [str(i) for i in selection["filters"].get(f"{objects_type[:-1]}_ids") or ()]
    if not listed:
        return
    key = key_of(objects_type)
    with session_scope() as session:
        found = {str(i) for i in session.scalars(described(session, job.scope, selection, key))}
    for i in listed:
        if i not in found:
            job.error("objects_not_found", f"{objects_type[:-1]} {i} not found, or without a descriptor of the "
                                           "default version", i)


def face_descriptors(session: Session, scope: Scope, face_ids: Sequence[str]) -> dict[str, np.ndarray]:
    """The default-version descriptors of those of ``face_ids`` that exist in ``scope`` and have one."""
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(face_ids), MAX_FILTER_IDS):
        selection = {"objects_type": "faces", "filters": {"face_ids": [uuid.UUID(i) for i in
                                                                       face_ids[start:start + MAX_FILTER_IDS]]}}
        for ids, chunk in descriptors(session, scope, selection):
            found.update(zip(ids, chunk))
    return found
