"""S3-compatible back-end (AWS S3, MinIO, Yandex Object Storage, ...) through boto3.

Mapping onto S3:

* object id -> key (flat, no sharding: S3 has no directory limits);
* ``account_id`` -> user metadata ``x-amz-meta-account-id`` (absent for system objects), content
  type -> the object's own ``Content-Type``;
* object TTL -> object tag ``vl-expire=<days>`` (``-1`` for "forever", so the bucket default is not
  applied to it by a later migration). S3 itself deletes tagged objects through one bucket lifecycle
  rule per allowed TTL, ``vl-expire-<ttl>``, filtered on that tag; rules are installed when a bucket
  is created here and by :meth:`S3Store.migrate_lifecycle` for buckets made elsewhere;
* bucket default TTL -> bucket tag ``vl-expire=<days>``, read on each put without an explicit TTL.

Expiry dates are last-modified + tag TTL; S3 may delete up to a day later (it rounds to midnight
UTC and runs lifecycle asynchronously), but the store already answers 404 from the expiry date on.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from app.image_store.backends.base import (
    ALLOWED_TTL_DAYS,
    DEFAULT_CONTENT_TYPE,
    BucketExists,
    BucketNotFound,
    Clock,
    InvalidBucketName,
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

TTL_TAG = "vl-expire"
RULE_PREFIX = "vl-expire-"
ACCOUNT_META = "account-id"  # hyphen, not underscore: proxies may drop headers with underscores
_DELETE_BATCH = 1000  # DeleteObjects limit


def lifecycle_rules() -> list[dict[str, Any]]:
    """One expiration rule per allowed TTL, selected by the object's ``vl-expire`` tag."""
    return [
        {
            "ID": f"{RULE_PREFIX}{ttl}",
            "Expiration": {"Days": ttl},
            "Filter": {"Tag": {"Key": TTL_TAG, "Value": str(ttl)}},
            "Status": "Enabled",
        }
        for ttl in ALLOWED_TTL_DAYS
    ]


@dataclass(frozen=True)
class MigrationReport:
    rules_added: int
    objects_tagged: int


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _ttl_from_tags(tags: list[dict[str, str]]) -> int | None:
    for tag in tags:
        if tag["Key"] == TTL_TAG:
            try:
                return int(tag["Value"])
            except ValueError:
                return None  # someone else's tag value: no lifecycle rule matches it either
    return None


def _with_ttl(tags: list[dict[str, str]], ttl: int) -> list[dict[str, str]]:
    return [t for t in tags if t["Key"] != TTL_TAG] + [{"Key": TTL_TAG, "Value": str(ttl)}]


