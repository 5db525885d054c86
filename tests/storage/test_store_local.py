"""What is specific to the local-disk back-end: the on-disk layout, crash debris, concurrent
readers during overwrites, and physical cleanup of expired objects."""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from app.image_store.backends import LocalStore, ObjectNotFound


def oid() -> str:
    return str(uuid.uuid4())


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_layout_matches_the_documented_one(local_store: LocalStore) -> None:
    local_store.create_bucket("samples", ttl_days=30)
    jpeg_id, json_id = "8f4f0070-c464-460b-af78-fac234df32e9", "1b0359af-ecd8-4712-8fc0-08401612d39b"
    jpeg = local_store.put("samples", jpeg_id, b"\xff\xd8\xff jpeg", account_id="acc",
                           content_type="image/jpeg")
    local_store.put("samples", json_id, b"{}", account_id=None, content_type="application/json", ttl_days=-1)

    root = local_store.root
    assert files_under(root) == {
        "samples/.bucket.json",
        f"samples/8f4f/{jpeg_id}.jpg", f"samples/8f4f/{jpeg_id}.meta.json",
        f"samples/1b03/{json_id}", f"samples/1b03/{json_id}.meta.json",
    }
    assert json.loads((root / "samples/.bucket.json").read_text()) == {"ttl_days": 30}
    assert (root / f"samples/8f4f/{jpeg_id}.jpg").read_bytes() == b"\xff\xd8\xff jpeg"

    jpeg_meta = json.loads((root / f"samples/8f4f/{jpeg_id}.meta.json").read_text())
    assert jpeg_meta["account_id"] == "acc"
    assert "content_type" not in jpeg_meta  # the .jpg name says it
    assert (jpeg_meta["ttl_days"], jpeg_meta["expires_at"]) == (30, jpeg.expires_at.isoformat())
    json_meta = json.loads((root / f"samples/1b03/{json_id}.meta.json").read_text())
    assert (json_meta["account_id"], json_meta["content_type"]) == (None, "application/json")
    assert (json_meta["ttl_days"], json_meta["expires_at"]) == (-1, None)


def test_only_the_owner_reads_the_store(tmp_path: Path) -> None:
    """Faces are personal data: 0700 folders and 0600 files whatever the process umask says."""
    old = os.umask(0o022)
    try:
        store = LocalStore(tmp_path / "store")
        store.create_bucket("samples")
        store.put("samples", oid(), b"\xff\xd8\xff jpeg", account_id="acc", content_type="image/jpeg")
    finally:
        os.umask(old)
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in (tmp_path / "store").rglob("*")}
    modes["store"] = (tmp_path / "store").stat().st_mode & 0o777
    assert len(modes) == 5  # root, bucket, shard, data file, record
    assert {m for p, m in modes.items() if (tmp_path / p).is_dir()} == {0o700}
    assert {m for p, m in modes.items() if (tmp_path / p).is_file()} == {0o600}


def test_changing_format_leaves_no_stale_data_file(local_store: LocalStore) -> None:
    local_store.create_bucket("objects")
    object_id = oid()
    local_store.put("objects", object_id, b"\xff\xd8", account_id="a", content_type="image/jpeg")
    local_store.put("objects", object_id, b"text", account_id="a", content_type="text/plain")
    shard = local_store.root / "objects" / object_id[:4]
    assert sorted(os.listdir(shard)) == [object_id, f"{object_id}.meta.json"]


def test_crash_between_data_and_record_is_invisible_and_swept(tmp_path: Path, clock,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path / "store", clock=clock, orphan_grace_s=0)
    store.create_bucket("objects")
    existing, fresh = oid(), oid()
    store.put("objects", existing, b"old", account_id="a")
    real_replace = os.replace

    def die_on_record(src: str, dst: str) -> None:
        if str(dst).endswith(".meta.json"):
            raise OSError("simulated crash before the record lands")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", die_on_record)
    for object_id in (existing, fresh):
        with pytest.raises(OSError, match="simulated"):
            store.put("objects", object_id, b"new data", account_id="a")
    monkeypatch.undo()

    # The new data files are on disk, but no record points at them: neither id shows new data
    # under an old record. (An interrupted overwrite loses the id; it never mixes versions.)
    for object_id in (existing, fresh):
        with pytest.raises(ObjectNotFound):
            store.get("objects", object_id, "a")
        assert (store.root / "objects" / object_id[:4] / object_id).exists()
    assert not [p for p in store.root.rglob(".tmp-*")]  # temporaries never outlive a failed put

    assert store.cleanup_expired() == 0  # debris is not an expired object...
    assert files_under(store.root) == set()  # ...but it is swept


