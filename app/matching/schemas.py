"""Matching requests and answers: references, candidate filters, raw descriptors."""
from __future__ import annotations

import uuid
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app.attributes.schemas import DescriptorInSchema, descriptor_rules
from app.events.schemas import EventStatsFilters
from app.faces.schemas import EXTERNAL_ID, MAX_FILTER_IDS, USER_DATA
from app.matching.service import CANDIDATE_SOURCES, REFERENCE_TYPES
from app.schemas import INT32, SettingMax, SettingMaxItems, StrictSchema
from inference import descriptor_format as fmt

CLIENT_ID = validate.Length(min=1, max=64)


class _KnownType:
    """One of the registered reference types, read when checked (types may register after this
    module loads); apispec shows ``choices`` as the enum."""

    @property
    def choices(self) -> list[str]:
        return sorted(REFERENCE_TYPES)

    def __call__(self, value: str) -> str:
        if value not in REFERENCE_TYPES:
            raise ValidationError(f"unknown type; one of {self.choices}")
        return value


class ReferenceSchema(StrictSchema):
    """A face, a temporary attribute or a descriptor given inline (more types register in
    ``app.matching.service``)."""

    type = fields.String(required=True, validate=_KnownType(),
                         metadata={"description": "face, event, attribute or descriptor"})
    id = fields.String(validate=CLIENT_ID, metadata={
        "description": "face, event or attribute id; for a descriptor, the name the answer uses (default: its "
                       "position)"})
    version = fields.Integer(load_default=None, validate=INT32,
                             metadata={"enum": sorted(fmt.DESCRIPTOR_LENGTHS),
                                       "description": "descriptor version (default: the current model; "
                                                      "sdk descriptors carry their own)"})
    descriptor = fields.String(validate=validate.Length(min=1, max=65536),
                               metadata={"description": "type descriptor: the descriptor, base64"})
    format = fields.String(validate=validate.OneOf(("sdk", "raw")),
                           metadata={"description": "type descriptor: sdk (default) or raw"})

    @validates_schema
    def _shape(self, data: dict[str, Any], **_: Any) -> None:
        if data["type"] == "descriptor":
            if not data.get("descriptor"):
                raise ValidationError("required for type descriptor", "descriptor")
            return
        for name in ("descriptor", "format"):
            if name in data:
                raise ValidationError(f"only for type descriptor, not {data['type']}", name)
        try:
            uuid.UUID(data.get("id") or "")
        except ValueError:
            raise ValidationError(f"a {data['type']} reference needs its id (a UUID)", "id") from None

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        by_id = sorted(set(REFERENCE_TYPES) - {"descriptor"})
        return {"allOf": [descriptor_rules(), {"oneOf": [
            {"properties": {"type": {"enum": ["descriptor"]}}, "required": ["descriptor"]},
            {"properties": {"type": {"enum": by_id}, "id": {"format": "uuid"}}, "required": ["id"],
             "not": {"anyOf": [{"required": ["descriptor"]}, {"required": ["format"]}]}},
        ]}]}


class FaceFiltersSchema(StrictSchema):
    list_id = fields.UUID(metadata={"description": "faces attached to this list (answered from the list cache "
                                                   "when it is the only filter)"})
    face_ids = fields.List(fields.UUID(), validate=validate.Length(max=MAX_FILTER_IDS))
    external_ids = fields.List(fields.String(validate=EXTERNAL_ID), validate=validate.Length(max=MAX_FILTER_IDS))
    user_data = fields.String(validate=USER_DATA, metadata={"description": "substring of user_data"})
    create_time__gte = fields.AwareDateTime()
    create_time__lt = fields.AwareDateTime()
    face_id__gte = fields.UUID()
    face_id__lt = fields.UUID()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's faces "
                                                      "(default: every account they may read)"})


