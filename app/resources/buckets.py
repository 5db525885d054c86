"""/buckets: the image store's buckets and their default TTLs.

Buckets are shared by every account, so managing them is an operator's job: admin and
advanced_user accounts, with Basic auth (no token permission covers buckets, and a token must not
change what all accounts' data is kept for).
"""
from __future__ import annotations

from typing import Any

from app.auth import current_principal, require_basic_auth
from app.errors import APIError
from app.resources.blueprint import Blueprint
from app.schemas.common import PaginationArgs
from app.schemas.image_store import BucketCreateSchema, BucketListSchema, BucketSchema, TTLSchema
from app.services import image_store as service

blp = Blueprint("buckets", __name__, url_prefix="/buckets", description="Image store buckets")

MANAGER_TYPES = ("admin", "advanced_user")


def _operator() -> None:
    require_basic_auth()
    if current_principal().account_type not in MANAGER_TYPES:
        raise APIError("account_type_forbidden", "buckets are managed by admin and advanced_user accounts")


@blp.route("", methods=["POST"])
@blp.arguments(BucketCreateSchema)
@blp.response(201, BucketSchema)
def create_bucket(body: dict[str, Any]) -> dict[str, Any]:
    """Create a bucket; `ttl` becomes the default TTL of objects stored in it without one."""
    _operator()
    return {"bucket": body["bucket"], "ttl": service.create_bucket(body["bucket"], body.get("ttl"))}


@blp.route("", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, BucketListSchema)
def list_buckets(args: dict[str, Any]) -> dict[str, Any]:
    """Every bucket with its default TTL, by name."""
    _operator()
    buckets = service.list_buckets((args["page"] - 1) * args["page_size"], args["page_size"])
    return {"buckets": [{"bucket": name, "ttl": ttl} for name, ttl in buckets], **args}


@blp.route("/<string:bucket>", methods=["PUT"])
@blp.arguments(TTLSchema)
@blp.response(200, BucketSchema)
def set_bucket_ttl(body: dict[str, Any], bucket: str) -> dict[str, Any]:
    """Set the default TTL for objects stored later without one (and, on local disk, for objects
    stored while the bucket had no TTL)."""
    _operator()
    service.set_bucket_ttl(bucket, body["ttl"])
    return {"bucket": bucket, "ttl": body["ttl"]}
