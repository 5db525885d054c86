"""Image store: account-scoped objects in buckets, on local disk or S3, with TTLs.

Self-contained (no flask/sqlalchemy/celery/app imports) so the API, Celery tasks and the CLI can
all build a store from plain settings values with :func:`build_store`.
"""
from __future__ import annotations

from typing import Any

from app.image_store.backends.base import (
    ALLOWED_TTL_DAYS,
    TTL_FOREVER,
    BucketExists,
    BucketNotFound,
    InvalidBucketName,
    InvalidInput,
    InvalidObjectId,
    InvalidTTL,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StoredObject,
    validate_object_id,
    validate_ttl,
)
from app.image_store.backends.local import LocalStore
from app.image_store.backends.s3 import S3Store

# storage_type setting value -> back-end class; a new back-end only needs an entry here.
STORE_TYPES: dict[str, type[ObjectStore]] = {
    "local": LocalStore,
    "s3": S3Store,
}


def build_store(storage_type: str, **options: Any) -> ObjectStore:
    """``options`` are the back-end's constructor arguments (local: ``root``; S3: ``endpoint_url``,
    ``region``, ``access_key``, ``secret_key``, ``signature_version``, ``verify_ssl``,
    ``bucket_prefix``, ``connect_timeout_s``). The type is case-insensitive: the product spells it ``S3``."""
    try:
        cls = STORE_TYPES[storage_type.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown storage_type {storage_type!r}; known: {sorted(STORE_TYPES)}") from None
    return cls(**options)


__all__ = [
    "ALLOWED_TTL_DAYS",
    "STORE_TYPES",
    "TTL_FOREVER",
    "BucketExists",
    "BucketNotFound",
    "InvalidBucketName",
    "InvalidInput",
    "InvalidObjectId",
    "InvalidTTL",
    "LocalStore",
    "ObjectExists",
    "ObjectNotFound",
    "ObjectStore",
    "S3Store",
    "StorageError",
    "StoredObject",
    "build_store",
    "validate_object_id",
    "validate_ttl",
]
