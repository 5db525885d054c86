"""/attributes: temporary attributes (descriptors, basic attributes, samples) with a TTL."""
from __future__ import annotations

import uuid
from typing import Any

from app.attributes import service
from app.attributes.schemas import (
    AttributeCreatedSchema,
    AttributeCreateSchema,
    AttributeSamplesSchema,
    AttributeSchema,
)
from app.auth import current_principal, require
from app.blueprint import Blueprint

blp = Blueprint("attributes", __name__, url_prefix="/attributes", description="Temporary attributes")


@blp.route("", methods=["POST"])
@blp.arguments(AttributeCreateSchema, required=True)  # descriptors or basic_attributes (its openapi_rules)
@blp.response(201, AttributeCreatedSchema)
@require("attribute", "creation")
def create_attribute(body: dict[str, Any]) -> dict[str, Any]:
    """Store external descriptors (SDK or raw format) and/or basic attributes for `ttl` seconds."""
    scope = current_principal().scope
    service.check_samples(scope, body.get("sample_ids") or [])
    record = service.create_attribute(
        scope, descriptors=service.decode_descriptors(body.get("descriptors") or []),
        basic_attributes=body.get("basic_attributes"), sample_ids=body.get("sample_ids") or [], ttl=body["ttl"])
    return {"attribute_id": record.attribute_id, "expire_time": record.expire_time}


@blp.route("/<uuid:attribute_id>", methods=["GET"])
@blp.response(200, AttributeSchema)
@require("attribute", "view")
def get_attribute(attribute_id: uuid.UUID) -> dict[str, Any]:
    """The attribute with its descriptors in SDK format; 404 once expired. HEAD answers the same status."""
    return service.get_attribute(current_principal().read_scope(), attribute_id).as_response()


@blp.route("/<uuid:attribute_id>/samples", methods=["GET"])
@blp.response(200, AttributeSamplesSchema)
@require("attribute", "view")
def get_attribute_samples(attribute_id: uuid.UUID) -> dict[str, Any]:
    return {"samples": service.get_attribute(current_principal().read_scope(), attribute_id).sample_ids}


@blp.route("/<uuid:attribute_id>", methods=["DELETE"])
@blp.response(204)
@require("attribute", "deletion")
def delete_attribute(attribute_id: uuid.UUID) -> None:
    service.delete_attribute(current_principal().scope, attribute_id)


BLUEPRINTS = [blp]
