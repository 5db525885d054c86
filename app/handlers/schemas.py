"""Handlers and their policies.

The schemas check each policy's own shape; the rules between policies (extraction needs face
detection, a filter on similarity needs a match, ...), the estimators the configuration disables
and the lists of the account are checked by :func:`app.handlers.service.check_policies`, so a
creation and the validator resource refuse alike. Every flag and sub-policy has a default, so
``{}`` is a complete policy set: detect faces, keep their samples, store the event.
"""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from app import settings
from app.events.schemas import EventSchema, LocationSchema
from app.image_store.schemas import ttl_field
from app.pagination import PaginationArgs, page_of
from app.schemas import SettingMax, StrictSchema
from app.sdk.schemas import Base64Image, SdkArgs
from inference import analysis, descriptor_format

DESCRIPTION = validate.Length(max=128)
HANDLER_TYPES = ("static", "dynamic")
LABEL = validate.Length(min=1, max=36)
SHARE = validate.Range(min=0.0, max=1.0)
DEGREES = validate.Range(min=0.0, max=180.0)
# An http(s) URL with a host; the pattern is the whole rule, so the OpenAPI document states it.
# Characters are spelt out: what \s means differs between Python and the document's ECMA regexes.
URL = validate.Regexp(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[^\x00-\x20\x7f]*)?$")
HEADER_NAME = validate.Regexp(r"^[A-Za-z0-9\-]{1,64}$")
# An HTTP field value (RFC 9110): visible characters, spaces and tabs, Latin-1 at most (what the
# HTTP client can send); a line break or a wider character would fail every delivery instead.
HEADER_VALUE = validate.Regexp(r"^[\t\x20-\x7e\x80-\xff]{0,1024}$")


def _bool(default: bool, description: str) -> fields.Boolean:
    return fields.Boolean(load_default=default, metadata={"description": description})


def _defaults(schema: type[StrictSchema]) -> Any:
    """A sub-policy left out is the sub-policy with every default (a callable, so each load gets
    its own copy and the current settings)."""
    return lambda: schema().load({})


class ResultFilterSchema(StrictSchema):
    """Conditions on what a request found, shared by conditional tags, callbacks and list links.
    Every condition given must hold; none given always holds."""

    label = fields.String(validate=LABEL, metadata={"description": "the match (its label in match_policy) the "
                                                                   "similarity conditions read; default: any match"})
    similarity__gte = fields.Float(validate=SHARE, allow_nan=False, metadata={"description": "best similarity at least"})
    similarity__lte = fields.Float(validate=SHARE, allow_nan=False, metadata={"description": "best similarity at most"})
    age__gte = fields.Integer(validate=validate.Range(min=0, max=200), metadata={"description": "age at least"})
    age__lt = fields.Integer(validate=validate.Range(min=0, max=200), metadata={"description": "age below"})
    gender = fields.String(validate=validate.OneOf(["female", "male"]), metadata={"description": "estimated gender"})


# One flag per face estimation of /sdk (inference.analysis.FACE_ESTIMATIONS), with its meaning.
_ESTIMATIONS = {option: _bool(False, SdkArgs._declared_fields[option].metadata["description"])
                for option in analysis.FACE_ESTIMATIONS}


class DetectPolicySchema(StrictSchema.from_dict(_ESTIMATIONS, name="DetectEstimations")):  # type: ignore[misc]
    detect_face = _bool(True, "detect faces")
    detect_body = _bool(False, "detect bodies")
    multiface_policy = fields.String(load_default="all", validate=validate.OneOf(["all", "largest", "single"]),
                                     metadata={"description": "all faces of an image, its largest only, or "
                                                              "single: an image with several faces fails"})
    yaw_threshold = fields.Float(validate=DEGREES, allow_nan=False,
                                 metadata={"description": "drop faces turned further (degrees; needs "
                                                          "estimate_head_pose)"})
    pitch_threshold = fields.Float(validate=DEGREES, allow_nan=False,
                                   metadata={"description": "drop faces tilted further up or down (degrees; needs "
                                                            "estimate_head_pose)"})
    roll_threshold = fields.Float(validate=DEGREES, allow_nan=False,
                                  metadata={"description": "drop faces rolled further (degrees; needs "
                                                           "estimate_head_pose)"})
    min_quality = fields.Float(validate=SHARE, allow_nan=False,
                               metadata={"description": "drop faces whose lowest quality score is below (needs "
                                                        "estimate_quality)"})
    min_detection_score = fields.Float(validate=SHARE, allow_nan=False,
                                       metadata={"description": "drop detections scored below"})


