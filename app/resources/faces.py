"""/faces: faces with descriptors, filters and batches."""
from __future__ import annotations

import uuid
from typing import Any

from app.auth import current_principal, require
from app.db import session_scope
from app.resources.blueprint import Blueprint
from app.schemas.faces import (DescriptorVersionArgs, FaceBatchCreatedSchema, FaceBatchCreateSchema, FaceCountSchema,
                               FaceCreatedSchema, FaceCreateSchema, FaceDescriptorsSchema, FaceFilterArgs,
                               FaceIdsSchema, FaceListArgs, FaceListSchema, FacePatchSchema, FaceSchema)
from app.services import faces as service

blp = Blueprint("faces", __name__, url_prefix="/faces", description="Faces")


def _read_scope(args: dict[str, Any]) -> uuid.UUID | None:
    return current_principal().read_account_id(args.pop("account_id", None))


@blp.route("", methods=["POST"])
@blp.arguments(FaceCreateSchema)
@blp.response(201, FaceCreatedSchema)
@require("face", "creation")
def create_face(body: dict[str, Any]) -> dict[str, Any]:
    """Create a face from a temporary attribute, from external descriptors/attributes, or empty."""
    with session_scope() as session:
        return service.create_faces(session, current_principal().account_id, [body])[0]


@blp.route("/batch", methods=["POST"])
@blp.arguments(FaceBatchCreateSchema)
@blp.response(201, FaceBatchCreatedSchema)
@require("face", "creation")
def create_faces(body: dict[str, Any]) -> dict[str, Any]:
    """Create up to `faces_batch_max` faces in one transaction: all of them or none."""
    with session_scope() as session:
        return {"faces": service.create_faces(session, current_principal().account_id, body["faces"])}


@blp.route("", methods=["GET"])
@blp.arguments(FaceListArgs, location="query")
@blp.response(200, FaceListSchema)
@require("face", "view")
def list_faces(args: dict[str, Any]) -> dict[str, Any]:
    """Faces in creation order (`face_id` order), filtered."""
    page, page_size = args.pop("page"), args.pop("page_size")
    account_id = _read_scope(args)
    with session_scope() as session:
        faces = service.list_faces(session, account_id, args, page, page_size)
        return {"faces": faces, "page": page, "page_size": page_size}


@blp.route("/count", methods=["GET"])
@blp.arguments(FaceFilterArgs, location="query")
@blp.response(200, FaceCountSchema)
@require("face", "view")
def count_faces(args: dict[str, Any]) -> dict[str, Any]:
    account_id = _read_scope(args)
    with session_scope() as session:
        return {"faces_count": service.count_faces(session, account_id, args)}


@blp.route("", methods=["DELETE"])
@blp.arguments(FaceIdsSchema)
@blp.response(204)
@require("face", "deletion")
def delete_faces(body: dict[str, Any]) -> None:
    """Delete up to `faces_batch_max` faces given in the JSON body; all of them or none (404)."""
    with session_scope() as session:
        service.delete_faces(session, current_principal().account_id, body["face_ids"])


@blp.route("/<uuid:face_id>", methods=["GET"])
@blp.response(200, FaceSchema)
@require("face", "view")
def get_face(face_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face = service.get_face(session, current_principal().read_account_id(), face_id)
        return service.face_views(session, [face])[0]


@blp.route("/<uuid:face_id>", methods=["PATCH"])
@blp.arguments(FacePatchSchema)
@blp.response(200, FaceSchema)
@require("face", "modification")
def patch_face(body: dict[str, Any], face_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        face = service.update_face(session, current_principal().account_id, face_id, body)
        return service.face_views(session, [face])[0]


@blp.route("/<uuid:face_id>", methods=["DELETE"])
@blp.response(204)
@require("face", "deletion")
def delete_face(face_id: uuid.UUID) -> None:
    with session_scope() as session:
        service.delete_faces(session, current_principal().account_id, [face_id])


@blp.route("/<uuid:face_id>/descriptors", methods=["GET"])
@blp.arguments(DescriptorVersionArgs, location="query")
@blp.response(200, FaceDescriptorsSchema)
@require("face", "view")
def get_descriptors(args: dict[str, Any], face_id: uuid.UUID) -> dict[str, Any]:
    """The face's descriptors in SDK format (base64), one per model version."""
    with session_scope() as session:
        descriptors = service.get_descriptors(session, current_principal().read_account_id(), face_id,
                                              args.get("version"))
        return {"face_id": face_id, "descriptors": descriptors}


@blp.route("/<uuid:face_id>/descriptors", methods=["DELETE"])
@blp.arguments(DescriptorVersionArgs, location="query")
@blp.response(204)
@require("face", "modification")
def delete_descriptors(args: dict[str, Any], face_id: uuid.UUID) -> None:
    """Remove the descriptor of one version (`?version=`) or all of them; the face stays."""
    with session_scope() as session:
        service.delete_descriptors(session, current_principal().account_id, face_id, args.get("version"))
