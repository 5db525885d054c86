"""/faces (faces with descriptors, filters and batches) and /lists (lists of faces and their members)."""
from __future__ import annotations

import uuid
from typing import Any

from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.faces import lists, service
from app.faces.models import Face, FaceList
from app.faces.schemas import (
    DescriptorVersionArgs,
    FaceBatchCreatedSchema,
    FaceBatchCreateSchema,
    FaceCountSchema,
    FaceCreatedSchema,
    FaceCreateSchema,
    FaceDescriptorsSchema,
    FaceFilterArgs,
    FaceIdsSchema,
    FaceListArgs,
    FaceListSchema,
    FacePatchSchema,
    FaceSchema,
    ListCountSchema,
    ListCreatedSchema,
    ListCreateSchema,
    ListFacesChangedSchema,
    ListFacesPatchSchema,
    ListFilterArgs,
    ListListArgs,
    ListListSchema,
    ListPatchSchema,
    ListSchema,
)
from app.scope import Scope, get_or_404

faces_blp = Blueprint("faces", __name__, url_prefix="/faces", description="Faces")


def _read_scope(args: dict[str, Any]) -> Scope:
    return current_principal().read_scope(args.pop("account_id", None))


@faces_blp.route("", methods=["POST"])
@faces_blp.arguments(FaceCreateSchema)
@faces_blp.response(201, FaceCreatedSchema)
@require("face", "creation")
def create_face(body: dict[str, Any]) -> dict[str, Any]:
    """Create a face from a temporary attribute, from external descriptors/attributes, or empty."""
    with session_scope() as session:
        return service.create_faces(session, current_principal().scope, [body])[0]


@faces_blp.route("/batch", methods=["POST"])
@faces_blp.arguments(FaceBatchCreateSchema)
@faces_blp.response(201, FaceBatchCreatedSchema)
@require("face", "creation")
def create_faces(body: dict[str, Any]) -> dict[str, Any]:
    """Create up to `faces_batch_max` faces in one transaction: all of them or none."""
    with session_scope() as session:
        return {"faces": service.create_faces(session, current_principal().scope, body["faces"])}


@faces_blp.route("", methods=["GET"])
@faces_blp.arguments(FaceListArgs, location="query")
@faces_blp.response(200, FaceListSchema)
@require("face", "view")
def list_faces(args: dict[str, Any]) -> dict[str, Any]:
    """Faces in creation order (`face_id` order), filtered."""
    return filtered_page("faces", args, service.list_faces)


@faces_blp.route("/count", methods=["GET"])
@faces_blp.arguments(FaceFilterArgs, location="query")
@faces_blp.response(200, FaceCountSchema)
@require("face", "view")
def count_faces(args: dict[str, Any]) -> dict[str, Any]:
    scope = _read_scope(args)
    with session_scope() as session:
        return {"faces_count": service.count_faces(session, scope, args)}


@faces_blp.route("", methods=["DELETE"])
@faces_blp.arguments(FaceIdsSchema)
@faces_blp.response(204)
@require("face", "deletion")
def delete_faces(body: dict[str, Any]) -> None:
    """Delete up to `faces_batch_max` faces given in the JSON body; all of them or none (404)."""
    with session_scope() as session:
        service.delete_faces(session, current_principal().scope, body["face_ids"])