class ExtractPolicySchema(StrictSchema):
    extract_face_descriptor = _bool(False, "extract each face's descriptor (needs detect_face)")
    extract_basic_attributes = _bool(False, "age and gender of each face (needs detect_face)")
    descriptor_version = fields.Integer(
        load_default=lambda: settings.current().face_descriptor_version,
        validate=validate.OneOf(sorted(descriptor_format.DESCRIPTOR_LENGTHS)),
        metadata={"description": "version of the descriptors (default: setting face_descriptor_version)"})


class MatchCandidatesSchema(StrictSchema):
    list_id = fields.UUID(metadata={"description": "faces of this list of the account (default: all its faces)"})


class MatchSchema(StrictSchema):
    label = fields.String(required=True, validate=LABEL, metadata={"description": "names the match in results "
                                                                                  "and filters; unique"})
    candidates = fields.Nested(MatchCandidatesSchema, load_default=dict, metadata={"description": "what to match against"})
    limit = fields.Integer(load_default=3, validate=validate.Range(min=1, max=100),
                           metadata={"description": "best candidates kept"})
    threshold = fields.Float(load_default=0.0, validate=SHARE, allow_nan=False,
                             metadata={"description": "least similarity of a kept candidate"})


class SampleStoragePolicySchema(StrictSchema):
    store_sample = _bool(True, "keep the samples in the image store")
    ttl = ttl_field()


class ImageStoragePolicySchema(StrictSchema):
    store_image = _bool(False, "keep the source image in the image store")
    ttl = ttl_field()


class AttributeStoragePolicySchema(StrictSchema):
    store_attribute = _bool(False, "keep a temporary attribute per face (needs extraction)")
    ttl = fields.Integer(validate=SettingMax("attribute_ttl_max_s"),
                         metadata={"description": "seconds to live (default: setting attribute_ttl_default_s)"})


class ListLinkSchema(StrictSchema):
    list_id = fields.UUID(required=True, metadata={"description": "a list of the account"})
    filters = fields.Nested(ResultFilterSchema, metadata={"description": "link only when these hold"})


class FaceStoragePolicySchema(StrictSchema):
    store_face = _bool(False, "create a face per detected face (needs detect_face)")
    link_to_lists_policy = fields.List(fields.Nested(ListLinkSchema), load_default=list,
                                       validate=validate.Length(max=100),
                                       metadata={"description": "lists the new faces join (needs store_face)"})


class EventStoragePolicySchema(StrictSchema):
    store_event = _bool(True, "keep the event")
    wait_saving = _bool(True, "answer only once everything is saved")


class StoragePolicySchema(StrictSchema):
    face_sample_policy = fields.Nested(SampleStoragePolicySchema, load_default=_defaults(SampleStoragePolicySchema))
    body_sample_policy = fields.Nested(SampleStoragePolicySchema, load_default=_defaults(SampleStoragePolicySchema))
    image_origin_policy = fields.Nested(ImageStoragePolicySchema, load_default=_defaults(ImageStoragePolicySchema))
    attribute_policy = fields.Nested(AttributeStoragePolicySchema,
                                     load_default=_defaults(AttributeStoragePolicySchema))
    face_policy = fields.Nested(FaceStoragePolicySchema, load_default=_defaults(FaceStoragePolicySchema))
    event_policy = fields.Nested(EventStoragePolicySchema, load_default=_defaults(EventStoragePolicySchema))


class ConditionalTagSchema(StrictSchema):
    tag = fields.String(required=True, validate=LABEL, metadata={"description": "tag the event gets"})
    filters = fields.Nested(ResultFilterSchema, load_default=dict, metadata={"description": "when it applies"})


