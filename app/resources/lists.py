"""/lists: lists of faces and their members."""
from __future__ import annotations

import uuid
from typing import Any

from app.auth import current_principal, require
from app.db import session_scope
from app.resources.blueprint import Blueprint
from app.schemas.lists import (ListCountSchema, ListCreatedSchema, ListCreateSchema, ListFacesChangedSchema,
                               ListFacesPatchSchema, ListFilterArgs, ListListArgs, ListListSchema, ListPatchSchema,
                               ListSchema)
from app.services import lists as service

blp = Blueprint("lists", __name__, url_prefix="/lists", description="Lists of faces")


@blp.route("", methods=["POST"])
@blp.arguments(ListCreateSchema)
@blp.response(201, ListCreatedSchema)
@require("list", "creation")
def create_list(body: dict[str, Any]) -> dict[str, Any]:
    with session_scope() as session:
        return {"list_id": service.create_list(session, current_principal().account_id, **body).list_id}


@blp.route("", methods=["GET"])
@blp.arguments(ListListArgs, location="query")
@blp.response(200, ListListSchema)
@require("list", "view")
def list_lists(args: dict[str, Any]) -> dict[str, Any]:
    """Lists in creation order, filtered; each with its `faces_count`. Members: `GET /faces?list_id=`."""
    page, page_size = args.pop("page"), args.pop("page_size")
    account_id = current_principal().read_account_id(args.pop("account_id", None))
    with session_scope() as session:
        return {"lists": service.list_lists(session, account_id, args, page, page_size),
                "page": page, "page_size": page_size}


@blp.route("/count", methods=["GET"])
@blp.arguments(ListFilterArgs, location="query")
@blp.response(200, ListCountSchema)
@require("list", "view")
def count_lists(args: dict[str, Any]) -> dict[str, Any]:
    account_id = current_principal().read_account_id(args.pop("account_id", None))
    with session_scope() as session:
        return {"lists_count": service.count_lists(session, account_id, args)}


@blp.route("/<uuid:list_id>", methods=["GET"])
@blp.response(200, ListSchema)
@require("list", "view")
def get_list(list_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face_list = service.get_list(session, current_principal().read_account_id(), list_id)
        return service.list_views(session, [face_list])[0]


@blp.route("/<uuid:list_id>", methods=["PATCH"])
@blp.arguments(ListPatchSchema)
@blp.response(200, ListSchema)
@require("list", "modification")
def patch_list(body: dict[str, Any], list_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face_list = service.update_list(session, current_principal().account_id, list_id, body["user_data"])
        return service.list_views(session, [face_list])[0]


@blp.route("/<uuid:list_id>", methods=["DELETE"])
@blp.response(204)
@require("list", "deletion")
def delete_list(list_id: uuid.UUID) -> None:
    """Delete the list; its faces stay."""
    with session_scope() as session:
        service.delete_list(session, current_principal().account_id, list_id)


@blp.route("/<uuid:list_id>/faces", methods=["PATCH"])
@blp.arguments(ListFacesPatchSchema)
@blp.response(200, ListFacesChangedSchema)
@require("list", "modification")
def change_list_faces(body: dict[str, Any], list_id: uuid.UUID) -> dict[str, Any]:
    """Attach or detach faces: idempotent, and all or nothing (one foreign or unknown face: 404, no change)."""
    with session_scope() as session:
        changed = service.change_faces(session, current_principal().account_id, list_id, body["action"],
                                       body["face_ids"])
        return {"list_id": list_id, "action": body["action"], "changed": changed}
