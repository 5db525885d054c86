"""/detector: find faces and bodies, store their samples, answer boxes and sample ids."""
from __future__ import annotations

from typing import Any

from app.auth import current_principal, require
from app.resources.blueprint import Blueprint
from app.resources.sdk import BODY_DOC, request_images
from app.schemas.sdk import DetectorArgs, SdkResultSchema
from app.services import sdk as service

blp = Blueprint("detector", __name__, url_prefix="/detector", description="Remote SDK: detection and samples")


@blp.route("", methods=["POST"])
@blp.arguments(DetectorArgs, location="query")
@blp.response(200, SdkResultSchema)
@blp.doc(**BODY_DOC)
@require("sdk", "creation")
def detect(args: dict[str, Any]) -> dict[str, Any]:
    """Faces (box, score, 5 landmarks) and/or bodies of each image, each with the id of its stored
    sample (read it at /samples/faces/{id} or /samples/bodies/{id})."""
    images, _ = request_images()
    options = {**args, "face_warp": 1, "body_warp": 1}
    return service.run("inference.sdk", current_principal().account_id, images, options)
