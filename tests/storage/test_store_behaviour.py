"""One behavioural suite, run against every back-end through the parametrized ``store`` fixture."""
from __future__ import annotations

import json
import os
import uuid
from datetime import timedelta

import pytest

from app.image_store.backends import (
    ALLOWED_TTL_DAYS,
    STORE_TYPES,
    BucketExists,
    BucketNotFound,
    InvalidBucketName,
    InvalidObjectId,
    InvalidTTL,
    LocalStore,
    ObjectExists,
    ObjectNotFound,
    ObjectStore,
    S3Store,
    build_store,
)
from app.image_store.backends.buckets import BUCKET_BY_ROLE, DEFAULT_BUCKETS, create_default_buckets

A, B = "account-a", "account-b"


def oid() -> str:
    return str(uuid.uuid4())


# ---- objects ---------------------------------------------------------------------------------

def test_put_get_head_round_trip(store: ObjectStore, bucket: str, clock) -> None:
    object_id = oid()
    payload = json.dumps({"result": [1, 2, 3]}).encode()
    before = clock() - timedelta(seconds=2)  # S3 last-modified has whole-second precision
    stored = store.put(bucket, object_id, payload, account_id=A, content_type="application/json")
    data, got = store.get(bucket, object_id, A)
    head = store.head(bucket, object_id, A)

    assert data == payload
    assert got == head == stored
    assert (head.id, head.bucket, head.account_id) == (object_id, bucket, A)
    assert head.content_type == "application/json"
    assert head.size == len(payload)
    assert before <= head.created <= clock() + timedelta(seconds=2)
    assert head.created.utcoffset() == timedelta(0)


def test_jpeg_and_untyped_objects(store: ObjectStore, bucket: str) -> None:
    jpeg_id, raw_id = oid(), oid()
    jpeg = bytes(range(256)) * 40
    store.put(bucket, jpeg_id, jpeg, account_id=A, content_type="image/jpeg")
    store.put(bucket, raw_id, b"\x00\x01", account_id=A)
    assert store.get(bucket, jpeg_id, A) == (jpeg, store.head(bucket, jpeg_id, A))
    assert store.head(bucket, jpeg_id, A).content_type == "image/jpeg"
    assert store.head(bucket, raw_id, A).content_type == "application/octet-stream"


def test_overwrite_by_owner_replaces_content_and_type(store: ObjectStore, bucket: str) -> None:
    object_id = oid()
    store.put(bucket, object_id, b"\xff\xd8 first", account_id=A, content_type="image/jpeg")
    store.put(bucket, object_id, b"second version", account_id=A, content_type="text/plain")
    data, obj = store.get(bucket, object_id, A)
    assert data == b"second version"
    assert obj.content_type == "text/plain"
    assert obj.size == len(b"second version")


def test_other_account_cannot_overwrite(store: ObjectStore, bucket: str) -> None:
    object_id = oid()
    store.put(bucket, object_id, b"mine", account_id=A)
    with pytest.raises(ObjectExists):
        store.put(bucket, object_id, b"stolen", account_id=B)
    assert store.get(bucket, object_id, A)[0] == b"mine"


def test_delete(store: ObjectStore, bucket: str) -> None:
    object_id = oid()
    store.put(bucket, object_id, b"x", account_id=A)
    store.delete(bucket, object_id, A)
    for call in (store.get, store.head, store.delete):
        with pytest.raises(ObjectNotFound):
            call(bucket, object_id, A)


def test_delete_many_deletes_only_visible_objects(store: ObjectStore, bucket: str) -> None:
    mine = [oid() for _ in range(3)]
    theirs, missing = oid(), oid()
    for object_id in mine:
        store.put(bucket, object_id, object_id.encode(), account_id=A)
    store.put(bucket, theirs, b"b's", account_id=B)

    deleted = store.delete_many(bucket, [*mine, theirs, missing, mine[0]], A)

    assert sorted(deleted) == sorted(mine)
    for object_id in mine:
        with pytest.raises(ObjectNotFound):
            store.head(bucket, object_id, A)
    assert store.get(bucket, theirs, B)[0] == b"b's"


def test_delete_many_validates_every_id_first(store: ObjectStore, bucket: str) -> None:
    object_id = oid()
    store.put(bucket, object_id, b"x", account_id=A)
    with pytest.raises(InvalidObjectId):
        store.delete_many(bucket, [object_id, "../escape"], A)
    assert store.head(bucket, object_id, A).id == object_id


# ---- account isolation -----------------------------------------------------------------------

def test_other_account_sees_not_found(store: ObjectStore, bucket: str) -> None:
    object_id = oid()
    store.put(bucket, object_id, b"secret", account_id=A, ttl_days=30)
    with pytest.raises(ObjectNotFound):
        store.get(bucket, object_id, B)
    with pytest.raises(ObjectNotFound):
        store.head(bucket, object_id, B)
    with pytest.raises(ObjectNotFound):
        store.set_ttl(bucket, object_id, B, 1)
    with pytest.raises(ObjectNotFound):
        store.delete(bucket, object_id, B)
    assert store.delete_many(bucket, [object_id], B) == []
    # Nothing B did touched A's object.
    data, obj = store.get(bucket, object_id, A)
    assert (data, obj.ttl_days) == (b"secret", 30)