def test_fresh_debris_is_left_to_writes_in_progress(local_store: LocalStore) -> None:
    local_store.create_bucket("objects")
    shard = local_store.root / "objects" / "abcd"
    shard.mkdir()
    (shard / ".tmp-0123456789abcdef").write_bytes(b"being written")
    (shard / "abcd-in-flight").write_bytes(b"renamed, record not yet")
    local_store.cleanup_expired()
    assert sorted(os.listdir(shard)) == [".tmp-0123456789abcdef", "abcd-in-flight"]


def test_readers_never_see_a_mixed_version_during_overwrites(local_store: LocalStore) -> None:
    local_store.create_bucket("objects")
    object_id = oid()
    # (content type, size) identifies a version; the two JPEGs share a data file name, so only the
    # record check can tell their contents apart.
    versions = [("image/jpeg", b"\xff\xd8" + b"s" * 10), ("image/jpeg", b"\xff\xd8" + b"L" * 50_000),
                ("application/json", b'{"v": 3}')]
    expected = {(ctype, len(payload)): payload for ctype, payload in versions}
    local_store.put("objects", object_id, versions[0][1], account_id="a", content_type=versions[0][0])
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            for ctype, payload in versions:
                local_store.put("objects", object_id, payload, account_id="a", content_type=ctype)

    thread = threading.Thread(target=writer)
    thread.start()
    seen, reads = set(), 0
    deadline = time.monotonic() + 5
    try:
        while (len(seen) < len(versions) or reads < 300) and time.monotonic() < deadline:
            try:
                data, obj = local_store.get("objects", object_id, "a")
            except ObjectNotFound:  # between "old record hidden" and "new record visible"
                continue
            reads += 1
            assert data == expected[(obj.content_type, obj.size)]
            seen.add((obj.content_type, obj.size))
    finally:
        stop.set()
        thread.join()
    assert seen == set(expected), "the reader should have observed every version"


def test_cleanup_removes_exactly_the_expired_objects(local_store: LocalStore, clock) -> None:
    local_store.create_bucket("samples", ttl_days=7)
    local_store.create_bucket("objects")
    one_day = local_store.put("samples", oid(), b"1", account_id="a", ttl_days=1, content_type="image/jpeg")
    default = local_store.put("samples", oid(), b"7", account_id="a")
    forever = local_store.put("samples", oid(), b"f", account_id="a", ttl_days=-1)
    untimed = local_store.put("objects", oid(), b"u", account_id="b")
    assert local_store.cleanup_expired() == 0

    calls = []
    assert local_store.cleanup_expired(clock() + timedelta(days=2), heartbeat=lambda: calls.append(1)) == 1
    assert calls, "cleanup must give a lock holder the chance to extend its lock"
    assert not (local_store.root / "samples" / one_day.id[:4] / f"{one_day.id}.jpg").exists()
    assert not (local_store.root / "samples" / one_day.id[:4] / f"{one_day.id}.meta.json").exists()

    clock.advance(days=8)
    assert local_store.cleanup_expired() == 1
    with pytest.raises(ObjectNotFound):
        local_store.head("samples", default.id, None)
    clock.advance(days=5000)
    assert local_store.cleanup_expired() == 0
    assert local_store.get("samples", forever.id, "a")[0] == b"f"
    assert local_store.get("objects", untimed.id, "b")[0] == b"u"
    assert len(files_under(local_store.root)) == 1 + 4  # bucket meta + two live objects


def test_bucket_ttl_reaches_objects_stored_without_one(local_store: LocalStore, clock) -> None:
    """Adding a TTL to an existing local bucket applies to its objects that had none (on S3 the
    migration's tagging step does the same)."""
    local_store.create_bucket("objects")
    before = local_store.put("objects", oid(), b"x", account_id="a")
    pinned = local_store.put("objects", oid(), b"y", account_id="a", ttl_days=-1)
    local_store.set_bucket_ttl("objects", 3)
    assert local_store.head("objects", before.id, "a").expires_at == before.created + timedelta(days=3)
    clock.advance(days=4)
    assert local_store.cleanup_expired() == 1
    with pytest.raises(ObjectNotFound):
        local_store.head("objects", before.id, None)
    assert local_store.head("objects", pinned.id, "a").expires_at is None
