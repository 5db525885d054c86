"""/objects: any bytes kept with their Content-Type; TTLs and account isolation; local disk and S3."""
from __future__ import annotations

import io
import json
import uuid
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from tests.api.store_fixtures import _stores, advance_store_clock, backend, expiry_of, moto_endpoint, owners  # noqa: F401 - fixtures
from tests.conftest import bearer


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("report.txt", "rows: 3\n")
    return out.getvalue()


BODIES = {
    "json": (json.dumps({"faces": [1, 2, 3]}).encode(), "application/json"),
    "text": ("Grüße, plain text\n".encode(), "text/plain; charset=utf-8"),
    "zip": (_zip(), "application/zip"),
    "pdf": (b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n", "application/pdf"),
    "binary": (bytes(range(256)) * 8, "application/octet-stream"),
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_round_trip_keeps_bytes_and_type(client, owners, backend, name):
    account = owners[0]
    data, content_type = BODIES[name]
    r = client.post("/objects", data=data, content_type=content_type, headers=account.auth)
    assert r.status_code == 201, r.json
    object_id = r.json["object_id"]
    assert r.json["url"] == f"/objects/{object_id}" and uuid.UUID(object_id).version == 4
    got = client.get(f"/objects/{object_id}", headers=account.auth)
    assert got.status_code == 200 and got.data == data
    assert got.headers["Content-Type"] == content_type
    head = client.head(f"/objects/{object_id}", headers=account.auth)
    assert head.data == b"" and int(head.headers["Content-Length"]) == len(data)
    assert head.headers["Content-Type"] == content_type
    assert client.delete(f"/objects/{object_id}", headers=account.auth).status_code == 204
    assert client.get(f"/objects/{object_id}", headers=account.auth).json["error_code"] == 23002


def test_bad_bodies(client, owners, backend):
    account = owners[0]
    r = client.post("/objects", data=b"abc", headers=account.auth)  # no Content-Type
    assert r.status_code == 415 and r.json["error_code"] == 10002
    r = client.post("/objects", data=b"abc", content_type="not a type", headers=account.auth)
    assert r.status_code == 415
    r = client.post("/objects", data={"file": (io.BytesIO(b"abc"), "a.txt")}, content_type="multipart/form-data",
                    headers=account.auth)
    assert r.status_code == 415 and "multipart" in r.json["detail"]
    r = client.post("/objects", data=b"", content_type="application/json", headers=account.auth)
    assert r.status_code == 400 and "empty" in r.json["detail"]


def test_json_object_is_not_parsed(client, owners, backend):
    # The body is the object: malformed JSON is stored as sent, not refused as a request error.
    account = owners[0]
    r = client.post("/objects", data=b"{not json", content_type="application/json", headers=account.auth)
    assert r.status_code == 201
    assert client.get(r.json["url"], headers=account.auth).data == b"{not json"


def test_put_under_id_replaces_type_and_bytes(client, owners, backend):
    a, b = owners
    object_id = str(uuid.uuid4())
    r = client.put(f"/objects/{object_id}", data=b'{"v": 1}', content_type="application/json", headers=a.auth)
    assert r.status_code == 200 and r.json["object_id"] == object_id
    r = client.put(f"/objects/{object_id}", data=b"v2", content_type="text/plain", headers=a.auth)
    assert r.status_code == 200
    got = client.get(f"/objects/{object_id}", headers=a.auth)
    assert got.data == b"v2" and got.mimetype == "text/plain"
    r = client.put(f"/objects/{object_id}", data=b"mine", content_type="text/plain", headers=b.auth)
    assert r.status_code == 409 and r.json["error_code"] == 23004
    assert client.get(f"/objects/{object_id}", headers=a.auth).data == b"v2"


def test_other_account_gets_404(client, owners, backend):
    a, b = owners
    object_id = client.post("/objects", data=b"secret", content_type="text/plain", headers=a.auth).json["object_id"]
    for method in ("get", "head", "delete"):
        assert getattr(client, method)(f"/objects/{object_id}", headers=b.auth).status_code == 404, method
    assert client.put(f"/objects/{object_id}/ttl", json={"ttl": 1}, headers=b.auth).status_code == 404
    r = client.delete("/objects", json={"object_ids": [object_id]}, headers=b.auth)
    assert r.status_code == 200 and r.json["deleted"] == []
    got = client.get(f"/objects/{object_id}", headers=a.auth)
    assert got.data == b"secret" and expiry_of(got) is None


def test_ttl_create_set_and_expiry(client, owners, backend, monkeypatch):
    account = owners[0]
    r = client.post("/objects?ttl=14", data=b"x", content_type="text/plain", headers=account.auth)
    assert r.status_code == 201
    in_14 = datetime.now(timezone.utc) + timedelta(days=14)
    assert abs(expiry_of(client.head(r.json["url"], headers=account.auth)) - in_14) < timedelta(minutes=2)
    kept = client.post("/objects", data=b"y", content_type="text/plain", headers=account.auth).json["url"]
    r2 = client.put(f"{kept}/ttl", json={"ttl": 1}, headers=account.auth)
    assert r2.status_code == 200 and r2.json["ttl"] == 1
    in_1 = datetime.now(timezone.utc) + timedelta(days=1)
    assert abs(expiry_of(client.get(kept, headers=account.auth)) - in_1) < timedelta(minutes=2)
    r3 = client.put(f"{kept}/ttl", data="ttl=1", content_type="application/x-www-form-urlencoded",
                    headers=account.auth)
    assert r3.status_code == 415
    advance_store_clock(monkeypatch, days=2)
    assert client.get(kept, headers=account.auth).status_code == 404
    assert client.get(r.json["url"], headers=account.auth).status_code == 200


def test_batch_delete_and_permissions(client, owners, backend):
    account = owners[0]
    ids = [client.post("/objects", data=b"%d" % i, content_type="text/plain", headers=account.auth).json["object_id"]
           for i in range(3)]
    viewer = bearer(account.token({"object": ["view"]}))
    deleter = bearer(account.token({"object": ["deletion"]}))
    assert client.delete("/objects", json={"object_ids": ids}, headers=viewer).status_code == 403
    assert client.post("/objects", data=b"z", content_type="text/plain", headers=viewer).status_code == 403
    r = client.delete("/objects", json={"object_ids": ids[:2]}, headers=deleter)
    assert r.status_code == 200 and sorted(r.json["deleted"]) == sorted(ids[:2])
    assert client.get(f"/objects/{ids[2]}", headers=viewer).status_code == 200
    assert client.get(f"/objects/{ids[0]}", headers=viewer).status_code == 404
    image_token = bearer(account.token({"image": ["view", "creation", "deletion"]}))
    assert client.get(f"/objects/{ids[2]}", headers=image_token).status_code == 403
