"""/verifiers: stored 1:1 verification policies and verifications under them."""
from __future__ import annotations

import uuid
from typing import Any

from flask import request

from app import settings
from app.auth import current_principal, require
from app.db import session_scope
from app.resources.blueprint import Blueprint
from app.resources.matcher import check_reference_permissions
from app.schemas.verifiers import (VerificationSchema, VerificationsSchema, VerifierCreatedSchema,
                                   VerifierCreateSchema, VerifierListArgs, VerifierListSchema, VerifierPatchSchema,
                                   VerifierSchema)
from app.services import verifiers as service
from tasks import matcher as tasks

blp = Blueprint("verifiers", __name__, url_prefix="/verifiers", description="Verifiers (1:1)")


@blp.route("", methods=["POST"])
@blp.arguments(VerifierCreateSchema)
@blp.response(201, VerifierCreatedSchema)
@require("verifier", "creation")
def create_verifier(body: dict[str, Any]) -> dict[str, Any]:
    with session_scope() as session:
        return {"verifier_id": service.create_verifier(session, current_principal().account_id, **body).verifier_id}


@blp.route("", methods=["GET"])
@blp.arguments(VerifierListArgs, location="query")
@blp.response(200, VerifierListSchema)
@require("verifier", "view")
def list_verifiers(args: dict[str, Any]) -> dict[str, Any]:
    page, page_size = args.pop("page"), args.pop("page_size")
    account_id = current_principal().read_account_id(args.pop("account_id", None))
    with session_scope() as session:
        return {"verifiers": service.list_verifiers(session, account_id, args, page, page_size),
                "page": page, "page_size": page_size}


@blp.route("/<uuid:verifier_id>", methods=["GET"])
@blp.response(200, VerifierSchema)
@require("verifier", "view")
def get_verifier(verifier_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return service.get_verifier(session, current_principal().read_account_id(), verifier_id)


@blp.route("/<uuid:verifier_id>", methods=["PATCH"])
@blp.arguments(VerifierPatchSchema)
@blp.response(200, VerifierSchema)
@require("verifier", "modification")
def patch_verifier(body: dict[str, Any], verifier_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return service.update_verifier(session, current_principal().account_id, verifier_id, body)


@blp.route("/<uuid:verifier_id>", methods=["DELETE"])
@blp.response(204)
@require("verifier", "deletion")
def delete_verifier(verifier_id: uuid.UUID) -> None:
    with session_scope() as session:
        service.delete_verifier(session, current_principal().account_id, verifier_id)


@blp.route("/<uuid:verifier_id>/verifications", methods=["POST"])
@blp.arguments(VerificationSchema)
@blp.response(200, VerificationsSchema)
@require("verifier", "view")
def verify(body: dict[str, Any], verifier_id: uuid.UUID) -> dict[str, Any]:
    """Every reference against every candidate: similarity and pass/fail under the verifier's threshold."""
    check_reference_permissions([*body["references"], *body["candidates"]])
    principal = current_principal()
    payload = {"verifier_id": str(verifier_id), "account_id": None if principal.read_account_id() is None
               else str(principal.read_account_id()), "body": request.get_json()}
    inline = len(body["references"]) * len(body["candidates"]) <= settings.current().matcher_inline_max
    return {"verifications": tasks.call(tasks.verify, payload, inline=inline)}
