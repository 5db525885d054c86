"""Verifiers (stored 1:1 policies) and verification requests."""
from __future__ import annotations

from marshmallow import fields, validate

from app import settings
from app.matching.schemas import RAW_CANDIDATES, REFERENCES, ReferenceOutSchema, ReferenceSchema
from app.pagination import PaginationArgs, page_of
from app.schemas import StrictSchema
from app.sdk.schemas import Base64Image
from inference import descriptor_format as fmt

DESCRIPTION = validate.Length(max=128)
THRESHOLD = validate.Range(min=0.0, max=1.0)


class VerifierCreateSchema(StrictSchema):
    description = fields.String(load_default="", validate=DESCRIPTION)
    threshold = fields.Float(load_default=fmt.DEFAULT_SIMILARITY_THRESHOLD, validate=THRESHOLD, allow_nan=False,
                             metadata={"description": "least similarity of a passing pair (default: the "
                                                      "model's documented same-person threshold)"})
    version = fields.Integer(load_default=lambda: settings.current().face_descriptor_version,
                             validate=validate.OneOf(sorted(fmt.DESCRIPTOR_LENGTHS)),
                             metadata={"description": "descriptor version the policy compares"})


class VerifierPatchSchema(StrictSchema):
    description = fields.String(validate=DESCRIPTION)
    threshold = fields.Float(validate=THRESHOLD, allow_nan=False)


class VerifierCreatedSchema(StrictSchema):
    verifier_id = fields.UUID()


class VerifierSchema(StrictSchema):
    verifier_id = fields.UUID()
    account_id = fields.UUID()
    description = fields.String()
    threshold = fields.Float()
    version = fields.Integer()
    create_time = fields.DateTime()
    last_update_time = fields.DateTime()


class VerifierListArgs(PaginationArgs):
    description = fields.String(validate=DESCRIPTION, metadata={"description": "substring of description"})
    account_id = fields.UUID(metadata={"description": "advanced users: another account's verifiers"})


VerifierListSchema = page_of("verifiers", VerifierSchema, "VerifierListSchema")


class VerificationSchema(StrictSchema):
    references = fields.List(fields.Nested(ReferenceSchema), required=True, validate=REFERENCES,
                             metadata={"description": "faces, events, attributes or descriptors (images: "
                                                      "POST /verifiers/{verifier_id}/images)"})
    candidates = fields.List(fields.Nested(ReferenceSchema), required=True, validate=RAW_CANDIDATES)


class VerificationOutSchema(StrictSchema):
    reference = fields.Nested(ReferenceOutSchema)
    candidate = fields.Nested(ReferenceOutSchema)
    similarity = fields.Float()
    status = fields.String(metadata={"description": "pass: similarity at or above the verifier's threshold"})


class VerificationsSchema(StrictSchema):
    verifications = fields.List(fields.Nested(VerificationOutSchema),
                                metadata={"description": "every (reference, candidate) pair, reference-major"})


class VerifyImagesBody(StrictSchema):
    """JSON body of ``POST /verifiers/{verifier_id}/images`` (a form gives ``candidates`` as a form
    field holding JSON)."""

    images = fields.List(fields.Nested(Base64Image), required=True, validate=validate.Length(min=1))
    candidates = fields.List(fields.Nested(ReferenceSchema), validate=RAW_CANDIDATES,
                             metadata={"description": "what each image is verified against (default: the other "
                                                      "images, each pair once)"})
