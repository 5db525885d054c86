"""Arguments and answers of the remote SDK resources (/sdk, /detector, /iso).

Options are query parameters (``?estimate_head_pose=1``) whatever the body's format, so the same
URL works with a raw image, a multipart form or a JSON body.
"""
from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from app import settings
from app.schemas import StrictSchema
from inference import analysis, descriptor_format


def _flag(default: int, description: str) -> fields.Integer:
    return fields.Integer(load_default=default, validate=validate.OneOf([0, 1]), metadata={"description": description})


class DetectorArgs(StrictSchema):
    detect_face = _flag(1, "detect faces (box, score, 5 landmarks) and store their warped samples")
    detect_body = _flag(0, "detect bodies and store their body samples")

    @validates_schema
    def _something(self, data: dict[str, Any], **_: Any) -> None:
        if not data["detect_face"] and not data["detect_body"]:
            raise ValidationError("set detect_face=1, detect_body=1 or both", "detect_face")


class SdkArgs(DetectorArgs):
    face_warp = _flag(1, "store each face's aligned 150x150 sample in the image store (sample_id)")
    body_warp = _flag(1, "store each body's sample (with detect_body=1)")
    estimate_landmarks68 = _flag(0, "68 landmarks (face-mesh points at the 68-point scheme's places)")
    estimate_head_pose = _flag(0, "yaw, pitch, roll in degrees")
    estimate_eyes = _flag(0, "open/closed score per eye")
    estimate_gaze = _flag(0, "gaze yaw and pitch in degrees")
    estimate_mouth = _flag(0, "mouth opened and smile scores")
    estimate_quality = _flag(0, "blur, darkness, lightness, illumination, specularity of the face sample")
    estimate_basic_attributes = _flag(0, "age and gender")
    estimate_emotions = _flag(0, "7 emotion probabilities")
    extract_descriptor = _flag(0, "the 128-d descriptor (SDK format, base64) and a temporary attribute")
    descriptor_version = fields.Integer(
        load_default=lambda: settings.current().face_descriptor_version,
        validate=validate.OneOf(sorted(descriptor_format.DESCRIPTOR_LENGTHS)),
        metadata={"description": "version of the extracted descriptors: 102 one pass, 101 averaged with the "
                                 "mirrored face (default: setting face_descriptor_version)"})
    aggregate_attributes = _flag(0, "one aggregated descriptor and attributes over all images' "
                                    "largest faces (several images of one person)")

    @validates_schema
    def _faces_needed(self, data: dict[str, Any], **_: Any) -> None:
        if not data["detect_face"]:
            asked = [name for name in (*analysis.FACE_ESTIMATIONS, "extract_descriptor") if data.get(name)]
            if asked or data.get("aggregate_attributes"):
                raise ValidationError(f"needs detect_face=1: {', '.join(asked or ['aggregate_attributes'])}",
                                      "detect_face")


class Base64Image(StrictSchema):
    image = fields.String(metadata={"format": "byte", "description": "base64 of the image file"})
    url = fields.String(metadata={"description": "http(s) URL of the image (only when sdk_url_fetch is on)"})
    filename = fields.String(validate=validate.Length(max=255), metadata={"description": "name used in answers and errors"})

    @validates_schema
    def _one_source(self, data: dict[str, Any], **_: Any) -> None:
        if ("image" in data) == ("url" in data):
            raise ValidationError("give exactly one of image (base64) or url", "image")

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"oneOf": [{"required": ["image"]}, {"required": ["url"]}]}


class ImagesBody(StrictSchema):
    """JSON body of /sdk and /detector; /iso adds ``thresholds``."""

    images = fields.List(fields.Nested(Base64Image), required=True, validate=validate.Length(min=1))


class IsoBody(ImagesBody):
    thresholds = fields.Dict(keys=fields.String(), load_default=None, metadata={
        "description": 'per check: {"min": x, "max": y} or a list of allowed values, '
                       'e.g. {"head_yaw": {"min": -10, "max": 10}, "image_format": ["JPEG", "PNG"]}'})


class ImageResultSchema(StrictSchema):
    filename = fields.String()
    width = fields.Integer()
    height = fields.Integer()
    faces = fields.List(fields.Dict())
    bodies = fields.List(fields.Dict())


class SdkResultSchema(StrictSchema):
    images = fields.List(fields.Nested(ImageResultSchema))
    aggregate = fields.Dict(metadata={"description": "with aggregate_attributes=1"})


class IsoImageSchema(StrictSchema):
    filename = fields.String()
    result = fields.Integer(metadata={"description": "1 when every check ran and passed"})
    face = fields.Dict(allow_none=True)
    checks = fields.List(fields.Dict())


class IsoResultSchema(StrictSchema):
    images = fields.List(fields.Nested(IsoImageSchema))


class EstimatorSchema(StrictSchema):
    name = fields.String()
    description = fields.String()
    enabled = fields.Boolean()
    loaded = fields.Boolean()


class EstimatorsSchema(StrictSchema):
    worker = fields.String()
    estimators = fields.List(fields.Nested(EstimatorSchema))
    batching = fields.Dict(metadata={"description": "batch limits and the mean size of the last 100 batches of this worker process"})
