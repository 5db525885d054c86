"""The image store as the API, tasks and CLI use it: one store per settings snapshot, the four
account-scoped kinds of stored things (source images, objects, face and body samples), image
conversion to JPEG, bucket management and the daily cleanup.

Every call into :mod:`app.image_store.backends` goes through :func:`_mapped`, the one place where storage
errors become API errors, so handlers, tasks and the CLI report them alike.
"""
from __future__ import annotations

import email.utils
import io
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, wraps
from typing import Any, TypeVar

import numpy as np
from botocore.exceptions import BotoCoreError
from PIL import Image

from app import settings
from app.db import redis_client
from app.errors import APIError
from app.image_store.backends import (
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
    S3Store,
    StorageError,
    StoredObject,
    build_store,
)
from app.image_store.backends.buckets import (
    BODY_SAMPLES,
    DEFAULT_BUCKETS,
    IMAGE_ORIGIN,
    OBJECTS,
    SAMPLES,
    TASK_RESULT,
    create_default_buckets,
)
from app.image_store.backends.cleanup import CleanupLock, RedisLock, run_cleanup
from app.scope import Scope
from inference import images as image_check

F = TypeVar("F", bound=Callable[..., Any])

EXPIRY_HEADER = "X-Luna-Expiry-Date"
JPEG = "image/jpeg"
JPEG_QUALITY = 95
THUMBNAIL_PX = 160
THUMBNAIL_SUFFIX = "_thumb"
BATCH_MAX = 1000  # one S3 DeleteObjects call
# Content types the image resources take as raw bodies; the format itself is judged by content
# (inference.images.ALLOWED_FORMATS), whatever the type says. Everything is stored as JPEG.
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/bmp", "image/tiff", "image/webp"})
_MIME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


# ---- errors ---------------------------------------------------------------------------------
# Most specific class first: the first match along an exception's MRO wins.
_ERROR_KINDS: dict[type[Exception], str] = {
    BucketNotFound: "bucket_not_found",
    ObjectNotFound: "object_not_found",
    BucketExists: "bucket_exists",
    ObjectExists: "object_exists",
    InvalidTTL: "bad_ttl",
    InvalidObjectId: "bad_object_id",
    InvalidBucketName: "bad_bucket_name",
    InvalidInput: "bad_storage_input",
    StorageError: "storage_error",
}


def _api_error(exc: StorageError) -> APIError:
    kind = next(_ERROR_KINDS[cls] for cls in type(exc).__mro__ if cls in _ERROR_KINDS)
    detail = str(exc)
    if isinstance(exc, BucketNotFound):
        detail += "; create the platform's buckets with `facegate buckets create`"
    return APIError(kind, detail, status=exc.http_status)


@contextmanager
def _mapped() -> Iterator[None]:
    try:
        yield
    except StorageError as exc:
        raise _api_error(exc) from exc
    except BotoCoreError as exc:  # connection refused, timeouts, bad endpoint: S3 is not there
        raise APIError("storage_unavailable", "the object store is not reachable") from exc  # the log has the cause


