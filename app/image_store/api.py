"""The routes every account-scoped image store resource shares: /images, /objects, /samples/faces
and /samples/bodies differ only in their bucket, permission, id name and what bodies they take,
so one factory builds all four from a :class:`app.image_store.service.Kind`.

Conventions (docs/image-store.md, "REST"):

* ``POST <prefix>`` stores the raw body under a new uuid4 (201); ``PUT <prefix>/<id>`` stores or
  replaces it under the given id (200). Both take ``?ttl=``; images also ``?thumbnail=1``.
* ``GET``/``HEAD <prefix>/<id>`` answer the bytes with their Content-Type, and
  ``X-Luna-Expiry-Date`` when the object expires; ``DELETE <prefix>/<id>`` answers 204.
* ``DELETE <prefix>`` with ``{"<kind>_ids": [...]}`` deletes in bulk and lists what it deleted.
* ``PUT <prefix>/<id>/ttl`` with ``{"ttl": N}`` gives an existing object a TTL.
* Another account's id answers 404 everywhere, exactly like a missing one.

/buckets, shared by every account, is an operator's resource (admin and advanced users, Basic auth).
"""
from __future__ import annotations

import uuid
from typing import Any

from flask import Response, request

from app.auth import current_principal, require, require_basic_auth
from app.blueprint import Blueprint
from app.errors import APIError
from app.image_store import service
from app.image_store.backends import StoredObject
from app.image_store.schemas import (
    BUCKET_NAME,
    BucketCreateSchema,
    BucketListSchema,
    BucketSchema,
    DeletedSchema,
    ImageCreateArgs,
    StoreCreateArgs,
    TTLSchema,
    ids_schema,
    stored_schema,
    ttl_answer_schema,
)
from app.openapi import BASIC_ONLY
from app.pagination import PaginationArgs, offset, page_answer


def _body(kind: service.Kind) -> bytes:
    """The raw body, or the single file of a multipart form (image kinds only)."""
    service.check_content_type(kind, request.content_type)
    if request.mimetype == "multipart/form-data":
        files = [f for name in request.files for f in request.files.getlist(name)]
        if len(files) != 1:
            raise APIError("bad_request", f"send exactly one file in the form, got {len(files)}")
        return files[0].read()
    return request.get_data()


def _serve(data: bytes, obj: StoredObject) -> Response:
    response = Response(data, content_type=obj.content_type, headers=service.expiry_headers(obj))
    # HEAD sends no body, but must announce the size GET would send.
    response.headers["Content-Length"] = str(obj.size)
    return response


# Sent with an object that expires, so a caller caching it knows for how long.
EXPIRY = {service.EXPIRY_HEADER: {"description": "when the object expires, as an HTTP date (GMT); absent for "
                                                 "objects kept forever", "schema": {"type": "string"}}}