class CallbackAuthSchema(StrictSchema):
    type = fields.String(load_default="basic", validate=validate.OneOf(["basic"]),
                         metadata={"description": "HTTP Basic"})
    login = fields.String(required=True, validate=validate.Length(min=1, max=128))
    password = fields.String(required=True, validate=validate.Length(min=1, max=128))


class CallbackHeaderSchema(StrictSchema):
    name = fields.String(required=True, validate=HEADER_NAME, metadata={"description": "letters, digits and '-'"})
    value = fields.String(required=True, validate=HEADER_VALUE,
                          metadata={"description": "printable Latin-1 characters, spaces and tabs"})


HTTP_ONLY = ("url", "method", "headers", "auth")


class CallbackSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(["http", "luna-ws-notification"]),
                         metadata={"description": "http: a request to url; luna-ws-notification: to the "
                                                  "websocket subscribers"})
    url = fields.String(validate=[validate.Length(max=2048), URL],
                        metadata={"description": "http only, and required there: http(s) URL"})
    method = fields.String(validate=validate.OneOf(["POST", "PUT", "PATCH"]),
                           metadata={"description": "http only (default POST)"})
    # A list rather than an object: OpenAPI 3.0 cannot state a rule on an object's keys.
    headers = fields.List(fields.Nested(CallbackHeaderSchema), validate=validate.Length(max=32),
                          metadata={"description": "http only: extra headers"})
    auth = fields.Nested(CallbackAuthSchema, metadata={"description": "http only"})
    filters = fields.Nested(ResultFilterSchema, metadata={"description": "send only when these hold"})

    @validates_schema
    def _fields_of_type(self, data: dict[str, Any], **_: Any) -> None:
        if data["type"] == "http" and "url" not in data:
            raise ValidationError("an http callback needs a url", "url")
        if data["type"] != "http":
            given = [name for name in HTTP_ONLY if name in data]
            if given:
                raise ValidationError(f"only http callbacks take {', '.join(given)}", given[0])

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {
            "oneOf": [
                {"properties": {"type": {"enum": ["http"]}}, "required": ["url"]},
                {"properties": {"type": {"enum": ["luna-ws-notification"]}},
                 "not": {"anyOf": [{"required": [name]} for name in HTTP_ONLY]}},
            ],
        }


class PoliciesSchema(StrictSchema):
    """Applied in this order, each to every image of a request before the next."""

    detect_policy = fields.Nested(DetectPolicySchema, load_default=_defaults(DetectPolicySchema))
    extract_policy = fields.Nested(ExtractPolicySchema, load_default=_defaults(ExtractPolicySchema))
    match_policy = fields.List(fields.Nested(MatchSchema), load_default=list, validate=validate.Length(max=10))
    storage_policy = fields.Nested(StoragePolicySchema, load_default=_defaults(StoragePolicySchema))
    conditional_tags_policy = fields.List(fields.Nested(ConditionalTagSchema), load_default=list,
                                          validate=validate.Length(max=20))
    callbacks = fields.List(fields.Nested(CallbackSchema), load_default=list, validate=validate.Length(max=10))


POLICIES_DESCRIPTION = "the policies, see docs/handlers.md (static: default every policy's defaults)"


class HandlerCreateSchema(StrictSchema):
    description = fields.String(load_default="", validate=DESCRIPTION)
    handler_type = fields.String(load_default="static", validate=validate.OneOf(HANDLER_TYPES),
                                 metadata={"description": "static: policies stored here; dynamic: given with "
                                                          "each request (then no policies here)"})
    policies = fields.Nested(PoliciesSchema, metadata={"description": POLICIES_DESCRIPTION})


class HandlerPatchSchema(StrictSchema):
    description = fields.String(validate=DESCRIPTION)
    policies = fields.Nested(PoliciesSchema, metadata={"description": "replaces the policies (static handlers)"})


class ValidatorSchema(StrictSchema):
    policies = fields.Nested(PoliciesSchema, required=True, metadata={"description": POLICIES_DESCRIPTION})


