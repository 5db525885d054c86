"""Local-disk back-end.

Layout (the product's, so existing tooling and backups keep working)::

    <root>/<bucket>/.bucket.json                    {"ttl_days": 30}  (bucket default TTL)
    <root>/<bucket>/<id[:4]>/<id>.jpg               data of a JPEG object (samples, images)
    <root>/<bucket>/<id[:4]>/<id>                   data of any other object
    <root>/<bucket>/<id[:4]>/<id>.meta.json         the record: account, type, dates, TTL

Consistency without a database:

* The ``.meta.json`` file *is* the object's existence: it is renamed into place last on a put and
  removed first on a delete, so a half-written data file is never visible.
* Writers of one shard directory serialise on an ``flock`` of that directory; they only hold it for
  the renames, never while writing data.
* Readers take no lock. Every meta carries a random ``version``; a reader reads the meta, then the
  data, then the meta again and retries when the two metas differ, so it never returns new data with
  an old record (or the reverse) while an overwrite is in progress.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from app.image_store.backends.base import (
    DEFAULT_CONTENT_TYPE,
    BucketExists,
    BucketNotFound,
    Clock,
    ObjectNotFound,
    ObjectStore,
    StorageError,
    StoredObject,
    expiry_date,
    utc_now,
    validate_bucket_name,
    validate_object_id,
    validate_ttl,
)

_BUCKET_META = ".bucket.json"
_META_SUFFIX = ".meta.json"
_JPEG_SUFFIX = ".jpg"
_TMP_PREFIX = ".tmp-"  # object ids cannot start with '.', so temporaries never shadow an object
_JPEG_TYPES = frozenset({"image/jpeg", "image/jpg"})
_READ_ATTEMPTS = 8
# Faces are personal data: only the account the platform runs as may read the store.
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def _is_jpeg(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() in _JPEG_TYPES


def _write_temp(directory: Path, data: bytes) -> Path:
    """Write ``data`` durably to a fresh temporary file in ``directory`` (same file system as the
    final name, so the later rename is atomic)."""
    path = directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
    try:
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with suppress(FileNotFoundError):
            path.unlink()
        raise
    return path


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = _write_temp(path.parent, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class LocalStore(ObjectStore):
    def __init__(self, root: str | os.PathLike[str], *, clock: Clock = utc_now,
                 orphan_grace_s: float = 3600.0) -> None:
        """``orphan_grace_s``: how old a temporary or meta-less data file must be before cleanup
        treats it as debris of an interrupted write rather than a write in progress."""
        super().__init__(clock)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
        self._orphan_grace_s = orphan_grace_s

    # ---- paths -------------------------------------------------------------------------------
    def _bucket_dir(self, bucket: str) -> Path:
        path = self.root / validate_bucket_name(bucket)
        if not path.is_dir():
            raise BucketNotFound(f"bucket {bucket!r} does not exist")
        return path

    def _shard_dir(self, bucket: str, object_id: str) -> Path:
        return self._bucket_dir(bucket) / validate_object_id(object_id)[:4]

    @staticmethod
    def _data_path(shard: Path, object_id: str, jpeg: bool) -> Path:
        return shard / (object_id + _JPEG_SUFFIX if jpeg else object_id)

    @staticmethod
    def _meta_path(shard: Path, object_id: str) -> Path:
        return shard / (object_id + _META_SUFFIX)

    @contextmanager
    def _shard_lock(self, shard: Path) -> Iterator[None]:
        fd = os.open(shard, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    # ---- buckets -----------------------------------------------------------------------------
    def create_bucket(self, name: str, ttl_days: int | None = None) -> None:
        path = self.root / validate_bucket_name(name)
        ttl = None if ttl_days is None else validate_ttl(ttl_days)
        try:
            path.mkdir(mode=_DIR_MODE)
        except FileExistsError:
            raise BucketExists(f"bucket {name!r} already exists") from None
        if ttl is not None:
            _atomic_write(path / _BUCKET_META, json.dumps({"ttl_days": ttl}).encode())

    def bucket_exists(self, name: str) -> bool:
        return (self.root / validate_bucket_name(name)).is_dir()

    def list_buckets(self) -> list[str]:
        names = []
        for entry in self.root.iterdir():
            with suppress(StorageError):
                if entry.is_dir():
                    names.append(validate_bucket_name(entry.name))
        return sorted(names)

    def bucket_ttl(self, name: str) -> int | None:
        raw = _read_bytes(self._bucket_dir(name) / _BUCKET_META)
        return None if raw is None else json.loads(raw)["ttl_days"]

    def set_bucket_ttl(self, name: str, ttl: int) -> None:
        bucket_dir = self._bucket_dir(name)
        _atomic_write(bucket_dir / _BUCKET_META, json.dumps({"ttl_days": validate_ttl(ttl)}).encode())

    # ---- records -----------------------------------------------------------------------------
    @staticmethod
    def _meta_record(account_id: str | None, content_type: str, size: int, created: datetime,
                     ttl_days: int | None) -> dict[str, Any]:
        record: dict[str, Any] = {"account_id": account_id}
        if not _is_jpeg(content_type):
            record["content_type"] = content_type  # JPEG is implied by the .jpg data file
        expires = expiry_date(created, ttl_days)
        record.update(
            size=size,
            created=created.isoformat(),
            ttl_days=ttl_days,
            expires_at=None if expires is None else expires.isoformat(),
            version=secrets.token_hex(8),
        )
        return record

    def _to_object(self, bucket: str, object_id: str, record: dict[str, Any],
                   bucket_ttl: Callable[[], int | None]) -> StoredObject:
        created = datetime.fromisoformat(record["created"])
        ttl = record["ttl_days"]
        # Objects stored while the bucket had no TTL follow the bucket's current default, which is
        # how a TTL is added to an existing local bucket.
        expires = expiry_date(created, bucket_ttl() if ttl is None else ttl)
        return StoredObject(
            id=object_id,
            bucket=bucket,
            account_id=record["account_id"],
            content_type=record.get("content_type", "image/jpeg"),
            size=record["size"],
            created=created,
            ttl_days=ttl,
            expires_at=expires,
        )

    def _lookup(self, bucket: str, object_id: str, account_id: str | None
                ) -> tuple[Path, bytes, StoredObject]:
        """The shard, raw meta and object for a visible object, else :class:`ObjectNotFound`."""
        shard = self._shard_dir(bucket, object_id)
        raw = _read_bytes(self._meta_path(shard, object_id))
        if raw is None:
            raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")
        obj = self._to_object(bucket, object_id, json.loads(raw), lambda: self.bucket_ttl(bucket))
        if not self._visible(obj, account_id):
            raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")
        return shard, raw, obj

    # ---- objects -----------------------------------------------------------------------------
    def put(self, bucket: str, object_id: str, data: bytes, *, account_id: str | None,
            content_type: str | None = None, ttl_days: int | None = None) -> StoredObject:
        shard = self._shard_dir(bucket, object_id)
        ttl = self.bucket_ttl(bucket) if ttl_days is None else validate_ttl(ttl_days)
        ctype = content_type or DEFAULT_CONTENT_TYPE
        jpeg = _is_jpeg(ctype)
        record = self._meta_record(account_id, ctype, len(data), self._clock(), ttl)
        shard.mkdir(exist_ok=True, mode=_DIR_MODE)
        data_tmp = _write_temp(shard, data)
        try:
            meta_tmp = _write_temp(shard, json.dumps(record).encode())
            try:
                with self._shard_lock(shard):
                    meta_path = self._meta_path(shard, object_id)
                    raw = _read_bytes(meta_path)
                    if raw is not None:
                        self._check_replaceable(self._to_object(
                            bucket, object_id, json.loads(raw), lambda: self.bucket_ttl(bucket)), account_id)
                        # Hide the old record first: between the two renames below nobody may
                        # pair the old record with the new data.
                        meta_path.unlink()
                    os.replace(data_tmp, self._data_path(shard, object_id, jpeg))
                    os.replace(meta_tmp, meta_path)
                    # A replaced object of the other format leaves its data file behind.
                    with suppress(FileNotFoundError):
                        self._data_path(shard, object_id, not jpeg).unlink()
            finally:
                with suppress(FileNotFoundError):
                    meta_tmp.unlink()
        finally:
            with suppress(FileNotFoundError):
                data_tmp.unlink()
        return self._to_object(bucket, object_id, record, lambda: ttl)

    def get(self, bucket: str, object_id: str, account_id: str | None) -> tuple[bytes, StoredObject]:
        for _ in range(_READ_ATTEMPTS):
            shard, raw, obj = self._lookup(bucket, object_id, account_id)
            try:
                data = self._data_path(shard, object_id, obj.content_type == "image/jpeg").read_bytes()
            except FileNotFoundError:
                continue  # replaced or deleted under us: look again
            if _read_bytes(self._meta_path(shard, object_id)) == raw and len(data) == obj.size:
                return data, obj
        raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")

    def head(self, bucket: str, object_id: str, account_id: str | None) -> StoredObject:
        return self._lookup(bucket, object_id, account_id)[2]

    def _remove(self, shard: Path, object_id: str) -> None:
        """Meta first, so the object disappears before its data does."""
        self._meta_path(shard, object_id).unlink()
        for jpeg in (True, False):
            with suppress(FileNotFoundError):
                self._data_path(shard, object_id, jpeg).unlink()

    def delete(self, bucket: str, object_id: str, account_id: str | None) -> None:
        shard = self._shard_dir(bucket, object_id)
        if not shard.is_dir():
            raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")
        with self._shard_lock(shard):
            self._lookup(bucket, object_id, account_id)
            self._remove(shard, object_id)

    def delete_many(self, bucket: str, ids: Iterable[str], account_id: str | None) -> list[str]:
        ids = [validate_object_id(i) for i in ids]
        self._bucket_dir(bucket)
        deleted = []
        for object_id in dict.fromkeys(ids):
            try:
                self.delete(bucket, object_id, account_id)
            except ObjectNotFound:
                continue
            deleted.append(object_id)
        return deleted

    def set_ttl(self, bucket: str, object_id: str, account_id: str | None, ttl_days: int) -> StoredObject:
        ttl = validate_ttl(ttl_days)
        shard = self._shard_dir(bucket, object_id)
        if not shard.is_dir():
            raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")
        with self._shard_lock(shard):
            _, raw, obj = self._lookup(bucket, object_id, account_id)
            record = self._meta_record(obj.account_id, obj.content_type, obj.size, obj.created, ttl)
            _atomic_write(self._meta_path(shard, object_id), json.dumps(record).encode())
        return self._to_object(bucket, object_id, record, lambda: ttl)

    # ---- cleanup -----------------------------------------------------------------------------
    def cleanup_expired(self, now: datetime | None = None,
                        heartbeat: Callable[[], None] | None = None) -> int:
        now = now or self._clock()
        debris_before = time.time() - self._orphan_grace_s
        removed = 0
        for bucket in self.list_buckets():
            bucket_dir = self.root / bucket
            ttl = self.bucket_ttl(bucket)
            for shard in bucket_dir.iterdir():
                if not shard.is_dir():
                    continue
                if heartbeat is not None:
                    heartbeat()
                removed += self._cleanup_shard(bucket, shard, ttl, now, debris_before)
        return removed

    def _is_expired_on_disk(self, bucket: str, shard: Path, object_id: str, bucket_ttl: int | None,
                            now: datetime) -> bool:
        raw = _read_bytes(self._meta_path(shard, object_id))
        return raw is not None and self._to_object(
            bucket, object_id, json.loads(raw), lambda: bucket_ttl).is_expired(now)

    def _is_live_data(self, shard: Path, name: str) -> bool:
        if name.startswith(_TMP_PREFIX):
            return False
        object_id = name.removesuffix(_JPEG_SUFFIX)
        raw = _read_bytes(self._meta_path(shard, object_id))
        # The record says which of "<id>" / "<id>.jpg" is the object's data.
        return raw is not None and ("content_type" not in json.loads(raw)) == name.endswith(_JPEG_SUFFIX)

    def _cleanup_shard(self, bucket: str, shard: Path, bucket_ttl: int | None, now: datetime,
                       debris_before: float) -> int:
        removed = 0
        names = set(os.listdir(shard))
        for name in names:
            if not name.endswith(_META_SUFFIX):
                continue
            object_id = name[: -len(_META_SUFFIX)]
            if not self._is_expired_on_disk(bucket, shard, object_id, bucket_ttl, now):
                continue
            with self._shard_lock(shard):
                # Again, now that no writer can replace it meanwhile.
                if self._is_expired_on_disk(bucket, shard, object_id, bucket_ttl, now):
                    self._remove(shard, object_id)
                    removed += 1
        for name in names:
            if name.endswith(_META_SUFFIX) or self._is_live_data(shard, name):
                continue
            # A temporary, or data no record points to: debris of an interrupted write, once it is
            # old enough not to be a write still in progress.
            with self._shard_lock(shard), suppress(FileNotFoundError):
                path = shard / name
                if path.stat().st_mtime < debris_before and not self._is_live_data(shard, name):
                    path.unlink()
        return removed
