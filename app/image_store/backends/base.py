"""The image store interface shared by every back-end.

This package is used from the REST API, Celery tasks and the CLI alike, so it imports nothing from
flask, sqlalchemy, celery or the rest of ``app``: configuration comes in as constructor arguments.

Conventions every back-end keeps:

* An object belongs to the account that stored it. A caller passing another ``account_id`` gets
  :class:`ObjectNotFound`, exactly as if the id did not exist, so ids of other accounts cannot be
  probed. ``account_id=None`` is an admin/system caller that sees every object.
* An object whose expiry date has passed is :class:`ObjectNotFound` even if the physical deletion
  (local cleanup or S3 lifecycle) has not happened yet.
* TTLs are days from :data:`ALLOWED_TTL_DAYS` or :data:`TTL_FOREVER`; expiry is measured from the
  object's creation (S3: its last-modified time), in UTC (GMT).
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

ALLOWED_TTL_DAYS: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 14, 30, 60, 90, 180, 365)
TTL_FOREVER = -1
DEFAULT_CONTENT_TYPE = "application/octet-stream"

# Ids end up as file names (local) and keys (S3). No dot, slash or backslash can appear, so neither
# ".." nor an absolute path is expressible, and an id can never collide with the ".meta.json",
# ".jpg" or temporary-file names the local back-end puts beside it. At least 4 characters because
# the local layout shards by the first four.
_OBJECT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{3,127}")
# The S3 naming rules, minus dots (which break virtual-host addressing and TLS wildcards).
BUCKET_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StorageError(Exception):
    """Root of the image store errors; ``http_status`` is what the REST layer should answer."""

    http_status = 500


class BucketNotFound(StorageError):
    http_status = 404


class ObjectNotFound(StorageError):
    http_status = 404


class BucketExists(StorageError):
    http_status = 409


class ObjectExists(StorageError):
    """A put under an id that another account already owns: overwriting it would let one account
    destroy another's data."""

    http_status = 409


class InvalidInput(StorageError, ValueError):
    http_status = 400


class InvalidTTL(InvalidInput):
    pass


class InvalidObjectId(InvalidInput):
    pass


class InvalidBucketName(InvalidInput):
    pass


def validate_ttl(ttl: int | str) -> int:
    """The single place TTL values are checked. Strings are accepted because query parameters and
    CLI flags arrive as text."""
    if isinstance(ttl, bool):
        raise InvalidTTL(f"ttl must be an integer number of days, not {ttl!r}")
    if isinstance(ttl, str):
        try:
            ttl = int(ttl.strip())
        except ValueError:
            raise InvalidTTL(f"ttl must be an integer number of days, not {ttl!r}") from None
    if not isinstance(ttl, int) or (ttl != TTL_FOREVER and ttl not in ALLOWED_TTL_DAYS):
        raise InvalidTTL(f"ttl must be one of {list(ALLOWED_TTL_DAYS)} or {TTL_FOREVER}, not {ttl!r}")
    return ttl


def validate_object_id(object_id: str) -> str:
    if not isinstance(object_id, str) or not _OBJECT_ID_RE.fullmatch(object_id):
        raise InvalidObjectId(
            f"invalid object id {object_id!r}: 4-128 characters of letters, digits, '-' or '_'"
        )
    return object_id


def validate_bucket_name(name: str) -> str:
    if not isinstance(name, str) or not BUCKET_NAME_RE.fullmatch(name):
        raise InvalidBucketName(
            f"invalid bucket name {name!r}: 3-63 lower-case letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return name


def expiry_date(created: datetime, ttl_days: int | None) -> datetime | None:
    """``None`` means the object never expires."""
    if ttl_days is None or ttl_days == TTL_FOREVER:
        return None
    return created + timedelta(days=ttl_days)


@dataclass(frozen=True)
class StoredObject:
    id: str
    bucket: str
    account_id: str | None
    content_type: str
    size: int
    created: datetime
    # The TTL the object carries (None: none recorded, -1: explicitly forever).
    ttl_days: int | None
    expires_at: datetime | None

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class ObjectStore(ABC):
    """Buckets of account-scoped objects with optional expiry."""

    def __init__(self, clock: Clock = utc_now) -> None:
        # Injectable so expiry can be checked against a simulated date.
        self._clock = clock

    def _visible(self, obj: StoredObject, account_id: str | None) -> bool:
        """Other accounts' objects and expired ones are indistinguishable from missing ones."""
        if account_id is not None and obj.account_id != account_id:
            return False
        return not obj.is_expired(self._clock())

    def _check_replaceable(self, current: StoredObject, account_id: str | None) -> None:
        """A put must not let one account overwrite another's object; an expired object no longer
        holds on to its id."""
        if account_id is not None and current.account_id != account_id and self._visible(current, None):
            raise ObjectExists(f"object id {current.id!r} is taken")

    @abstractmethod
    def create_bucket(self, name: str, ttl_days: int | None = None) -> None:
        """Raises :class:`BucketExists`; ``ttl_days`` becomes the bucket's default object TTL."""

    @abstractmethod
    def bucket_exists(self, name: str) -> bool: ...

    @abstractmethod
    def list_buckets(self) -> list[str]:
        """Sorted bucket names."""

    @abstractmethod
    def bucket_ttl(self, name: str) -> int | None:
        """The bucket's default object TTL, ``None`` when it has none."""

    @abstractmethod
    def set_bucket_ttl(self, name: str, ttl: int) -> None:
        """Default TTL for objects stored later without their own ``ttl_days``."""

    @abstractmethod
    def put(
        self,
        bucket: str,
        object_id: str,
        data: bytes,
        *,
        account_id: str | None,
        content_type: str | None = None,
        ttl_days: int | None = None,
    ) -> StoredObject:
        """Store (or replace) an object atomically: readers see the old object or the new one, never
        a mix. Without ``ttl_days`` the bucket's default TTL at this moment applies."""

    @abstractmethod
    def get(self, bucket: str, object_id: str, account_id: str | None) -> tuple[bytes, StoredObject]: ...

    @abstractmethod
    def head(self, bucket: str, object_id: str, account_id: str | None) -> StoredObject: ...

    @abstractmethod
    def delete(self, bucket: str, object_id: str, account_id: str | None) -> None:
        """Raises :class:`ObjectNotFound` when the caller cannot see the object."""

    @abstractmethod
    def delete_many(self, bucket: str, ids: Iterable[str], account_id: str | None) -> list[str]:
        """Delete the visible objects among ``ids``; returns the ids actually deleted. Every id is
        validated before anything is deleted."""

    @abstractmethod
    def set_ttl(self, bucket: str, object_id: str, account_id: str | None, ttl_days: int) -> StoredObject:
        """Give an existing object a TTL, counted from its creation like any other."""

    @abstractmethod
    def cleanup_expired(self, now: datetime | None = None,
                        heartbeat: Callable[[], None] | None = None) -> int:
        """Physically remove expired objects; returns how many. ``heartbeat`` is called regularly
        so a caller holding an expiring lock can extend it."""
