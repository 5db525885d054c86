"""Matching requests and answers: references, candidate filters, raw descriptors."""
from __future__ import annotations

import uuid
from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from app import settings
from app.attributes.schemas import DescriptorInSchema
from app.faces.schemas import EXTERNAL_ID, MAX_FILTER_IDS, USER_DATA
from app.matching.service import CANDIDATE_SOURCES, REFERENCE_TYPES
from app.schemas import INT32, StrictSchema

CLIENT_ID = validate.Length(min=1, max=64)


def _known_type(value: str) -> None:
    # Checked at load time, not import time: reference types may register after this module loads.
    if value not in REFERENCE_TYPES:
        raise ValidationError(f"unknown type; one of {sorted(REFERENCE_TYPES)}")


class ReferenceSchema(StrictSchema):
    """A face, a temporary attribute or a descriptor given inline (more types register in
    ``app.matching.service``)."""

    type = fields.String(required=True, validate=_known_type,
                         metadata={"description": "face, attribute or descriptor"})
    id = fields.String(validate=CLIENT_ID, metadata={
        "description": "face or attribute id; for a descriptor, the name the answer uses (default: its position)"})
    version = fields.Integer(load_default=None, validate=INT32,
                             metadata={"description": "descriptor version (default: the current model; "
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


# The filters each candidate source understands.
CANDIDATE_FILTERS: dict[str, type[StrictSchema]] = {"faces": FaceFiltersSchema}


class CandidatesSchema(StrictSchema):
    source = fields.String(load_default="faces", validate=validate.OneOf(sorted(CANDIDATE_SOURCES)))
    filters = fields.Dict(load_default=dict, metadata={"description": "filters of the source; for faces: "
                                                                      "see FaceFilters"})

    @post_load
    def _filters(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        try:
            data["filters"] = CANDIDATE_FILTERS[data["source"]]().load(data["filters"])
        except ValidationError as exc:
            raise ValidationError(exc.messages, "filters") from None
        return data


class LimitsSchema(StrictSchema):
    limit = fields.Integer(load_default=5, validate=validate.Range(min=1),
                           metadata={"description": "candidates per reference, at most `matcher_limit_max`"})
    threshold = fields.Float(load_default=0.0, validate=validate.Range(min=0.0, max=1.0), allow_nan=False,
                             metadata={"description": "least similarity of a returned candidate"})

    @validates_schema
    def _caps(self, data: dict[str, Any], **_: Any) -> None:
        s = settings.current()
        if data.get("limit", 0) > s.matcher_limit_max:
            raise ValidationError(f"must be at most {s.matcher_limit_max} (matcher_limit_max)", "limit")
        if len(data.get("references") or ()) > s.matcher_references_max:
            raise ValidationError(f"at most {s.matcher_references_max} (matcher_references_max)", "references")


class MatchFacesSchema(LimitsSchema):
    references = fields.List(fields.Nested(ReferenceSchema), required=True, validate=validate.Length(min=1))
    candidates = fields.Nested(CandidatesSchema, required=True)


class RawDescriptorSchema(DescriptorInSchema):
    id = fields.String(validate=CLIENT_ID, metadata={"description": "name used in the answer (default: position)"})


def check_candidate_count(data: dict[str, Any]) -> None:
    most = settings.current().matcher_raw_candidates_max
    if len(data.get("candidates") or ()) > most:
        raise ValidationError(f"at most {most} (matcher_raw_candidates_max)", "candidates")


class MatchRawSchema(LimitsSchema):
    references = fields.List(fields.Nested(RawDescriptorSchema), required=True, validate=validate.Length(min=1))
    candidates = fields.List(fields.Nested(RawDescriptorSchema), required=True, validate=validate.Length(min=1))

    @validates_schema
    def _candidate_cap(self, data: dict[str, Any], **_: Any) -> None:
        check_candidate_count(data)


class ReferenceOutSchema(StrictSchema):
    type = fields.String()
    id = fields.String()


class FaceMatchSchema(StrictSchema):
    face_id = fields.UUID()
    account_id = fields.UUID()
    external_id = fields.String(allow_none=True)
    user_data = fields.String()
    lists = fields.List(fields.UUID())
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
