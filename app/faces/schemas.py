"""Requests and answers of /faces and /lists: filters, batches, descriptors, members."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema
from webargs.fields import DelimitedList

from app.attributes.schemas import BasicAttributesSchema, DescriptorInSchema, DescriptorOutSchema, ExternalDataSchema
from app.pagination import PaginationArgs, page_of
from app.schemas import INT32, SettingMaxItems, StrictSchema

MAX_LISTS_PER_FACE = 64
MAX_FILTER_IDS = 1000

EXTERNAL_ID = validate.Length(max=64)
USER_DATA = validate.Length(max=128)
AVATAR = validate.Length(max=256)
EXTERNAL_DATA = ("descriptors", "basic_attributes", "sample_ids")
BATCH = SettingMaxItems("faces_batch_max")


class FaceCreateSchema(ExternalDataSchema):
    attribute_id = fields.UUID(metadata={"description": "copy descriptors, basic attributes and samples "
                                                        "from this temporary attribute"})
    external_id = fields.String(load_default=None, validate=EXTERNAL_ID)
    user_data = fields.String(load_default="", validate=USER_DATA)
    event_id = fields.UUID(load_default=None)
    avatar = fields.String(load_default="", validate=AVATAR)
    list_ids = fields.List(fields.UUID(), load_default=list, validate=validate.Length(max=MAX_LISTS_PER_FACE))

    @validates_schema
    def _one_source(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("attribute_id") and any(data.get(k) for k in EXTERNAL_DATA):
            raise ValidationError("give either attribute_id or descriptors/basic_attributes/sample_ids", "attribute_id")

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        empty = {"descriptors": {"maxItems": 0}, "basic_attributes": {"maxProperties": 0}, "sample_ids": {"maxItems": 0}}
        return {"anyOf": [{"not": {"required": ["attribute_id"]}}, {"properties": empty}]}


class FaceBatchCreateSchema(StrictSchema):
    faces = fields.List(fields.Nested(FaceCreateSchema), required=True, validate=BATCH,
                        metadata={"description": "at most `faces_batch_max` faces, created all or none"})


class FaceCreatedSchema(StrictSchema):
    face_id = fields.UUID()
    external_id = fields.String(allow_none=True)


class FaceBatchCreatedSchema(StrictSchema):
    faces = fields.List(fields.Nested(FaceCreatedSchema))


class FacePatchSchema(StrictSchema):
    external_id = fields.String(allow_none=True, validate=EXTERNAL_ID)
    user_data = fields.String(validate=USER_DATA)
    event_id = fields.UUID(allow_none=True)
    avatar = fields.String(validate=AVATAR)
    basic_attributes = fields.Nested(BasicAttributesSchema, allow_none=True)
    descriptors = fields.List(fields.Nested(DescriptorInSchema), validate=validate.Length(min=1, max=8),
                              metadata={"description": "add or replace the descriptor of each given version"})


class FaceSchema(StrictSchema):
    face_id = fields.UUID()
    account_id = fields.UUID()
    external_id = fields.String(allow_none=True)
    user_data = fields.String()
    event_id = fields.UUID(allow_none=True)
    avatar = fields.String()
    create_time = fields.DateTime()
    lists = fields.List(fields.UUID())
    basic_attributes = fields.Nested(BasicAttributesSchema, allow_none=True)
    descriptor_versions = fields.List(fields.Integer())
    sample_ids = fields.List(fields.UUID())


class FaceFilterArgs(StrictSchema):
    face_ids = DelimitedList(fields.UUID(), validate=validate.Length(max=MAX_FILTER_IDS),
                             metadata={"description": "comma-separated face ids"})
    external_ids = DelimitedList(fields.String(validate=EXTERNAL_ID), validate=validate.Length(max=MAX_FILTER_IDS),
                                 metadata={"description": "comma-separated external ids"})
    user_data = fields.String(validate=USER_DATA, metadata={"description": "substring of user_data"})
    list_id = fields.UUID(metadata={"description": "faces attached to this list"})
    create_time__gte = fields.AwareDateTime()
    create_time__lt = fields.AwareDateTime()
    face_id__gte = fields.UUID()
    face_id__lt = fields.UUID()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's faces"})


class FaceListArgs(FaceFilterArgs, PaginationArgs):
    pass


FaceListSchema = page_of("faces", FaceSchema, "FaceListSchema")


class FaceCountSchema(StrictSchema):
    faces_count = fields.Integer()


class FaceIdsSchema(StrictSchema):
    face_ids = fields.List(fields.UUID(), required=True, validate=BATCH,
                           metadata={"description": "at most `faces_batch_max` ids"})


class DescriptorVersionArgs(StrictSchema):
    version = fields.Integer(validate=INT32)


class FaceDescriptorsSchema(StrictSchema):
    face_id = fields.UUID()
    descriptors = fields.List(fields.Nested(DescriptorOutSchema))


# ---- lists ------------------------------------------------------------
LIST_ACTIONS = ("attach", "detach")


class ListCreateSchema(StrictSchema):
    user_data = fields.String(load_default="", validate=USER_DATA)


class ListPatchSchema(StrictSchema):
    user_data = fields.String(required=True, validate=USER_DATA)


class ListCreatedSchema(StrictSchema):
    list_id = fields.UUID()


class ListSchema(StrictSchema):
    list_id = fields.UUID()
    account_id = fields.UUID()
    user_data = fields.String()
    create_time = fields.DateTime()
    last_update_time = fields.DateTime()
    faces_count = fields.Integer()


class ListFilterArgs(StrictSchema):
    list_ids = DelimitedList(fields.UUID(), validate=validate.Length(max=MAX_FILTER_IDS),
                             metadata={"description": "comma-separated list ids"})
    user_data = fields.String(validate=USER_DATA, metadata={"description": "substring of user_data"})
    create_time__gte = fields.AwareDateTime()
    create_time__lt = fields.AwareDateTime()
    account_id = fields.UUID(metadata={"description": "advanced users: another account's lists"})


class ListListArgs(ListFilterArgs, PaginationArgs):
    pass


ListListSchema = page_of("lists", ListSchema, "ListListSchema")


class ListCountSchema(StrictSchema):
    lists_count = fields.Integer()


class ListFacesPatchSchema(StrictSchema):
    action = fields.String(required=True, validate=validate.OneOf(LIST_ACTIONS))
    face_ids = fields.List(fields.UUID(), required=True, validate=BATCH,
                           metadata={"description": "at most `faces_batch_max` ids; all must be the "
                                                    "account's faces or nothing changes"})


class ListFacesChangedSchema(StrictSchema):
    list_id = fields.UUID()
    action = fields.String()
    changed = fields.Integer(metadata={"description": "faces actually attached or detached (repeats are no-ops)"})
