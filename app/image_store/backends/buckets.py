"""The buckets the platform uses, by role, in one place.

Same roles as the product's ``visionlabs-*`` buckets, under our own prefix. Names are lower-case
and valid for S3 as well as for directories.
"""
from __future__ import annotations

from dataclasses import dataclass

from app.image_store.backends.base import BucketExists, ObjectStore, validate_ttl


@dataclass(frozen=True)
class BucketSpec:
    role: str
    name: str
    holds: str


SAMPLES = "facegate-samples"
BODY_SAMPLES = "facegate-bodies-samples"
IMAGE_ORIGIN = "facegate-image-origin"
OBJECTS = "facegate-objects"
TASK_RESULT = "task-result"
PORTRAITS = "portraits"

DEFAULT_BUCKETS: tuple[BucketSpec, ...] = (
    BucketSpec("face_samples", SAMPLES, "face samples (warped face crops)"),
    BucketSpec("body_samples", BODY_SAMPLES, "human body samples"),
    BucketSpec("image_origin", IMAGE_ORIGIN, "source images"),
    BucketSpec("objects", OBJECTS, "arbitrary objects: JSON, zip, text, pdf"),
    BucketSpec("task_results", TASK_RESULT, "results of tasks"),
    BucketSpec("portraits", PORTRAITS, "portraits"),
)

BUCKET_BY_ROLE: dict[str, str] = {spec.role: spec.name for spec in DEFAULT_BUCKETS}


def create_default_buckets(store: ObjectStore, ttl_days: int | None = None) -> dict[str, bool]:
    """Create the missing platform buckets; returns ``{name: created_now}``. Running it again is
    harmless. With ``ttl_days`` every bucket, new or existing, gets that default TTL, so re-running
    with a new value updates them all."""
    ttl = None if ttl_days is None else validate_ttl(ttl_days)
    created = {}
    for spec in DEFAULT_BUCKETS:
        try:
            store.create_bucket(spec.name, ttl)
        except BucketExists:
            created[spec.name] = False
            if ttl is not None:
                store.set_bucket_ttl(spec.name, ttl)
        else:
            created[spec.name] = True
    return created
