"""/verifiers: stored 1:1 verification policies and verifications under them."""
from __future__ import annotations

import uuid
from typing import Any

from app import dispatch
from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.errors import APIError
from app.matching.api import check_reference_permissions, inline
from app.scope import get_or_404
from app.sdk import service as sdk
from app.sdk.api import body_doc, request_images
from app.verifiers import service
from app.verifiers.models import Verifier
from app.verifiers.schemas import (
    VerificationSchema,
    VerificationsSchema,
    VerifierCreatedSchema,
    VerifierCreateSchema,
    VerifierListArgs,
    VerifierListSchema,
    VerifierPatchSchema,
    VerifierSchema,
    VerifyImagesBody,
)

blp = Blueprint("verifiers", __name__, url_prefix="/verifiers", description="Verifiers (1:1)")


@blp.route("", methods=["POST"])
@blp.arguments(VerifierCreateSchema)
@blp.response(201, VerifierCreatedSchema)
@require("verifier", "creation")
def create_verifier(body: dict[str, Any]) -> dict[str, Any]:
    with session_scope() as session:
        return {"verifier_id": service.create_verifier(session, current_principal().scope, **body).verifier_id}


@blp.route("", methods=["GET"])
@blp.arguments(VerifierListArgs, location="query")
@blp.response(200, VerifierListSchema)
@require("verifier", "view")
def list_verifiers(args: dict[str, Any]) -> dict[str, Any]:
    return filtered_page("verifiers", args, service.list_verifiers)


@blp.route("/<uuid:verifier_id>", methods=["GET"])
@blp.response(200, VerifierSchema)
@require("verifier", "view")
def get_verifier(verifier_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return get_or_404(session, Verifier, verifier_id, current_principal().read_scope())


@blp.route("/<uuid:verifier_id>", methods=["PATCH"])
@blp.arguments(VerifierPatchSchema)
@blp.response(200, VerifierSchema)
@require("verifier", "modification")
def patch_verifier(body: dict[str, Any], verifier_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return service.update_verifier(session, current_principal().scope, verifier_id, body)


@blp.route("/<uuid:verifier_id>", methods=["DELETE"])
@blp.response(204)
@require("verifier", "deletion")
def delete_verifier(verifier_id: uuid.UUID) -> None:
    with session_scope() as session:
        service.delete_verifier(session, current_principal().scope, verifier_id)


@blp.route("/<uuid:verifier_id>/verifications", methods=["POST"])
@blp.arguments(VerificationSchema)
@blp.response(200, VerificationsSchema)
@require("verifier", "view")
def verify(body: dict[str, Any], verifier_id: uuid.UUID) -> dict[str, Any]:
    """Every reference against every candidate: similarity and pass/fail under the verifier's threshold."""
    check_reference_permissions([*body["references"], *body["candidates"]])
    scope = current_principal().read_scope()
    if inline(len(body["references"]) * len(body["candidates"])):
        with session_scope() as session:
            return {"verifications": service.verify(session, scope, verifier_id, body)}
    sig = dispatch.task("matcher.verify", str(verifier_id), scope.wire(), body)
    return {"verifications": dispatch.call(sig)}


@blp.route("/<uuid:verifier_id>/images", methods=["POST"])
@blp.response(200, VerificationsSchema)
@blp.doc(**body_doc(VerifyImagesBody))
@require("verifier", "view")
def verify_images(verifier_id: uuid.UUID) -> dict[str, Any]:
    """Each image's largest face (detected and extracted on a gpu worker, in the same chain as the
    verification) against the candidates, or, without candidates, every image against each later
    one: two photos of one person pass. Images come as with /sdk."""
    images, body = request_images(VerifyImagesBody)
    candidates = body.get("candidates") or []
    if not candidates and len(images) < 2:
        raise APIError("validation", "candidates: give candidates, or at least two images to compare")
    check_reference_permissions(candidates)
    principal = current_principal()
    with session_scope() as session:
        version = get_or_404(session, Verifier, verifier_id, principal.read_scope()).version
    options = {"detect_face": 1, "extract_descriptor": 1, "descriptor_version": version}
    with sdk.stored_sources(principal.scope, images) as refs:
        return {"verifications": dispatch.call(dispatch.chain_of(
            dispatch.task("inference.sdk", principal.scope.wire(), refs, options),
            dispatch.task("matcher.verify_images", str(verifier_id), principal.read_scope().wire(), candidates)))}


BLUEPRINTS = [blp]