def store_blueprint(kind_name: str, url_prefix: str, description: str) -> Blueprint:
    kind = service.KINDS[kind_name]
    id_field = f"{kind.name.split('_')[-1]}_id"  # image_id, object_id, sample_id
    one = f"/<uuid:{id_field}>"
    create_args = ImageCreateArgs if kind.thumbnails else StoreCreateArgs
    stored = stored_schema(id_field, kind.thumbnails)
    binary = {"type": "string", "format": "binary"}
    body = {"schema": {**binary, "minLength": 1}}
    if kind.images:
        # A form carries exactly one file (see _body); its field name is free, "file" documents it.
        one_file = {"schema": {"type": "object", "properties": {"file": body["schema"]}, "required": ["file"],
                               "additionalProperties": False}}
        accepted = {t: body for t in sorted(service.IMAGE_TYPES)} | {"multipart/form-data": one_file}
        served = {service.JPEG: {"schema": binary}}
    else:
        # Objects come back with the Content-Type they were stored with: any bytes of any type.
        accepted, served = {"*/*": body}, {"*/*": {}}
    body_doc = {"requestBody": {"required": True, "content": accepted}}
    served_doc = {"responses": {"200": {"description": "the stored bytes", "content": served, "headers": EXPIRY}}}
    blp = Blueprint(f"{kind.name}s", __name__, url_prefix=url_prefix, description=description)

    def store(args: dict[str, Any], object_id: uuid.UUID | None) -> tuple[dict[str, Any], dict[str, str]]:
        thumbnail = args.get("thumbnail", False)
        obj = service.put(kind, current_principal().scope, _body(kind), request.content_type or "",
                          object_id=object_id, ttl=args.get("ttl"), thumbnail=thumbnail)
        answer = {id_field: obj.id, "url": f"{url_prefix}/{obj.id}"}
        if thumbnail:
            answer["thumbnail_url"] = f"{url_prefix}/{obj.id}/thumbnail"
        return answer, service.expiry_headers(obj)

    def read(object_id: str) -> Response:
        reader = current_principal().read_scope()
        if request.method == "HEAD":
            return _serve(b"", service.head(kind, reader, object_id))
        return _serve(*service.get(kind, reader, object_id))

    @blp.route("", methods=["POST"])
    @blp.arguments(create_args, location="query")
    @blp.response(201, stored, headers=EXPIRY)
    @blp.doc(**body_doc)
    @require(kind.name, "creation")
    def create(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Store the body under a new id."""
        return store(args, None)

    @blp.route(one, methods=["PUT"])
    @blp.arguments(create_args, location="query")
    @blp.response(200, stored, headers=EXPIRY)
    @blp.doc(**body_doc)
    @require(kind.name, "creation")
    def put(args: dict[str, Any], **path: uuid.UUID) -> tuple[dict[str, Any], dict[str, str]]:
        """Store or replace the body under this id (409 if another account holds the id)."""
        return store(args, path[id_field])

    @blp.route(one, methods=["GET", "HEAD"])
    @blp.doc(**served_doc)
    @require(kind.name, "view")
    def get(**path: uuid.UUID) -> Response:
        """The stored bytes; HEAD gives the headers only."""
        return read(str(path[id_field]))

    @blp.route(one, methods=["DELETE"])
    @blp.response(204)
    @require(kind.name, "deletion")
    def delete(**path: uuid.UUID) -> None:
        service.delete(kind, current_principal().scope, path[id_field])

    @blp.route("", methods=["DELETE"])
    @blp.arguments(ids_schema(id_field))
    @blp.response(200, DeletedSchema)
    @require(kind.name, "deletion")
    def delete_batch(body: dict[str, Any]) -> dict[str, Any]:
        """Delete many; ids that are missing or another account's are skipped."""
        return {"deleted": service.delete_many(kind, current_principal().scope, body[f"{id_field}s"])}

    @blp.route(f"{one}/ttl", methods=["PUT"])
    @blp.arguments(TTLSchema)
    @blp.response(200, ttl_answer_schema(id_field), headers=EXPIRY)
    @require(kind.name, "creation")
    def set_ttl(body: dict[str, Any], **path: uuid.UUID) -> tuple[dict[str, Any], dict[str, str]]:
        """Give an existing object a TTL, counted from its creation."""
        obj = service.set_ttl(kind, current_principal().scope, path[id_field], body["ttl"])
        return {id_field: obj.id, "ttl": obj.ttl_days, "expires_at": obj.expires_at}, service.expiry_headers(obj)

    if kind.thumbnails:
        @blp.route(f"{one}/thumbnail", methods=["GET", "HEAD"])
        @blp.doc(**served_doc)
        @require(kind.name, "view")
        def get_thumbnail(**path: uuid.UUID) -> Response:
            """The thumbnail stored with ?thumbnail=1."""
            return read(service.thumbnail_id(str(path[id_field])))

    return blp


# Source images (stored as JPEG, EXIF-upright, RGB, optional thumbnails), objects of any type (kept
# with the Content-Type they were sent with), and face and body samples (JPEG).
STORE_BLUEPRINTS = [
    store_blueprint("image", "/images", "Source images (image store)"),
    store_blueprint("object", "/objects", "Objects of any type (image store)"),
    store_blueprint("face_sample", "/samples/faces", "Face samples (image store)"),
    store_blueprint("body_sample", "/samples/bodies", "Body samples (image store)"),
]


# ---- buckets ------------------------------------------------------------
buckets_blp = Blueprint("buckets", __name__, url_prefix="/buckets", description="Image store buckets")

MANAGER_TYPES = ("admin", "advanced_user")


def _operator() -> None:
    require_basic_auth()
    if current_principal().account_type not in MANAGER_TYPES:
        raise APIError("account_type_forbidden", "buckets are managed by admin and advanced_user accounts")


@buckets_blp.route("", methods=["POST"])
@buckets_blp.arguments(BucketCreateSchema)
@buckets_blp.response(201, BucketSchema)
@buckets_blp.doc(security=BASIC_ONLY)
def create_bucket(body: dict[str, Any]) -> dict[str, Any]:
    """Create a bucket; `ttl` becomes the default TTL of objects stored in it without one."""
    _operator()
    return {"bucket": body["bucket"], "ttl": service.create_bucket(body["bucket"], body.get("ttl"))}


@buckets_blp.route("", methods=["GET"])
@buckets_blp.arguments(PaginationArgs, location="query")
@buckets_blp.response(200, BucketListSchema)
@buckets_blp.doc(security=BASIC_ONLY)
def list_buckets(args: dict[str, Any]) -> dict[str, Any]:
    """Every bucket with its default TTL, by name."""
    _operator()
    page, page_size = args["page"], args["page_size"]
    buckets = service.list_buckets(offset(page, page_size), page_size)
    return page_answer("buckets", [{"bucket": name, "ttl": ttl} for name, ttl in buckets], page, page_size)


@buckets_blp.route("/<string:bucket>", methods=["PUT"],
                   parameters=[{"in": "path", "name": "bucket", "required": True,
                                "schema": {"type": "string", **BUCKET_NAME}}])
@buckets_blp.arguments(TTLSchema)
@buckets_blp.response(200, BucketSchema)
@buckets_blp.doc(security=BASIC_ONLY)
def set_bucket_ttl(body: dict[str, Any], bucket: str) -> dict[str, Any]:
    """Set the default TTL for objects stored later without one (and, on local disk, for objects
    stored while the bucket had no TTL)."""
    _operator()
    service.set_bucket_ttl(bucket, body["ttl"])
    return {"bucket": bucket, "ttl": body["ttl"]}


BLUEPRINTS = [*STORE_BLUEPRINTS, buckets_blp]