def _storage_call(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with _mapped():
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# ---- the store ------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _build(storage_type: str, options: tuple[tuple[str, Any], ...]) -> ObjectStore:
    return build_store(storage_type, **dict(options))


def store() -> ObjectStore:
    """The store the settings in force describe; rebuilt only when those settings change, because
    an S3 client is costly to create and safe to share between threads."""
    s = settings.current()
    if s.storage_type == "local":
        options: dict[str, Any] = {"root": str(s.effective_storage_path)}
    else:
        options = {"endpoint_url": s.s3_endpoint_url, "region": s.s3_region, "access_key": s.s3_access_key,
                   "secret_key": s.s3_secret_key, "signature_version": s.s3_signature_version,
                   "verify_ssl": s.s3_verify_ssl, "bucket_prefix": s.s3_bucket_prefix,
                   "connect_timeout_s": s.dependency_timeout_s}
    with _mapped():
        return _build(s.storage_type, tuple(sorted(options.items())))


# ---- images ----------------------------------------------------------------------------------
@contextmanager
def image_errors(name: str | None = None) -> Iterator[None]:
    """``inference.images`` errors as the API's, naming the image (when a request has several) and
    the settings behind a limit."""
    prefix = f"image '{name}': " if name is not None else ""
    try:
        yield
    except image_check.ImageFormatNotAllowed as exc:
        raise APIError("image_format_not_allowed", f"{prefix}{exc}") from exc
    except image_check.ImageTooLarge as exc:
        raise APIError("image_too_large", f"{prefix}{exc} (settings inference_max_image_pixels, "
                                          "image_decode_budget_mb)") from exc
    except image_check.ImageError as exc:
        raise APIError("bad_image", f"{prefix}{exc}") from exc


@contextmanager
def _checked(data: bytes) -> Iterator[tuple[image_check.ImageHeader, Image.Image]]:
    """The image's header and every pixel as a PIL RGB image, decoded under the process's decode
    budget, which is held until the block ends (the JPEG encoding works on those pixels)."""
    s = settings.current()
    with image_errors():
        header = image_check.read_header(data, s.inference_max_image_pixels, s.image_decode_budget_mb)
        with image_check.decode_budget([header], s.image_decode_budget_mb):
            image = image_check.decode_rgb(data, header)
            try:
                yield header, image
            finally:
                image.close()  # the pixels go when the budget is given back, whatever still names them


def _encode_jpeg(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def _thumbnail_jpeg(image: Image.Image) -> bytes:
    """Shrinks ``image`` in place: a copy would hold as much memory again as the decode."""
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.LANCZOS)
    return _encode_jpeg(image)


def _array_to_jpeg(image: np.ndarray) -> bytes:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise APIError("bad_image", f"expected an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}")
    return _encode_jpeg(Image.fromarray(np.ascontiguousarray(image), "RGB"))


# ---- kinds ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """One account-scoped resource of the store."""

    name: str
    bucket: str
    images: bool  # converted to JPEG; otherwise stored with the caller's content type
    thumbnails: bool = False


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("image", IMAGE_ORIGIN, images=True, thumbnails=True),
    Kind("object", OBJECTS, images=False),
    Kind("face_sample", SAMPLES, images=True),
    Kind("body_sample", BODY_SAMPLES, images=True),
    Kind("task_result", TASK_RESULT, images=False),
)}
SAMPLE_KINDS = {"face": "face_sample", "body": "body_sample"}


def thumbnail_id(object_id: str) -> str:
    return object_id + THUMBNAIL_SUFFIX


def _account(scope: Scope) -> str | None:
    """The back-ends' account argument: one account's id, or None for all accounts."""
    return None if scope.all_accounts else str(scope.account_id)


def check_content_type(kind: Kind, content_type: str | None) -> None:
    """415 for a body the kind does not take; raw image bodies and multipart forms for images,
    any well-formed ``type/subtype`` but a form envelope for objects."""
    mimetype = (content_type or "").split(";", 1)[0].strip().lower()
    if kind.images:
        if mimetype not in IMAGE_TYPES and mimetype != "multipart/form-data":
            raise APIError("unsupported_media_type", f"expected one of {sorted(IMAGE_TYPES)} or multipart/form-data, "
                                                     f"got '{content_type or 'none'}'")
    elif not _MIME_RE.fullmatch(mimetype) or mimetype.startswith("multipart/"):
        raise APIError("unsupported_media_type", "send the object's bytes as the body with their own Content-Type "
                                                 f"(multipart forms are not unpacked), got '{content_type or 'none'}'")


