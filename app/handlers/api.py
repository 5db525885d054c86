"""/handlers: stored processing policies, and a validator that checks policies without storing."""
from __future__ import annotations

import uuid
from typing import Any

from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.handlers import processing, service
from app.handlers.models import Handler
from app.handlers.schemas import (
    HandlerCreatedSchema,
    HandlerCreateSchema,
    HandlerEventsBody,
    HandlerEventsSchema,
    HandlerListArgs,
    HandlerListSchema,
    HandlerPatchSchema,
    HandlerSchema,
    ValidatorAnswerSchema,
    ValidatorSchema,
)
from app.scope import get_or_404
from app.sdk.api import body_doc, request_images

blp = Blueprint("handlers", __name__, url_prefix="/handlers", description="Handlers (processing policies)")


@blp.route("", methods=["POST"])
@blp.arguments(HandlerCreateSchema)
@blp.response(201, HandlerCreatedSchema)
@require("handler", "creation")
def create_handler(body: dict[str, Any]) -> dict[str, Any]:
    with session_scope() as session:
        handler_id = service.create_handler(session, current_principal().scope, **body).handler_id
    return {"handler_id": handler_id, "url": f"/handlers/{handler_id}"}


@blp.route("", methods=["GET"])
@blp.arguments(HandlerListArgs, location="query")
@blp.response(200, HandlerListSchema)
@require("handler", "view")
def list_handlers(args: dict[str, Any]) -> dict[str, Any]:
    return filtered_page("handlers", args, service.list_handlers)


@blp.route("/validator", methods=["POST"])
@blp.arguments(ValidatorSchema)
@blp.response(200, ValidatorAnswerSchema)
@require("handler", "creation")
def validate_policies(body: dict[str, Any]) -> dict[str, Any]:
    """What creating a static handler with these policies would refuse, without creating it."""
    with session_scope() as session:
        service.check_policies(session, current_principal().scope, body["policies"])
    return {"valid": True}


@blp.route("/<uuid:handler_id>", methods=["GET"])
@blp.response(200, HandlerSchema)
@require("handler", "view")
def get_handler(handler_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return get_or_404(session, Handler, handler_id, current_principal().read_scope())


@blp.route("/<uuid:handler_id>", methods=["PUT"])
@blp.arguments(HandlerCreateSchema)
@blp.response(200, HandlerSchema)
@require("handler", "modification")
def replace_handler(body: dict[str, Any], handler_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return service.replace_handler(session, current_principal().scope, handler_id, **body)


@blp.route("/<uuid:handler_id>", methods=["PATCH"])
@blp.arguments(HandlerPatchSchema)
@blp.response(200, HandlerSchema)
@require("handler", "modification")
def patch_handler(body: dict[str, Any], handler_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return service.update_handler(session, current_principal().scope, handler_id, body)


@blp.route("/<uuid:handler_id>", methods=["DELETE"])
@blp.response(204)
@require("handler", "deletion")
def delete_handler(handler_id: uuid.UUID) -> None:
    with session_scope() as session:
        service.delete_handler(session, current_principal().scope, handler_id)


@blp.route("/<uuid:handler_id>/events", methods=["POST"])
@blp.response(201, HandlerEventsSchema)
@blp.doc(**body_doc(HandlerEventsBody))
@require("event", "creation")
def generate_events(handler_id: uuid.UUID) -> dict[str, Any]:
    """Events from images under the handler's policies (a dynamic handler's come in the body): one
    per image, or one aggregated. Images come as with /sdk: a raw image, a multipart form (the other
    fields as form fields holding JSON) or a JSON body."""
    images, body = request_images(HandlerEventsBody)
    if "image_fields" in body:
        body["images"] = body.pop("image_fields")
    return processing.generate(current_principal().scope, handler_id, images, body)


BLUEPRINTS = [blp]