def test_admin_sees_everything_accounts_do_not_see_system_objects(store: ObjectStore, bucket: str) -> None:
    accounts_object, system_object = oid(), oid()
    store.put(bucket, accounts_object, b"a", account_id=A)
    store.put(bucket, system_object, b"sys", account_id=None)
    assert store.get(bucket, accounts_object, None)[0] == b"a"
    assert store.head(bucket, system_object, None).account_id is None
    with pytest.raises(ObjectNotFound):
        store.get(bucket, system_object, A)


# ---- buckets ---------------------------------------------------------------------------------

def test_buckets(store: ObjectStore) -> None:
    assert not store.bucket_exists("photos")
    store.create_bucket("photos")
    store.create_bucket("archive", ttl_days=90)
    assert store.bucket_exists("photos")
    assert store.list_buckets() == ["archive", "photos"]
    assert (store.bucket_ttl("photos"), store.bucket_ttl("archive")) == (None, 90)
    store.set_bucket_ttl("photos", 14)
    assert store.bucket_ttl("photos") == 14
    with pytest.raises(BucketExists):
        store.create_bucket("photos")


def test_missing_bucket(store: ObjectStore) -> None:
    object_id = oid()
    with pytest.raises(BucketNotFound):
        store.put("no-such-bucket", object_id, b"x", account_id=A)
    with pytest.raises(BucketNotFound):
        store.put("no-such-bucket", object_id, b"x", account_id=A, ttl_days=7)
    for call in (store.get, store.head, store.delete):
        with pytest.raises(BucketNotFound):
            call("no-such-bucket", object_id, A)
    with pytest.raises(BucketNotFound):
        store.delete_many("no-such-bucket", [object_id], A)
    with pytest.raises(BucketNotFound):
        store.set_bucket_ttl("no-such-bucket", 7)


@pytest.mark.parametrize("name", ["Upper", "ab", "under_score", "-dash", "dash-", "a.b", "../up", "x" * 64])
def test_invalid_bucket_names(store: ObjectStore, name: str) -> None:
    with pytest.raises(InvalidBucketName):
        store.create_bucket(name)


def test_default_buckets_are_created_once(store: ObjectStore) -> None:
    names = [spec.name for spec in DEFAULT_BUCKETS]
    assert len(set(names)) == len(names) == len(BUCKET_BY_ROLE) == 6
    assert all(name == name.lower() for name in names)

    assert create_default_buckets(store) == dict.fromkeys(names, True)
    assert create_default_buckets(store, ttl_days=7) == dict.fromkeys(names, False)
    assert store.list_buckets() == sorted(names)
    assert {store.bucket_ttl(name) for name in names} == {7}


# ---- object ids ------------------------------------------------------------------------------

