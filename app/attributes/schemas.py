"""Temporary attributes, and the descriptor and basic-attribute shapes faces reuse."""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from app.schemas import INT32, SettingMax, StrictSchema
from inference import descriptor_format as fmt

ETHNICITIES = ("african_american", "indian", "asian", "caucasian")
MAX_DESCRIPTORS = 8
MAX_SAMPLES = 64


def _base64_of(size: int) -> str:
    """A regular expression for the base64 text of ``size`` bytes."""
    groups, rest = divmod(size, 3)
    return f"[A-Za-z0-9+/]{{{4 * groups}}}" + ("", "[A-Za-z0-9+/]{2}==", "[A-Za-z0-9+/]{3}=")[rest]


def descriptor_rules() -> dict[str, Any]:
    """The size of a descriptor by its format, as base64 patterns: sdk (the default) carries the
    signature and a 4-byte version before the float32 values, raw only the values. What no pattern
    says: the signature and version bytes, and that every value is finite (the service checks both)."""
    sizes = sorted({4 * n for n in fmt.DESCRIPTOR_LENGTHS.values()})
    header = len(fmt.SIGNATURE) + 4
    sdk = "|".join(_base64_of(header + size) for size in sizes)
    raw = "|".join(_base64_of(size) for size in sizes)
    return {"oneOf": [
        {"properties": {"format": {"enum": ["sdk"]}, "descriptor": {"pattern": f"^({sdk})$"}}},
        {"required": ["format"], "properties": {"format": {"enum": ["raw"]}, "descriptor": {"pattern": f"^({raw})$"}}},
    ]}


class DescriptorInSchema(StrictSchema):
    format = fields.String(load_default="sdk", validate=validate.OneOf(("sdk", "raw")),
                           metadata={"description": "sdk: base64 of signature + version + float32 payload; "
                                                    "raw: base64 of the float32 payload alone"})
    descriptor = fields.String(required=True, validate=validate.Length(min=1, max=65536))
    version = fields.Integer(load_default=None, validate=INT32,
                             metadata={"enum": sorted(fmt.DESCRIPTOR_LENGTHS),
                                       "description": "model version; raw descriptors default to the "
                                                      "current model, sdk ones carry their own"})

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return descriptor_rules()


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
    ttl = fields.Integer(load_default=None, validate=SettingMax("attribute_ttl_max_s"),
                         metadata={"description": "seconds to live (default: setting attribute_ttl_default_s)"})

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data.get("descriptors") and not data.get("basic_attributes"):
            raise ValidationError("give descriptors, basic_attributes or both", "descriptors")

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"anyOf": [{"required": ["descriptors"], "properties": {"descriptors": {"minItems": 1}}},
                          {"required": ["basic_attributes"], "properties": {"basic_attributes": {"minProperties": 1}}}]}


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