@_storage_call
def put(kind: Kind, scope: Scope, data: bytes, content_type: str, *,
        object_id: uuid.UUID | str | None = None, ttl: int | None = None,
        thumbnail: bool = False) -> StoredObject:
    """Store (or replace) one object; images become JPEG and may get a ``<id>_thumb`` beside them
    with the same TTL. Without ``ttl`` the bucket's default applies."""
    if not data:
        raise APIError("bad_request", "the body is empty")
    if thumbnail and not kind.thumbnails:
        raise APIError("bad_request", f"{kind.name} has no thumbnails")
    oid = str(object_id or uuid.uuid4())
    owner = str(scope.owner)
    if not kind.images:
        return store().put(kind.bucket, oid, data, account_id=owner, content_type=content_type, ttl_days=ttl)
    with _checked(data) as (header, image):
        # An upright RGB JPEG is stored byte for byte: re-encoding would only lose quality.
        keep_bytes = header.format == "JPEG" and header.upright and header.mode == "RGB"
        jpeg = data if keep_bytes else _encode_jpeg(image)
        thumb = _thumbnail_jpeg(image) if thumbnail else None
    s = store()
    # The image first: its ownership check keeps anyone from placing a thumbnail under an id that
    # another account holds.
    obj = s.put(kind.bucket, oid, jpeg, account_id=owner, content_type=JPEG, ttl_days=ttl)
    if thumb is not None:
        s.put(kind.bucket, thumbnail_id(oid), thumb, account_id=owner, content_type=JPEG, ttl_days=ttl)
    elif kind.thumbnails and object_id is not None:
        s.delete_many(kind.bucket, [thumbnail_id(oid)], owner)  # a replaced image's old thumbnail
    return obj


@_storage_call
def get(kind: Kind, scope: Scope, object_id: uuid.UUID | str) -> tuple[bytes, StoredObject]:
    return store().get(kind.bucket, str(object_id), _account(scope))


@_storage_call
def head(kind: Kind, scope: Scope, object_id: uuid.UUID | str) -> StoredObject:
    return store().head(kind.bucket, str(object_id), _account(scope))


@_storage_call
def delete(kind: Kind, scope: Scope, object_id: uuid.UUID | str) -> None:
    """404 when the scope cannot see the object; an image's thumbnail goes with it."""
    s = store()
    s.delete(kind.bucket, str(object_id), _account(scope))
    if kind.thumbnails:
        s.delete_many(kind.bucket, [thumbnail_id(str(object_id))], _account(scope))


@_storage_call
def delete_many(kind: Kind, scope: Scope, object_ids: list[uuid.UUID | str]) -> list[str]:
    """The ids actually deleted: others' and missing ids are skipped, as if absent."""
    if len(object_ids) > BATCH_MAX:
        raise APIError("validation", f"at most {BATCH_MAX} ids per request, got {len(object_ids)}")
    ids = [str(i) for i in object_ids]
    extra = [thumbnail_id(i) for i in ids] if kind.thumbnails else []
    deleted = set(store().delete_many(kind.bucket, ids + extra, _account(scope)))
    return [i for i in dict.fromkeys(ids) if i in deleted]


@_storage_call
def set_ttl(kind: Kind, scope: Scope, object_id: uuid.UUID | str, ttl: int) -> StoredObject:
    """Give an existing object (and its thumbnail, if it has one) a TTL counted from its creation."""
    s = store()
    obj = s.set_ttl(kind.bucket, str(object_id), _account(scope), ttl)
    if kind.thumbnails:
        try:
            s.set_ttl(kind.bucket, thumbnail_id(str(object_id)), _account(scope), ttl)
        except ObjectNotFound:
            pass  # stored without a thumbnail
    return obj


@_storage_call
def keep(kind: Kind, scope: Scope, object_ids: list[str]) -> None:
    """Give objects stored with a provisional TTL their bucket's TTL (forever when it has none):
    what a task wrote is kept once its caller has the answer."""
    s = store()
    ttl = s.bucket_ttl(kind.bucket)
    for object_id in object_ids:
        s.set_ttl(kind.bucket, object_id, _account(scope), TTL_FOREVER if ttl is None else ttl)


def expiry_headers(obj: StoredObject) -> dict[str, str]:
    """``X-Luna-Expiry-Date`` as an HTTP date in GMT, only for objects that expire."""
    if obj.expires_at is None:
        return {}
    return {EXPIRY_HEADER: email.utils.format_datetime(obj.expires_at, usegmt=True)}


