"""/samples/faces and /samples/bodies, and save_sample/load_sample used by the inference pipeline."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from app.errors import APIError
from app.image_store import service as image_store
from app.scope import Scope
from tests.api.store_fixtures import _stores, backend, encode, expiry_of, image_of, moto_endpoint, owners  # noqa: F401 - fixtures
from tests.conftest import bearer

KINDS = {"faces": "face_sample", "bodies": "body_sample"}


def crop(seed: int = 0, size: tuple[int, int] = (250, 250)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size[1] // 25, size[0] // 25, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BILINEAR))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_round_trip(client, owners, backend, kind):
    account = owners[0]
    source = encode(Image.fromarray(crop()), "PNG")
    r = client.post(f"/samples/{kind}", data=source, content_type="image/png", headers=account.auth)
    assert r.status_code == 201, r.json
    sample_id = r.json["sample_id"]
    assert r.json["url"] == f"/samples/{kind}/{sample_id}"
    got = client.get(r.json["url"], headers=account.auth)
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    stored = image_of(got.data)
    assert stored.format == "JPEG" and stored.size == (250, 250)
    assert np.abs(np.asarray(stored, np.int16) - crop()).mean() < 4
    head = client.head(r.json["url"], headers=account.auth)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) == len(got.data)

    given = str(uuid.uuid4())
    r = client.put(f"/samples/{kind}/{given}?ttl=90", data=encode(Image.fromarray(crop(1))),
                   content_type="image/jpeg", headers=account.auth)
    assert r.status_code == 200 and r.json["sample_id"] == given
    expected = datetime.now(timezone.utc) + timedelta(days=90)
    assert abs(expiry_of(client.head(r.json["url"], headers=account.auth)) - expected) < timedelta(minutes=2)

    assert client.delete(f"/samples/{kind}/{sample_id}", headers=account.auth).status_code == 204
    assert client.get(f"/samples/{kind}/{sample_id}", headers=account.auth).status_code == 404
    r = client.delete(f"/samples/{kind}", json={"sample_ids": [given, sample_id]}, headers=account.auth)
    assert r.status_code == 200 and r.json["deleted"] == [given]


def test_face_and_body_samples_are_apart(client, owners, backend):
    account = owners[0]
    r = client.post("/samples/faces", data=encode(Image.fromarray(crop())), content_type="image/jpeg",
                    headers=account.auth)
    assert client.get(f"/samples/bodies/{r.json['sample_id']}", headers=account.auth).status_code == 404
    face_only = bearer(account.token({"face_sample": ["view", "creation"]}))
    assert client.get(r.json["url"], headers=face_only).status_code == 200
    assert client.post("/samples/bodies", data=encode(Image.fromarray(crop())), content_type="image/jpeg",
                       headers=face_only).status_code == 403
    assert client.delete(r.json["url"], headers=face_only).status_code == 403


def test_other_account_gets_404(client, owners, backend):
    a, b = owners
    url = client.post("/samples/bodies", data=encode(Image.fromarray(crop())), content_type="image/jpeg",
                      headers=a.auth).json["url"]
    for method in ("get", "head", "delete"):
        assert getattr(client, method)(url, headers=b.auth).status_code == 404, method
    assert client.put(f"{url}/ttl", json={"ttl": 2}, headers=b.auth).status_code == 404
    sample_id = url.rsplit("/", 1)[1]
    assert client.delete("/samples/bodies", json={"sample_ids": [sample_id]}, headers=b.auth).json["deleted"] == []
    assert client.get(url, headers=a.auth).status_code == 200


def test_bad_samples(client, owners, backend):
    account = owners[0]
    r = client.post("/samples/faces", data=b"\x89PNG\r\n\x1a\n broken", content_type="image/png", headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 23011
    r = client.post("/samples/faces", data=b"{}", content_type="application/json", headers=account.auth)
    assert r.status_code == 415
    r = client.post("/samples/faces?thumbnail=1", data=encode(Image.fromarray(crop())), content_type="image/jpeg",
                    headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 10004  # thumbnails are for /images only


def test_save_and_load_sample(owners, backend):
    a, b = owners
    pixels = crop(7)
    sample_id = image_store.save_sample("face", Scope.of(a.account_id), pixels)
    assert uuid.UUID(sample_id).version == 4
    loaded = image_of(image_store.load_sample("face", Scope.of(a.account_id), sample_id))
    assert loaded.format == "JPEG" and np.abs(np.asarray(loaded, np.int16) - pixels).mean() < 4

    given = uuid.uuid4()
    png = encode(Image.fromarray(crop(8)), "PNG")
    assert image_store.save_sample("body", Scope.of(a.account_id), png, sample_id=given, ttl=7) == str(given)
    assert image_of(image_store.load_sample("body", Scope.of(a.account_id), given)).format == "JPEG"

    with pytest.raises(APIError) as exc:
        image_store.load_sample("face", Scope.of(b.account_id), sample_id)
    assert exc.value.status == 404 and exc.value.error.code == 23002
    with pytest.raises(APIError) as exc:
        image_store.load_sample("body", Scope.of(a.account_id), sample_id)  # a face sample is no body sample
    assert exc.value.status == 404
    with pytest.raises(APIError) as exc:
        image_store.save_sample("face", Scope.of(a.account_id), pixels.astype(np.float32))
    assert exc.value.error.code == 23011
    with pytest.raises(ValueError, match="sample kind"):
        image_store.save_sample("hand", Scope.of(a.account_id), pixels)


def test_sample_through_api_is_loadable(client, owners, backend):
    account = owners[0]
    r = client.post("/samples/faces", data=encode(Image.fromarray(crop(3))), content_type="image/jpeg",
                    headers=account.auth)
    assert image_store.load_sample("face", Scope.of(account.account_id), r.json["sample_id"]) == \
        client.get(r.json["url"], headers=account.auth).data