@faces_blp.route("/<uuid:face_id>", methods=["GET"])
@faces_blp.response(200, FaceSchema)
@require("face", "view")
def get_face(face_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face = get_or_404(session, Face, face_id, current_principal().read_scope())
        return service.face_views(session, [face])[0]


@faces_blp.route("/<uuid:face_id>", methods=["PATCH"])
@faces_blp.arguments(FacePatchSchema)
@faces_blp.response(200, FaceSchema)
@require("face", "modification")
def patch_face(body: dict[str, Any], face_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face = service.update_face(session, current_principal().scope, face_id, body)
        return service.face_views(session, [face])[0]


@faces_blp.route("/<uuid:face_id>", methods=["DELETE"])
@faces_blp.response(204)
@require("face", "deletion")
def delete_face(face_id: uuid.UUID) -> None:
    with session_scope() as session:
        service.delete_faces(session, current_principal().scope, [face_id])


@faces_blp.route("/<uuid:face_id>/descriptors", methods=["GET"])
@faces_blp.arguments(DescriptorVersionArgs, location="query")
@faces_blp.response(200, FaceDescriptorsSchema)
@require("face", "view")
def get_descriptors(args: dict[str, Any], face_id: uuid.UUID) -> dict[str, Any]:
    """The face's descriptors in SDK format (base64), one per model version."""
    with session_scope() as session:
        descriptors = service.get_descriptors(session, current_principal().read_scope(), face_id,
                                              args.get("version"))
        return {"face_id": face_id, "descriptors": descriptors}


@faces_blp.route("/<uuid:face_id>/descriptors", methods=["DELETE"])
@faces_blp.arguments(DescriptorVersionArgs, location="query")
@faces_blp.response(204)
@require("face", "modification")
def delete_descriptors(args: dict[str, Any], face_id: uuid.UUID) -> None:
    """Remove the descriptor of one version (`?version=`) or all of them; the face stays."""
    with session_scope() as session:
        service.delete_descriptors(session, current_principal().scope, face_id, args.get("version"))


# ---- lists ------------------------------------------------------------
lists_blp = Blueprint("lists", __name__, url_prefix="/lists", description="Lists of faces")


@lists_blp.route("", methods=["POST"])
@lists_blp.arguments(ListCreateSchema)
@lists_blp.response(201, ListCreatedSchema)
@require("list", "creation")
def create_list(body: dict[str, Any]) -> dict[str, Any]:
    with session_scope() as session:
        return {"list_id": lists.create_list(session, current_principal().scope, **body).list_id}


@lists_blp.route("", methods=["GET"])
@lists_blp.arguments(ListListArgs, location="query")
@lists_blp.response(200, ListListSchema)
@require("list", "view")
def list_lists(args: dict[str, Any]) -> dict[str, Any]:
    """Lists in creation order, filtered; each with its `faces_count`. Members: `GET /faces?list_id=`."""
    return filtered_page("lists", args, lists.list_lists)


@lists_blp.route("/count", methods=["GET"])
@lists_blp.arguments(ListFilterArgs, location="query")
@lists_blp.response(200, ListCountSchema)
@require("list", "view")
def count_lists(args: dict[str, Any]) -> dict[str, Any]:
    scope = _read_scope(args)
    with session_scope() as session:
        return {"lists_count": lists.count_lists(session, scope, args)}


@lists_blp.route("/<uuid:list_id>", methods=["GET"])
@lists_blp.response(200, ListSchema)
@require("list", "view")
def get_list(list_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face_list = get_or_404(session, FaceList, list_id, current_principal().read_scope())
        return lists.list_views(session, [face_list])[0]


@lists_blp.route("/<uuid:list_id>", methods=["PATCH"])
@lists_blp.arguments(ListPatchSchema)
@lists_blp.response(200, ListSchema)
@require("list", "modification")
def patch_list(body: dict[str, Any], list_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face_list = lists.update_list(session, current_principal().scope, list_id, body["user_data"])
        return lists.list_views(session, [face_list])[0]


@lists_blp.route("/<uuid:list_id>", methods=["DELETE"])
@lists_blp.response(204)
@require("list", "deletion")
def delete_list(list_id: uuid.UUID) -> None:
    """Delete the list; its faces stay."""
    with session_scope() as session:
        lists.delete_list(session, current_principal().scope, list_id)


@lists_blp.route("/<uuid:list_id>/faces", methods=["PATCH"])
@lists_blp.arguments(ListFacesPatchSchema)
@lists_blp.response(200, ListFacesChangedSchema)
@require("list", "modification")
def change_list_faces(body: dict[str, Any], list_id: uuid.UUID) -> dict[str, Any]:
    """Attach or detach faces: idempotent, and all or nothing (one foreign or unknown face: 404, no change)."""
    with session_scope() as session:
        changed = lists.change_faces(session, current_principal().scope, list_id, body["action"],
                                       body["face_ids"])
        return {"list_id": list_id, "action": body["action"], "changed": changed}


BLUEPRINTS = [faces_blp, lists_blp]
