"""/iso: ISO/IEC 19794-5-style portrait checks, each with its value and 1/0 against thresholds."""
from __future__ import annotations

from typing import Any

from app.auth import current_principal, require
from app.errors import APIError
from app.resources.blueprint import Blueprint
from app.resources.sdk import BODY_DOC, request_images
from app.schemas.sdk import IsoBody, IsoResultSchema
from app.services import sdk as service
from inference import iso

blp = Blueprint("iso", __name__, url_prefix="/iso", description="Remote SDK: ISO/IEC 19794-5 checks")


@blp.route("", methods=["POST"])
@blp.response(200, IsoResultSchema)
@blp.doc(**BODY_DOC)
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
    return service.run("inference.iso", current_principal().account_id, images, {"thresholds": thresholds})
