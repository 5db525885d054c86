"""/sdk: detection, estimations, warps and descriptors of uploaded images (work runs on ``gpu``).

Images come as a raw image body (one image), a multipart form (one file per image, any field
names) or JSON ``{"images": [{"image": "<base64>"} | {"url": "http..."}, ...]}``; options are
query parameters in every case. /detector and /iso take their images the same way.
"""
from __future__ import annotations

from typing import Any

from flask import request
from marshmallow import ValidationError

from app import jsonparse
from app.auth import current_principal, require
from app.blueprint import Blueprint
from app.errors import APIError, flatten_messages
from app.image_store.service import IMAGE_TYPES
from app.schemas import StrictSchema
from app.sdk import service
from app.sdk.schemas import (
    DetectorArgs,
    EstimatorsSchema,
    ImagesBody,
    IsoBody,
    IsoResultSchema,
    SdkArgs,
    SdkResultSchema,
)
from inference import iso

sdk_blp = Blueprint("sdk", __name__, url_prefix="/sdk", description="Remote SDK: detect, estimate, warp, extract")

def body_doc(json_body: type[StrictSchema]) -> dict[str, Any]:
    """The three ways images come (see request_images): a raw image, a form (one file per image under
    any field names, documented as one "image"; the JSON body's other fields may come as form fields
    holding JSON) or a JSON body."""
    binary = {"type": "string", "format": "binary", "minLength": 1}
    form = {"type": "object", "properties": {"image": binary}, "required": ["image"], "additionalProperties": False}
    return {"requestBody": {"required": True, "content": {
        **{mimetype: {"schema": binary} for mimetype in sorted(IMAGE_TYPES)},
        "multipart/form-data": {"schema": form},
        "application/json": {"schema": json_body},
    }}}


def _load(schema: StrictSchema, data: Any) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise APIError("validation", "; ".join(flatten_messages(exc.messages))) from None


def request_images(schema: type[StrictSchema] = ImagesBody) -> tuple[list[service.SourceImage], dict[str, Any]]:
    """The request's images, and the other fields of a JSON body (or JSON-valued form fields);
    for a JSON body, ``images`` holds each image's fields other than its data."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        images = [service.SourceImage(f.filename or name, f.read(), f.mimetype or "application/octet-stream")
                  for name in request.files for f in request.files.getlist(name)]
        extra = {}
        for name, value in request.form.items():
            try:
                extra[name] = jsonparse.loads(value)
            except jsonparse.JSONRejected as exc:
                raise APIError("validation", f"{name}: form field must hold JSON ({exc})") from None
        return images, _load(schema(partial=("images",)), extra) if extra else {}
    if mimetype == "application/json":
        body = _load(schema(), request.get_json())  # bad or over-limit JSON: 400 bad_json naming why
        images, per_image = [], []
        for n, entry in enumerate(body.pop("images")):
            name = entry.get("filename") or f"#{n}"
            if "sample_id" in entry:  # read by the caller, who knows whose samples may be read
                images.append(service.SourceImage(name, b"", sample_id=str(entry["sample_id"])))
            else:
                data = (service.decode_base64_image(entry["image"], name) if "image" in entry
                        else service.fetch_url(entry["url"], name))
                images.append(service.SourceImage(name, data))
            per_image.append({k: v for k, v in entry.items() if k not in ("image", "url", "sample_id")})
        return images, {**body, "images": per_image}
    if mimetype in IMAGE_TYPES or mimetype == "application/octet-stream":
        return [service.SourceImage("image", request.get_data(), mimetype)], {}
    raise APIError("unsupported_media_type", f"send an image ({', '.join(sorted(IMAGE_TYPES))}), multipart/form-data "
                                             f"or application/json, got '{request.content_type or 'none'}'")


@sdk_blp.route("", methods=["POST"])
@sdk_blp.arguments(SdkArgs, location="query")
@sdk_blp.response(200, SdkResultSchema)
@sdk_blp.doc(**body_doc(ImagesBody))
@require("sdk", "creation")
def run_sdk(args: dict[str, Any]) -> dict[str, Any]:
    """Faces (and bodies) of each image with the asked estimations; samples, descriptors,
    temporary attributes and the aggregate over all images when asked."""
    images, _ = request_images()
    return service.run("inference.sdk", current_principal().scope, images, args)


@sdk_blp.route("/estimators", methods=["GET"])
@sdk_blp.response(200, EstimatorsSchema)
@require("sdk", "creation")
def list_estimators() -> dict[str, Any]:
    """Every estimator of a gpu worker: enabled by its settings, already loaded or not."""
    return service.estimators()


# ---- detector ------------------------------------------------------------
detector_blp = Blueprint("detector", __name__, url_prefix="/detector", description="Remote SDK: detection and samples")


@detector_blp.route("", methods=["POST"])
@detector_blp.arguments(DetectorArgs, location="query")
@detector_blp.response(200, SdkResultSchema)
@detector_blp.doc(**body_doc(ImagesBody))
@require("sdk", "creation")
def detect(args: dict[str, Any]) -> dict[str, Any]:
    """Faces (box, score, 5 landmarks) and/or bodies of each image, each with the id of its stored
    sample (read it at /samples/faces/{id} or /samples/bodies/{id})."""
    images, _ = request_images()
    options = {**args, "face_warp": 1, "body_warp": 1}
    return service.run("inference.sdk", current_principal().scope, images, options)


# ---- iso ------------------------------------------------------------
iso_blp = Blueprint("iso", __name__, url_prefix="/iso", description="Remote SDK: ISO/IEC 19794-5 checks")


@iso_blp.route("", methods=["POST"])
@iso_blp.response(200, IsoResultSchema)
@iso_blp.doc(**body_doc(IsoBody))
@require("sdk", "creation")
def check() -> dict[str, Any]:
    """Every check of each image. Thresholds (JSON body field, or a form field holding JSON) replace
    the defaults per check: ``{"head_yaw": {"min": -10, "max": 10}, "image_format": ["JPEG", "PNG"]}``."""
    images, extra = request_images(IsoBody)
    thresholds = extra.get("thresholds")
    try:
        iso.thresholds_from(thresholds)
    except (TypeError, ValueError) as exc:
        raise APIError("bad_iso_threshold", str(exc)) from None
    return service.run("inference.iso", current_principal().scope, images, {"thresholds": thresholds})


BLUEPRINTS = [sdk_blp, detector_blp, iso_blp]