BAD_IDS = ["../../etc/passwd", "..", "a/b/c/d", "/abs/path", "abc", "", ".hidden-file",
           "with space", "nul\x00byte-id", "dot.ted.id", "back\\slash", "x" * 129, "ünïcode-id"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
def test_bad_object_ids_are_rejected(store: ObjectStore, bucket: str, bad_id: str) -> None:
    with pytest.raises(InvalidObjectId):
        store.put(bucket, bad_id, b"x", account_id=A)
    for call in (store.get, store.head, store.delete):
        with pytest.raises(InvalidObjectId):
            call(bucket, bad_id, A)
    with pytest.raises(InvalidObjectId):
        store.set_ttl(bucket, bad_id, A, 1)


def test_non_uuid_safe_ids_work(store: ObjectStore, bucket: str) -> None:
    for object_id in ("abcd", "Sample_01-final", "0" * 128):
        store.put(bucket, object_id, object_id.encode(), account_id=A)
        assert store.get(bucket, object_id, A)[0] == object_id.encode()


# ---- TTL -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad_ttl", [0, 8, 13, 366, -2, True, 1.5, "abc", "7days", None])
def test_invalid_ttls_are_rejected(store: ObjectStore, bucket: str, bad_ttl: object) -> None:
    object_id = oid()
    store.put(bucket, object_id, b"x", account_id=A)
    if bad_ttl is not None:  # None means "no TTL given" where TTLs are optional
        with pytest.raises(InvalidTTL):
            store.put(bucket, oid(), b"x", account_id=A, ttl_days=bad_ttl)
        with pytest.raises(InvalidTTL):
            store.create_bucket("other-bucket", ttl_days=bad_ttl)
    with pytest.raises(InvalidTTL):
        store.set_ttl(bucket, object_id, A, bad_ttl)
    with pytest.raises(InvalidTTL):
        store.set_bucket_ttl(bucket, bad_ttl)
    assert not store.bucket_exists("other-bucket")


def test_expiry_dates(store: ObjectStore, bucket: str) -> None:
    for ttl in (*ALLOWED_TTL_DAYS, "30"):
        obj = store.put(bucket, oid(), b"x", account_id=A, ttl_days=ttl)
        assert obj.ttl_days == int(ttl)
        assert obj.expires_at == obj.created + timedelta(days=int(ttl))
        assert store.head(bucket, obj.id, A).expires_at == obj.expires_at

    forever = store.put(bucket, oid(), b"x", account_id=A, ttl_days=-1)
    assert (forever.ttl_days, forever.expires_at) == (-1, None)
    untimed = store.put(bucket, oid(), b"x", account_id=A)
    assert (untimed.ttl_days, untimed.expires_at) == (None, None)


def test_bucket_default_ttl_applies_unless_object_has_its_own(store: ObjectStore) -> None:
    store.create_bucket("ttl-bucket", ttl_days=30)
    default = store.put("ttl-bucket", oid(), b"x", account_id=A)
    own = store.put("ttl-bucket", oid(), b"x", account_id=A, ttl_days=2)
    forever = store.put("ttl-bucket", oid(), b"x", account_id=A, ttl_days=-1)
    assert store.head("ttl-bucket", default.id, A).expires_at == default.created + timedelta(days=30)
    assert store.head("ttl-bucket", own.id, A).expires_at == own.created + timedelta(days=2)
    assert store.head("ttl-bucket", forever.id, A).expires_at is None


def test_set_ttl_counts_from_creation(store: ObjectStore, bucket: str, clock) -> None:
    obj = store.put(bucket, oid(), b"x", account_id=A)
    clock.advance(days=3)
    updated = store.set_ttl(bucket, obj.id, A, 7)
    assert updated.expires_at == obj.created + timedelta(days=7)
    assert store.head(bucket, obj.id, A) == updated
    assert store.get(bucket, obj.id, A)[0] == b"x"


def test_expired_objects_are_gone_before_any_cleanup(store: ObjectStore, bucket: str, clock) -> None:
    short = store.put(bucket, oid(), b"short", account_id=A, ttl_days=1)
    longer = store.put(bucket, oid(), b"longer", account_id=A, ttl_days=7)
    forever = store.put(bucket, oid(), b"forever", account_id=A, ttl_days=-1)
    clock.advance(hours=23)
    assert store.get(bucket, short.id, A)[0] == b"short"
    clock.advance(hours=2)
    for caller in (A, None):
        with pytest.raises(ObjectNotFound):
            store.get(bucket, short.id, caller)
        with pytest.raises(ObjectNotFound):
            store.head(bucket, short.id, caller)
    assert store.get(bucket, longer.id, A)[0] == b"longer"
    clock.advance(days=400)
    with pytest.raises(ObjectNotFound):
        store.head(bucket, longer.id, A)
    assert store.get(bucket, forever.id, A)[0] == b"forever"
    # An expired id may be reused, even by another account.
    store.put(bucket, short.id, b"reborn", account_id=B)
    assert store.get(bucket, short.id, B)[0] == b"reborn"


# ---- atomicity -------------------------------------------------------------------------------

def _break_writes(store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the next upload die part-way: a full disk while flushing locally, a dropped
    connection during the PutObject on S3."""
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("simulated failure in the middle of a write")

    if isinstance(store, LocalStore):
        monkeypatch.setattr(os, "fsync", fail)
    else:
        monkeypatch.setattr(store.client, "put_object", fail)


def test_failed_put_leaves_nothing_half_written(store: ObjectStore, bucket: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    existing, fresh = oid(), oid()
    store.put(bucket, existing, b"old content", account_id=A, content_type="text/plain")
    _break_writes(store, monkeypatch)
    for object_id in (existing, fresh):
        with pytest.raises(OSError, match="simulated"):
            store.put(bucket, object_id, b"new content that never lands", account_id=A)
    monkeypatch.undo()

    data, obj = store.get(bucket, existing, A)
    assert (data, obj.content_type, obj.size) == (b"old content", "text/plain", len(b"old content"))
    with pytest.raises(ObjectNotFound):
        store.head(bucket, fresh, A)


# ---- registry --------------------------------------------------------------------------------

def test_build_store_registry(tmp_path, moto_endpoint: str) -> None:
    assert set(STORE_TYPES) == {"local", "s3"}
    local = build_store("local", root=tmp_path / "root")
    remote = build_store("S3", endpoint_url=moto_endpoint, access_key="k", secret_key="s",
                         bucket_prefix="registry-")
    assert isinstance(local, LocalStore) and isinstance(remote, S3Store)
    local.create_bucket("reg-bucket")
    remote.create_bucket("reg-bucket")
    assert local.list_buckets() == remote.list_buckets() == ["reg-bucket"]
    with pytest.raises(ValueError, match="unknown storage_type"):
        build_store("ftp")