class CandidatesSchema(StrictSchema):
    """Faces by ``filters``, or events by ``event_filters`` (the filters of ``GET /events``, given as
    in a statistics body: lists as arrays, JSON paths included). The answer carries ``filters``
    either way: the event filters loaded."""

    source = fields.String(load_default="faces", validate=validate.OneOf(sorted(CANDIDATE_SOURCES)),
                           metadata={"description": "faces, or events (by their largest face's descriptor)"})
    filters = fields.Nested(FaceFiltersSchema, metadata={"description": "source faces: which faces"})
    event_filters = fields.Nested(EventStatsFilters, metadata={"description": "source events: which events, by the "
                                                                             "filters of GET /events"})

    @validates_schema
    def _filters_of_source(self, data: dict[str, Any], **_: Any) -> None:
        wrong = "event_filters" if data.get("source", "faces") == "faces" else "filters"
        if wrong in data:
            raise ValidationError(f"not for source {data.get('source', 'faces')}", wrong)

    @post_load
    def _loaded(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if data["source"] == "events":
            data["filters"] = data.pop("event_filters", {})
        data.setdefault("filters", {})
        return data

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"allOf": [
            {"anyOf": [{"not": {"required": ["event_filters"]}},
                       {"properties": {"source": {"enum": ["events"]}}, "required": ["source"]}]},
            {"anyOf": [{"not": {"required": ["filters"]}}, {"not": {"required": ["source"]}},
                       {"properties": {"source": {"enum": ["faces"]}}}]},
        ]}


class LimitsSchema(StrictSchema):
    limit = fields.Integer(load_default=5, validate=SettingMax("matcher_limit_max"),
                           metadata={"description": "candidates per reference, at most `matcher_limit_max`"})
    threshold = fields.Float(load_default=0.0, validate=validate.Range(min=0.0, max=1.0), allow_nan=False,
                             metadata={"description": "least similarity of a returned candidate"})


REFERENCES = SettingMaxItems("matcher_references_max")
RAW_CANDIDATES = SettingMaxItems("matcher_raw_candidates_max")


class MatchFacesSchema(LimitsSchema):
    references = fields.List(fields.Nested(ReferenceSchema), required=True, validate=REFERENCES)
    candidates = fields.Nested(CandidatesSchema, required=True)


class RawDescriptorSchema(DescriptorInSchema):
    id = fields.String(validate=CLIENT_ID, metadata={"description": "name used in the answer (default: position)"})


class MatchRawSchema(LimitsSchema):
    references = fields.List(fields.Nested(RawDescriptorSchema), required=True, validate=REFERENCES)
    candidates = fields.List(fields.Nested(RawDescriptorSchema), required=True, validate=RAW_CANDIDATES)


class ReferenceOutSchema(StrictSchema):
    type = fields.String()
    id = fields.String()


class FaceMatchSchema(StrictSchema):
    """One candidate: a face, or an event (``event_id`` set)."""

    face_id = fields.UUID(allow_none=True, metadata={"description": "the face; for an event, the face it stored "
                                                                    "(or null)"})
    event_id = fields.UUID(metadata={"description": "events only"})
    handler_id = fields.UUID(allow_none=True, metadata={"description": "events only"})
    # Text already (the answer crosses the task queue as JSON), ISO 8601 like every time of the API.
    create_time = fields.String(metadata={"format": "date-time", "description": "events only"})
    source = fields.String(allow_none=True, metadata={"description": "events only"})
    account_id = fields.UUID()
    external_id = fields.String(allow_none=True)
    user_data = fields.String(allow_none=True)
    lists = fields.List(fields.UUID(), metadata={"description": "faces only"})
    similarity = fields.Float()


class FaceMatchResultSchema(StrictSchema):
    reference = fields.Nested(ReferenceOutSchema)
    matches = fields.List(fields.Nested(FaceMatchSchema), metadata={"description": "best first"})


class FaceMatchResultsSchema(StrictSchema):
    results = fields.List(fields.Nested(FaceMatchResultSchema), metadata={"description": "one per reference"})


class RawMatchSchema(StrictSchema):
    id = fields.String()
    similarity = fields.Float()


class RawMatchResultSchema(StrictSchema):
    reference = fields.Nested(ReferenceOutSchema)
    matches = fields.List(fields.Nested(RawMatchSchema))


class RawMatchResultsSchema(StrictSchema):
    results = fields.List(fields.Nested(RawMatchResultSchema))


class MatcherStatusSchema(StrictSchema):
    worker = fields.String()
    ready = fields.Boolean(metadata={"description": "the worker's list cache is loaded"})
    descriptor_version = fields.Integer()
    feed_seq = fields.Integer(metadata={"description": "last change applied"})
    feed_head = fields.Integer(metadata={"description": "last change in the database"})
    lists = fields.Integer()
    descriptors = fields.Integer()
    load_seconds = fields.Float(allow_none=True)
    last_error = fields.String(allow_none=True)
    device = fields.String(metadata={"description": "where the lists are searched: cpu, or the torch device (cuda)"})