# ---- samples, for the inference pipeline ----------------------------------------------------
def _sample_kind(kind: str) -> Kind:
    try:
        return KINDS[SAMPLE_KINDS[kind]]
    except KeyError:
        raise ValueError(f"sample kind must be one of {sorted(SAMPLE_KINDS)}, not {kind!r}") from None


def save_sample(kind: str, scope: Scope, image: bytes | np.ndarray,
                sample_id: uuid.UUID | str | None = None, ttl: int | None = None) -> str:
    """Store a face (``kind="face"``) or body sample; ``image`` is encoded image bytes or an
    (H, W, 3) uint8 RGB array such as a warped crop. Returns the sample id (uuid4 unless given)."""
    k = _sample_kind(kind)
    data = _array_to_jpeg(image) if isinstance(image, np.ndarray) else image
    return put(k, scope, data, JPEG, object_id=sample_id, ttl=ttl).id


def load_sample(kind: str, scope: Scope, sample_id: uuid.UUID | str) -> bytes:
    """The sample's JPEG bytes; ``object_not_found`` for one out of scope or expired."""
    return get(_sample_kind(kind), scope, sample_id)[0]


# ---- buckets --------------------------------------------------------------------------------
@_storage_call
def list_buckets(offset: int = 0, limit: int | None = None) -> list[tuple[str, int | None]]:
    """(name, default TTL) of the buckets in name order; the TTL costs a request per bucket on S3,
    so only the page asked for is read."""
    s = store()
    names = s.list_buckets()[offset:None if limit is None else offset + limit]
    return [(name, s.bucket_ttl(name)) for name in names]


def _setting_bucket_ttl() -> int | None:
    # -1 ("forever") is left unrecorded rather than written to the bucket: local objects stored
    # without a TTL of their own then follow whatever TTL the bucket is given later.
    ttl = settings.current().bucket_ttl_days
    return None if ttl == TTL_FOREVER else ttl


@_storage_call
def create_bucket(name: str, ttl: int | None = None) -> int | None:
    """Returns the bucket's default TTL: ``ttl``, else the ``bucket_ttl_days`` setting (None: none)."""
    ttl = _setting_bucket_ttl() if ttl is None else ttl
    store().create_bucket(name, ttl)
    return ttl


@_storage_call
def set_bucket_ttl(name: str, ttl: int) -> None:
    store().set_bucket_ttl(name, ttl)


@_storage_call
def create_platform_buckets(ttl: int | None = None) -> dict[str, bool]:
    """Create the missing platform buckets ({name: created now}). With ``ttl`` every bucket gets
    it as its default; without, only new buckets get the ``bucket_ttl_days`` setting, so running
    this again never undoes a TTL set since."""
    s = store()
    created = create_default_buckets(s, ttl)
    default = _setting_bucket_ttl()
    if ttl is None and default is not None:
        for name, new in created.items():
            if new:
                s.set_bucket_ttl(name, default)
    return created


@_storage_call
def missing_platform_buckets() -> list[str]:
    present = set(store().list_buckets())
    return [spec.name for spec in DEFAULT_BUCKETS if spec.name not in present]


@_storage_call
def migrate_s3(bucket: str, tag_existing: bool = True) -> tuple[int, int]:
    """(lifecycle rules added, objects tagged) for a bucket made outside facegate."""
    s = store()
    if not isinstance(s, S3Store):
        raise APIError("bad_request", f"storage_type is {settings.current().storage_type!r}: "
                                      "lifecycle migration applies to S3 only")
    report = s.migrate_lifecycle(bucket, tag_existing=tag_existing)
    return report.rules_added, report.objects_tagged


# ---- cleanup --------------------------------------------------------------------------------
def cleanup_lock() -> CleanupLock:
    """A lock in Redis, so cleaners on any number of machines exclude each other."""
    return RedisLock(redis_client())


@_storage_call
def cleanup(now: datetime | None = None) -> int | None:
    """Remove expired objects; ``None`` when another worker is already at it."""
    return run_cleanup(store(), cleanup_lock(), now)