class ValidatorAnswerSchema(StrictSchema):
    valid = fields.Boolean(metadata={"description": "always true; invalid policies answer an error"})


class HandlerCreatedSchema(StrictSchema):
    handler_id = fields.UUID()
    url = fields.String(metadata={"description": "the handler's path"})


class HandlerSchema(StrictSchema):
    handler_id = fields.UUID()
    account_id = fields.UUID()
    description = fields.String()
    handler_type = fields.String()
    policies = fields.Nested(PoliciesSchema, allow_none=True, metadata={"description": "null for a dynamic handler"})
    version = fields.Integer(metadata={"description": "1 at creation, one more on every change"})
    create_time = fields.DateTime()
    last_update_time = fields.DateTime()


class HandlerListArgs(PaginationArgs):
    description = fields.String(validate=DESCRIPTION, metadata={"description": "substring of description"})
    handler_type = fields.String(validate=validate.OneOf(HANDLER_TYPES))
    account_id = fields.UUID(metadata={"description": "advanced users: another account's handlers"})


HandlerListSchema = page_of("handlers", HandlerSchema, "HandlerListSchema")


# ---- POST /handlers/{handler_id}/events ----------------------------------------------------------
class ImageFieldsSchema(StrictSchema):
    """What one image adds to its event (a multipart form gives these in ``image_fields``; its
    files' names are the images' names)."""

    meta = fields.Dict(metadata={"description": "merged over the request's meta for this image's event"})
    external_id = fields.String(validate=validate.Length(max=64), metadata={"description": "this image's "
                                                                                         "(default: the request's)"})
    track_id = fields.String(validate=validate.Length(max=36), metadata={"description": "this image's (default: "
                                                                                      "the request's)"})


class EventImageSchema(Base64Image, ImageFieldsSchema):
    """One image of a JSON request: base64, URL or a stored face sample, with its own fields."""

    SOURCES = ("image", "url", "sample_id")

    sample_id = fields.UUID(metadata={"description": "a face sample of the account (GET /samples/faces/{id}): "
                                                     "one aligned face, not detected again"})

    @validates_schema
    def _one_source(self, data: dict[str, Any], **_: Any) -> None:
        if sum(name in data for name in self.SOURCES) != 1:
            raise ValidationError("give exactly one of image (base64), url or sample_id", "image")

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"oneOf": [{"required": [name]} for name in cls.SOURCES]}


class HandlerEventsBody(StrictSchema):
    images = fields.List(fields.Nested(EventImageSchema), required=True, validate=validate.Length(min=1))
    image_fields = fields.List(fields.Nested(ImageFieldsSchema),
                               metadata={"description": "multipart only: each file's fields, in file order"})
    policies = fields.Nested(PoliciesSchema, metadata={"description": "dynamic handlers only, and required there"})
    external_id = fields.String(validate=validate.Length(max=64))
    user_data = fields.String(validate=validate.Length(max=128))
    source = fields.String(validate=validate.Length(max=128), metadata={"description": "a camera, a site..."})
    tags = fields.List(fields.String(validate=LABEL), validate=validate.Length(max=20),
                       metadata={"description": "every event gets them, before conditional tags"})
    track_id = fields.String(validate=validate.Length(max=36))
    stream_id = fields.UUID()
    location = fields.Nested(LocationSchema)
    meta = fields.Dict(metadata={"description": "every event's meta (JSON); an image's own meta is merged over it"})
    aggregate_attributes = fields.Boolean(load_default=False,
                                          metadata={"description": "one event for all images: their largest faces "
                                                                   "merged (one person seen several times)"})


class GeneratedEventSchema(EventSchema):
    handler_version = fields.Integer(metadata={"description": "the handler's version the event was made under"})
    filename = fields.String(metadata={"description": "the image's name, or 'aggregate'"})


class HandlerEventsSchema(StrictSchema):
    events = fields.List(fields.Nested(GeneratedEventSchema),
                         metadata={"description": "one per image, in request order, or one aggregated"})
