"""/verifiers: stored 1:1 verification policies and verifications under them."""
from __future__ import annotations

import uuid
from typing import Any

from app import dispatch
from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.matching.api import check_reference_permissions, inline
from app.scope import get_or_404
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


BLUEPRINTS = [blp]
