"""Arguments and answers of the image store resources (/images, /objects, /samples, /buckets)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from marshmallow import fields, validate

from app.image_store.backends import ALLOWED_TTL_DAYS, TTL_FOREVER
from app.image_store.backends.base import BUCKET_NAME_RE
from app.image_store.service import BATCH_MAX
from app.pagination import page_of
from app.schemas import StrictSchema

TTL_DESCRIPTION = f"days, one of {list(ALLOWED_TTL_DAYS)}, or {TTL_FOREVER} to keep forever"


# The values the store's own check (validate_ttl) takes, as an enum the OpenAPI document shows.
TTL_VALUES = validate.OneOf([*ALLOWED_TTL_DAYS, TTL_FOREVER])


def ttl_field(description: str = TTL_DESCRIPTION, **kwargs: Any) -> fields.Integer:
    return fields.Integer(validate=TTL_VALUES, metadata={"description": description}, **kwargs)


class StoreCreateArgs(StrictSchema):
    ttl = ttl_field(f"{TTL_DESCRIPTION}; default: the bucket's TTL")


class ImageCreateArgs(StoreCreateArgs):
    thumbnail = fields.Boolean(load_default=False, metadata={
        "description": "also store a JPEG thumbnail (longest side 160 px), read at /images/{image_id}/thumbnail"})


class TTLSchema(StrictSchema):
    ttl = ttl_field(required=True)


@lru_cache
def ids_schema(id_field: str) -> type[StrictSchema]:
    """``{"<kind>_ids": [...]}`` for a batch delete; one class per field name, shared by the kinds
    that use it, so the OpenAPI document names it once."""
    ids = fields.List(fields.UUID(), required=True, validate=validate.Length(min=1, max=BATCH_MAX),
                      metadata={"description": f"at most {BATCH_MAX} ids"})
    return StrictSchema.from_dict({f"{id_field}s": ids}, name=_class_name(id_field, "sSchema"))


def _class_name(id_field: str, suffix: str) -> str:
    return "".join(part.title() for part in id_field.split("_")) + suffix


@lru_cache
def stored_schema(id_field: str, thumbnails: bool) -> type[StrictSchema]:
    """The answer of a write: the id and where to read the object (one class per id field)."""
    answer: dict[str, fields.Field] = {
        id_field: fields.String(required=True, metadata={"description": "id of the stored object"}),
        "url": fields.String(required=True, metadata={"description": "where to read it"}),
    }
    if thumbnails:
        answer["thumbnail_url"] = fields.String(metadata={"description": "where to read its thumbnail; "
                                                                         "only when stored with thumbnail=1"})
    return StrictSchema.from_dict(answer, name=_class_name(id_field.removesuffix("_id"), "Stored"))


@lru_cache
def ttl_answer_schema(id_field: str) -> type[StrictSchema]:
    """The answer of a TTL change: the TTL in force and the expiry it gives."""
    return StrictSchema.from_dict({
        id_field: fields.String(required=True, metadata={"description": "id of the object"}),
        "ttl": fields.Integer(required=True, metadata={"description": "days, or -1: kept forever"}),
        "expires_at": fields.DateTime(required=True, allow_none=True, metadata={
            "description": "when it expires (ISO 8601); null when kept forever"}),
    }, name=_class_name(id_field.removesuffix("_id"), "TTL"))


class DeletedSchema(StrictSchema):
    deleted = fields.List(fields.String(), metadata={
        "description": "ids actually deleted; missing ones and other accounts' are left out"})


# The store checks bucket names itself (with its own error code, 23007); the document shows its rule.
BUCKET_NAME = {"pattern": f"^{BUCKET_NAME_RE.pattern}$",
               "description": "3-63 lower-case letters, digits or '-', starting and ending with a letter or digit"}


class BucketCreateSchema(StrictSchema):
    bucket = fields.String(required=True, metadata=BUCKET_NAME)
    ttl = ttl_field(f"default TTL of its objects, {TTL_DESCRIPTION}; default: the bucket_ttl_days setting")


class BucketSchema(StrictSchema):
    bucket = fields.String()
    ttl = fields.Integer(allow_none=True, metadata={"description": "default TTL of objects stored without one"})


BucketListSchema = page_of("buckets", BucketSchema, "BucketListSchema")