class S3Store(ObjectStore):
    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        signature_version: str = "s3v4",
        verify_ssl: bool = True,
        bucket_prefix: str = "",
        addressing_style: str = "path",
        connect_timeout_s: float = 2.0,
        clock: Clock = utc_now,
    ) -> None:
        """``bucket_prefix`` is prepended to every bucket name on the server (several deployments
        sharing one S3 account); the store's API only sees unprefixed names. Empty strings mean
        "not set" so settings can pass their defaults straight through."""
        super().__init__(clock)
        if bucket_prefix and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", bucket_prefix):
            raise InvalidBucketName(f"invalid bucket prefix {bucket_prefix!r}")
        self.bucket_prefix = bucket_prefix
        self.region = region or "us-east-1"
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or None,
            region_name=self.region,
            aws_access_key_id=access_key or None,
            aws_secret_access_key=secret_key or None,
            verify=verify_ssl,
            config=Config(
                signature_version=signature_version or "s3v4",
                s3={"addressing_style": addressing_style},
                # Newer botocore adds CRC checksums to every upload, which several S3-compatible
                # servers reject; only send them where the API demands one.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                # An S3 that is down must fail a request (and the health check) within about
                # connect_timeout_s (the dependency_timeout_s setting), not minutes: one retry, for a
                # dropped connection, and half the time for each connection attempt. Reading a large
                # object from a live S3 keeps the long read timeout.
                retries={"mode": "standard", "total_max_attempts": 2},
                connect_timeout=connect_timeout_s / 2,
                read_timeout=max(30.0, connect_timeout_s),
            ),
        )

    # ---- helpers -----------------------------------------------------------------------------
    def _name(self, bucket: str) -> str:
        return validate_bucket_name(self.bucket_prefix + validate_bucket_name(bucket))

    @contextmanager
    def _errors(self, bucket: str, object_id: str | None = None) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            code = _code(exc)
            if code == "NoSuchBucket":
                raise BucketNotFound(f"bucket {bucket!r} does not exist") from None
            if code in {"NoSuchKey", "404", "NotFound"}:
                # HEAD answers a bare 404 for a missing bucket and a missing key alike.
                if object_id is None or not self.bucket_exists(bucket):
                    raise BucketNotFound(f"bucket {bucket!r} does not exist") from None
                raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}") from None
            raise StorageError(f"S3 request on bucket {bucket!r} failed: {code or exc}") from exc

    def _object(self, bucket: str, object_id: str, response: dict[str, Any], ttl: int | None) -> StoredObject:
        created = response["LastModified"].astimezone(timezone.utc)
        return StoredObject(
            id=object_id,
            bucket=bucket,
            account_id=response.get("Metadata", {}).get(ACCOUNT_META),
            content_type=response.get("ContentType") or DEFAULT_CONTENT_TYPE,
            size=response["ContentLength"],
            created=created,
            ttl_days=ttl,
            expires_at=expiry_date(created, ttl),
        )

    def _object_tags(self, bucket: str, object_id: str) -> list[dict[str, str]]:
        with self._errors(bucket, object_id):
            return self.client.get_object_tagging(Bucket=self._name(bucket), Key=object_id)["TagSet"]

    def _head_response(self, bucket: str, object_id: str) -> dict[str, Any]:
        validate_object_id(object_id)
        with self._errors(bucket, object_id):
            return self.client.head_object(Bucket=self._name(bucket), Key=object_id)

    def _head(self, bucket: str, object_id: str) -> StoredObject:
        """The object whoever owns it, expired or not."""
        response = self._head_response(bucket, object_id)
        return self._object(bucket, object_id, response, _ttl_from_tags(self._object_tags(bucket, object_id)))

    def _find(self, bucket: str, object_id: str, account_id: str | None) -> StoredObject:
        obj = self._head(bucket, object_id)
        if not self._visible(obj, account_id):
            raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")
        return obj

    def _install_lifecycle(self, bucket: str) -> int:
        """Add the ``vl-expire-*`` rules, keeping any other rules of the bucket; returns how many
        rules were added or corrected."""
        name = self._name(bucket)
        with self._errors(bucket):
            try:
                current = self.client.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
            except ClientError as exc:
                if _code(exc) != "NoSuchLifecycleConfiguration":
                    raise
                current = []
            wanted = lifecycle_rules()
            present = {r.get("ID"): r for r in current}
            changed = sum(1 for rule in wanted if present.get(rule["ID"]) != rule)
            if changed:
                others = [r for r in current if not str(r.get("ID", "")).startswith(RULE_PREFIX)]
                self.client.put_bucket_lifecycle_configuration(
                    Bucket=name, LifecycleConfiguration={"Rules": others + wanted}
                )
        return changed

    def _bucket_tags(self, bucket: str) -> list[dict[str, str]]:
        with self._errors(bucket):
            try:
                return self.client.get_bucket_tagging(Bucket=self._name(bucket))["TagSet"]
            except ClientError as exc:
                if _code(exc) != "NoSuchTagSet":
                    raise
                return []

    # ---- buckets -----------------------------------------------------------------------------
    def create_bucket(self, name: str, ttl_days: int | None = None) -> None:
        ttl = None if ttl_days is None else validate_ttl(ttl_days)
        # us-east-1 answers 200 to re-creating one's own bucket, so ask first.
        if self.bucket_exists(name):
            raise BucketExists(f"bucket {name!r} already exists")
        extra: dict[str, Any] = {}
        if self.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self.client.create_bucket(Bucket=self._name(name), **extra)
        except ClientError as exc:
            if _code(exc) in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                raise BucketExists(f"bucket {name!r} already exists") from None
            raise StorageError(f"cannot create bucket {name!r}: {_code(exc) or exc}") from exc
        self._install_lifecycle(name)
        if ttl is not None:
            self.set_bucket_ttl(name, ttl)

    def bucket_exists(self, name: str) -> bool:
        try:
            self.client.head_bucket(Bucket=self._name(name))
        except ClientError as exc:
            if _code(exc) in {"404", "NoSuchBucket", "NotFound"}:
                return False
            raise StorageError(f"cannot check bucket {name!r}: {_code(exc) or exc}") from exc
        return True

    def list_buckets(self) -> list[str]:
        names = []
        for entry in self.client.list_buckets().get("Buckets", []):
            full = entry["Name"]
            if full.startswith(self.bucket_prefix):
                try:
                    names.append(validate_bucket_name(full[len(self.bucket_prefix):]))
                except InvalidBucketName:
                    continue
        return sorted(names)

    def bucket_ttl(self, name: str) -> int | None:
        return _ttl_from_tags(self._bucket_tags(name))

    def set_bucket_ttl(self, name: str, ttl: int) -> None:
        ttl = validate_ttl(ttl)
        tags = _with_ttl(self._bucket_tags(name), ttl)
        with self._errors(name):
            self.client.put_bucket_tagging(Bucket=self._name(name), Tagging={"TagSet": tags})

    def migrate_lifecycle(self, bucket: str, tag_existing: bool = True) -> MigrationReport:
        """Make TTLs effective on a bucket created without this store: add the lifecycle rules,
        and tag every object lacking a ``vl-expire`` tag with the bucket's default TTL (objects
        without the tag are never deleted by S3). Safe to run repeatedly."""
        rules_added = self._install_lifecycle(bucket)
        tagged = 0
        default = self.bucket_ttl(bucket)
        if tag_existing and default is not None:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self._name(bucket))
            with self._errors(bucket):
                for page in pages:
                    for entry in page.get("Contents", []):
                        key = entry["Key"]
                        tags = self.client.get_object_tagging(Bucket=self._name(bucket), Key=key)["TagSet"]
                        if any(t["Key"] == TTL_TAG for t in tags):
                            continue
                        self.client.put_object_tagging(
                            Bucket=self._name(bucket), Key=key, Tagging={"TagSet": _with_ttl(tags, default)}
                        )
                        tagged += 1
        return MigrationReport(rules_added=rules_added, objects_tagged=tagged)

    # ---- objects -----------------------------------------------------------------------------
    def put(self, bucket: str, object_id: str, data: bytes, *, account_id: str | None,
            content_type: str | None = None, ttl_days: int | None = None) -> StoredObject:
        validate_object_id(object_id)
        ttl = self.bucket_ttl(bucket) if ttl_days is None else validate_ttl(ttl_days)
        try:
            current = self._head_response(bucket, object_id)
        except ObjectNotFound:
            pass
        else:
            # Tags (for the expiry) are only needed when the id belongs to someone else.
            if account_id is not None and current.get("Metadata", {}).get(ACCOUNT_META) != account_id:
                tags = self._object_tags(bucket, object_id)
                current_obj = self._object(bucket, object_id, current, _ttl_from_tags(tags))
                self._check_replaceable(current_obj, account_id)
        extra: dict[str, Any] = {}
        if account_id is not None:
            extra["Metadata"] = {ACCOUNT_META: account_id}
        if ttl is not None:
            extra["Tagging"] = urlencode({TTL_TAG: str(ttl)})
        # One PutObject carries data, metadata and tag: S3 makes it visible all at once.
        with self._errors(bucket, object_id):
            self.client.put_object(
                Bucket=self._name(bucket), Key=object_id, Body=data,
                ContentType=content_type or DEFAULT_CONTENT_TYPE, **extra,
            )
            response = self.client.head_object(Bucket=self._name(bucket), Key=object_id)
        return self._object(bucket, object_id, response, ttl)

    def get(self, bucket: str, object_id: str, account_id: str | None) -> tuple[bytes, StoredObject]:
        validate_object_id(object_id)
        with self._errors(bucket, object_id):
            response = self.client.get_object(Bucket=self._name(bucket), Key=object_id)
        body = response["Body"]
        try:
            # GetObject reports how many tags there are, so the tagging request is only paid for
            # objects that have some.
            tags = self._object_tags(bucket, object_id) if response.get("TagCount", 0) else []
            obj = self._object(bucket, object_id, response, _ttl_from_tags(tags))
            if not self._visible(obj, account_id):
                raise ObjectNotFound(f"object {object_id!r} not found in {bucket!r}")
            return body.read(), obj
        finally:
            body.close()

    def head(self, bucket: str, object_id: str, account_id: str | None) -> StoredObject:
        return self._find(bucket, object_id, account_id)

    def delete(self, bucket: str, object_id: str, account_id: str | None) -> None:
        self._find(bucket, object_id, account_id)
        with self._errors(bucket, object_id):
            self.client.delete_object(Bucket=self._name(bucket), Key=object_id)

    def delete_many(self, bucket: str, ids: Iterable[str], account_id: str | None) -> list[str]:
        ids = [validate_object_id(i) for i in ids]
        if not self.bucket_exists(bucket):
            raise BucketNotFound(f"bucket {bucket!r} does not exist")
        visible = []
        for object_id in dict.fromkeys(ids):
            try:
                self._find(bucket, object_id, account_id)
            except ObjectNotFound:
                continue
            visible.append(object_id)
        deleted: list[str] = []
        for start in range(0, len(visible), _DELETE_BATCH):
            chunk = visible[start:start + _DELETE_BATCH]
            with self._errors(bucket):
                response = self.client.delete_objects(
                    Bucket=self._name(bucket),
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
            failed = {e["Key"] for e in response.get("Errors", [])}
            deleted.extend(k for k in chunk if k not in failed)
        return deleted

    def set_ttl(self, bucket: str, object_id: str, account_id: str | None, ttl_days: int) -> StoredObject:
        ttl = validate_ttl(ttl_days)
        obj = self._find(bucket, object_id, account_id)
        tags = _with_ttl(self._object_tags(bucket, object_id), ttl)
        with self._errors(bucket, object_id):
            self.client.put_object_tagging(Bucket=self._name(bucket), Key=object_id, Tagging={"TagSet": tags})
        # Tagging does not change last-modified, so the expiry is still counted from creation,
        # exactly as the lifecycle rule will count it.
        return replace(obj, ttl_days=ttl, expires_at=expiry_date(obj.created, ttl))

    def cleanup_expired(self, now: datetime | None = None,
                        heartbeat: Callable[[], None] | None = None) -> int:
        """Nothing to do: the bucket lifecycle rules make S3 delete expired objects itself."""
        return 0
