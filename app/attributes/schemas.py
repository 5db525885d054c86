"""Temporary attributes, and the descriptor and basic-attribute shapes faces reuse."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas import INT32, StrictSchema

ETHNICITIES = ("african_american", "indian", "asian", "caucasian")
MAX_DESCRIPTORS = 8
MAX_SAMPLES = 64


class DescriptorInSchema(StrictSchema):
    format = fields.String(load_default="sdk", validate=validate.OneOf(("sdk", "raw")),
                           metadata={"description": "sdk: base64 of signature + version + float32 payload; "
                                                    "raw: base64 of the float32 payload alone"})
    descriptor = fields.String(required=True, validate=validate.Length(min=1, max=65536))
    version = fields.Integer(load_default=None, validate=INT32,
                             metadata={"description": "model version; raw descriptors default to the "
                                                      "current model, sdk ones carry their own"})


class DescriptorOutSchema(StrictSchema):
    version = fields.Integer()
    descriptor = fields.String(metadata={"description": "SDK format, base64"})


class BasicAttributesSchema(StrictSchema):
    age = fields.Float(validate=validate.Range(min=0, max=150), allow_nan=False)
    gender = fields.Float(validate=validate.Range(min=0, max=1), allow_nan=False,
                          metadata={"description": "0 female, 1 male (a probability when estimated)"})
    ethnicity = fields.String(validate=validate.OneOf(ETHNICITIES))


class ExternalDataSchema(StrictSchema):
    """Descriptors, basic attributes and samples from outside: what an attribute or face is built from."""

    descriptors = fields.List(fields.Nested(DescriptorInSchema), validate=validate.Length(max=MAX_DESCRIPTORS))
    basic_attributes = fields.Nested(BasicAttributesSchema)
    sample_ids = fields.List(fields.UUID(), validate=validate.Length(max=MAX_SAMPLES))


class AttributeCreateSchema(ExternalDataSchema):
    ttl = fields.Integer(load_default=None, validate=validate.Range(min=1),
                         metadata={"description": "seconds to live (default and maximum are settings)"})

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("descriptors") and not data.get("basic_attributes"):
            raise ValidationError("give descriptors, basic_attributes or both", "descriptors")


class AttributeSchema(StrictSchema):
    attribute_id = fields.UUID()
    account_id = fields.UUID()
    create_time = fields.DateTime()
    expire_time = fields.DateTime()
    basic_attributes = fields.Nested(BasicAttributesSchema, allow_none=True)
    descriptors = fields.List(fields.Nested(DescriptorOutSchema))
    sample_ids = fields.List(fields.UUID())


class AttributeCreatedSchema(StrictSchema):
    attribute_id = fields.UUID()
    expire_time = fields.DateTime()


class AttributeSamplesSchema(StrictSchema):
    samples = fields.List(fields.UUID())
