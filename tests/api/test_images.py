"""/images: source images stored as JPEG, thumbnails, TTLs, account isolation; local disk and S3."""
from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from PIL import Image

from tests.api.store_fixtures import (  # noqa: F401 - fixtures
    _stores,
    advance_store_clock,
    backend,
    encode,
    expiry_of,
    image_of,
    moto_endpoint,
    owners,
)
from tests.conftest import bearer


def photo(size: tuple[int, int] = (320, 200)) -> Image.Image:
    """A picture with structure in both axes, so a rotation or a crop shows."""
    w, h = size
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    y = np.linspace(0, 255, h, dtype=np.uint8)[:, None].repeat(w, 1)
    return Image.fromarray(np.stack([x, y, np.full_like(x, 90)], axis=-1), "RGB")


def post(client, account, data: bytes, content_type: str = "image/jpeg", query: str = ""):
    return client.post(f"/images{query}", data=data, content_type=content_type, headers=account.auth)


def test_round_trip(client, owners, backend):
    account = owners[0]
    source = encode(photo())
    r = post(client, account, source)
    assert r.status_code == 201, r.json
    image_id = r.json["image_id"]
    assert uuid.UUID(image_id).version == 4 and r.json["url"] == f"/images/{image_id}"
    assert expiry_of(r) is None  # the buckets keep objects forever by default

    got = client.get(f"/images/{image_id}", headers=account.auth)
    assert got.status_code == 200 and got.mimetype == "image/jpeg"
    assert got.data == source  # an upright RGB JPEG is kept byte for byte
    head = client.head(f"/images/{image_id}", headers=account.auth)
    assert head.status_code == 200 and head.data == b""
    assert int(head.headers["Content-Length"]) == len(source) and head.mimetype == "image/jpeg"

    assert client.delete(f"/images/{image_id}", headers=account.auth).status_code == 204
    gone = client.get(f"/images/{image_id}", headers=account.auth)
    assert gone.status_code == 404 and gone.json["error_code"] == 23002
    assert client.delete(f"/images/{image_id}", headers=account.auth).status_code == 404


def _rgba() -> bytes:
    image = photo().convert("RGBA")
    alpha = np.full((200, 320), 255, np.uint8)
    alpha[:, :160] = 0  # left half transparent
    image.putalpha(Image.fromarray(alpha))
    return encode(image, "PNG")


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: viewers rotate 90 degrees clockwise
    return encode(photo(), "JPEG", exif=exif.tobytes())


CONVERSIONS = {
    "png-alpha": (_rgba, "image/png"),
    "grayscale": (lambda: encode(photo().convert("L"), "PNG"), "image/png"),
    "cmyk": (lambda: encode(photo().convert("CMYK"), "JPEG"), "image/jpeg"),
    "exif-rotated": (_exif_rotated, "image/jpeg"),
    "bmp": (lambda: encode(photo(), "BMP"), "image/bmp"),
    "tiff": (lambda: encode(photo(), "TIFF"), "image/tiff"),
    "webp": (lambda: encode(photo(), "WEBP", lossless=True), "image/webp"),
}


@pytest.mark.parametrize("name", sorted(CONVERSIONS))
def test_stored_as_upright_rgb_jpeg(client, owners, backend, name):
    account = owners[0]
    make, content_type = CONVERSIONS[name]
    r = post(client, account, make(), content_type)
    assert r.status_code == 201, r.json
    stored = image_of(client.get(f"/images/{r.json['image_id']}", headers=account.auth).data)
    assert stored.format == "JPEG" and stored.mode == "RGB"
    pixels = np.asarray(stored, dtype=np.int16)
    if name == "exif-rotated":
        assert stored.size == (200, 320)
        # rotated clockwise: the source's left column (x=0, dark red) is now the top row
        assert pixels[2, :, 0].mean() < 40 and pixels[-3, :, 0].mean() > 215
        return
    assert stored.size == (320, 200)
    if name == "png-alpha":
        assert (np.abs(pixels[:, :150] - 255) < 6).all()  # transparent -> white
        assert abs(pixels[100, 300, 2] - 90) < 6
    elif name == "grayscale":
        assert (np.abs(pixels[..., 0] - pixels[..., 1]) < 4).all()
    else:
        expected = np.asarray(photo(), dtype=np.int16)
        assert np.abs(pixels - expected).mean() < 6


def test_multipart_upload(client, owners, backend):
    account = owners[0]
    source = encode(photo(), "PNG")
    r = client.post("/images", data={"file": (io.BytesIO(source), "a.png")}, content_type="multipart/form-data",
                    headers=account.auth)
    assert r.status_code == 201, r.json
    assert image_of(client.get(r.json["url"], headers=account.auth).data).size == (320, 200)
    two = {"a": (io.BytesIO(source), "a.png"), "b": (io.BytesIO(source), "b.png")}
    r = client.post("/images", data=two, content_type="multipart/form-data", headers=account.auth)
    assert r.status_code == 400 and "exactly one file" in r.json["detail"]


def test_bad_bodies(client, owners, backend, settings_override):
    account = owners[0]
    r = post(client, account, b"this is not an image at all", "image/png")
    assert r.status_code == 400 and r.json["error_code"] == 23011
    r = post(client, account, encode(photo())[:200])  # truncated JPEG
    assert r.status_code == 400 and r.json["error_code"] == 23011
    r = post(client, account, b"")
    assert r.status_code == 400 and "empty" in r.json["detail"]
    r = post(client, account, b"plain text", "text/plain")
    assert r.status_code == 415 and r.json["error_code"] == 10002
    r = client.post("/images", data=encode(photo()), headers=account.auth)  # no Content-Type
    assert r.status_code == 415
    client.application.config["MAX_CONTENT_LENGTH"] = 1024
    try:
        r = post(client, account, encode(photo()))
        assert r.status_code == 413 and r.json["error_code"] == 10003
    finally:
        client.application.config["MAX_CONTENT_LENGTH"] = 20 * 1024 * 1024


def test_too_many_pixels_is_413(client, owners, backend):
    account = owners[0]
    # 8000 x 6000 = 48 Mpx of one colour: a tiny PNG that would decode to 144 MB
    r = post(client, account, encode(Image.new("L", (8000, 6000)), "PNG", optimize=True), "image/png")
    assert r.status_code == 413 and r.json["error_code"] == 23012


def test_thumbnail(client, owners, backend):
    account = owners[0]
    r = post(client, account, encode(photo((800, 400)), "PNG"), "image/png", "?thumbnail=1")
    assert r.status_code == 201, r.json
    image_id = r.json["image_id"]
    assert r.json["thumbnail_url"] == f"/images/{image_id}/thumbnail"
    thumb = client.get(r.json["thumbnail_url"], headers=account.auth)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert image_of(thumb.data).size == (160, 80)
    assert client.head(r.json["thumbnail_url"], headers=account.auth).status_code == 200
    assert image_of(client.get(r.json["url"], headers=account.auth).data).size == (800, 400)

    assert client.delete(f"/images/{image_id}", headers=account.auth).status_code == 204
    assert client.get(f"/images/{image_id}/thumbnail", headers=account.auth).status_code == 404  # went with it

    plain = post(client, account, encode(photo())).json["image_id"]
    assert client.get(f"/images/{plain}/thumbnail", headers=account.auth).status_code == 404

    # replacing an image replaces its thumbnail, or drops it when the new one asks for none
    put = lambda q, size: client.put(f"/images/{plain}{q}", data=encode(photo(size)),  # noqa: E731
                                     content_type="image/jpeg", headers=account.auth)
    assert put("?thumbnail=1", (320, 640)).status_code == 200
    assert image_of(client.get(f"/images/{plain}/thumbnail", headers=account.auth).data).size == (80, 160)
    assert put("", (320, 200)).status_code == 200
    assert client.get(f"/images/{plain}/thumbnail", headers=account.auth).status_code == 404


def test_put_under_given_id_and_replace(client, owners, backend):
    a, b = owners
    image_id = str(uuid.uuid4())
    r = client.put(f"/images/{image_id}", data=encode(photo((64, 64))), content_type="image/jpeg", headers=a.auth)
    assert r.status_code == 200 and r.json["image_id"] == image_id
    r = client.put(f"/images/{image_id}", data=encode(photo((32, 48)), "PNG"), content_type="image/png",
                   headers=a.auth)
    assert r.status_code == 200
    assert image_of(client.get(f"/images/{image_id}", headers=a.auth).data).size == (32, 48)
    # another account cannot take over the id, and learns nothing else
    r = client.put(f"/images/{image_id}?thumbnail=1", data=encode(photo()), content_type="image/jpeg",
                   headers=b.auth)
    assert r.status_code == 409 and r.json["error_code"] == 23004
    assert image_of(client.get(f"/images/{image_id}", headers=a.auth).data).size == (32, 48)
    r = client.put(f"/images/{image_id}?thumbnail=1", data=encode(photo()), content_type="image/jpeg",
                   headers=a.auth)
    assert r.status_code == 200  # B left no thumbnail behind that would block A's
    r = client.put("/images/not-a-uuid", data=encode(photo()), content_type="image/jpeg", headers=a.auth)
    assert r.status_code == 400 and r.json["error_code"] == 10006


def test_other_account_gets_404(client, owners, backend):
    a, b = owners
    image_id = post(client, a, encode(photo()), query="?thumbnail=1").json["image_id"]
    for method, path in [("get", ""), ("head", ""), ("delete", ""), ("get", "/thumbnail")]:
        r = getattr(client, method)(f"/images/{image_id}{path}", headers=b.auth)
        assert r.status_code == 404, (method, path)
    r = client.put(f"/images/{image_id}/ttl", json={"ttl": 1}, headers=b.auth)
    assert r.status_code == 404 and r.json["error_code"] == 23002
    own = post(client, b, encode(photo())).json["image_id"]
    r = client.delete("/images", json={"image_ids": [image_id, own]}, headers=b.auth)
    assert r.status_code == 200 and r.json["deleted"] == [own]
    assert client.get(f"/images/{image_id}", headers=a.auth).status_code == 200
    assert client.get(f"/images/{image_id}/thumbnail", headers=a.auth).status_code == 200
    assert expiry_of(client.head(f"/images/{image_id}", headers=a.auth)) is None  # B's TTL never applied


def test_advanced_user_reads_every_account(client, owners, account_factory, backend):
    a, adv = owners[0], account_factory("advanced_user")
    image_id = post(client, a, encode(photo())).json["image_id"]
    assert client.get(f"/images/{image_id}", headers=adv.auth).status_code == 200
    assert client.delete(f"/images/{image_id}", headers=adv.auth).status_code == 404  # writes stay own-account
    narrow = adv.token({"image": ["view"]})  # visibility_area "account" by default
    assert client.get(f"/images/{image_id}", headers=bearer(narrow)).status_code == 404


def test_batch_delete(client, owners, backend):
    account = owners[0]
    ids = [post(client, account, encode(photo()), query="?thumbnail=1").json["image_id"] for _ in range(3)]
    missing = str(uuid.uuid4())
    r = client.delete("/images", json={"image_ids": [ids[0], ids[1], ids[1], missing]}, headers=account.auth)
    assert r.status_code == 200 and r.json["deleted"] == ids[:2]
    for image_id in ids[:2]:
        assert client.head(f"/images/{image_id}", headers=account.auth).status_code == 404
        assert client.head(f"/images/{image_id}/thumbnail", headers=account.auth).status_code == 404
    assert client.head(f"/images/{ids[2]}", headers=account.auth).status_code == 200
    for body in ({"image_ids": []}, {"image_ids": ["nope"]}, {"ids": [ids[2]]}, {"image_ids": [ids[2]] * 1001}):
        r = client.delete("/images", json=body, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005, body
    assert client.head(f"/images/{ids[2]}", headers=account.auth).status_code == 200


def _close(when: datetime | None, expected: datetime) -> bool:
    return when is not None and abs(when - expected) < timedelta(minutes=2)


def test_ttl_on_create_gives_expiry_header(client, owners, backend):
    account = owners[0]
    r = post(client, account, encode(photo()), query="?ttl=30&thumbnail=1")
    assert r.status_code == 201, r.json
    expected = datetime.now(timezone.utc) + timedelta(days=30)
    assert _close(expiry_of(r), expected)
    for path in (r.json["url"], r.json["thumbnail_url"]):
        assert _close(expiry_of(client.get(path, headers=account.auth)), expected)
        assert _close(expiry_of(client.head(path, headers=account.auth)), expected)
    forever = post(client, account, encode(photo()), query="?ttl=-1")
    assert forever.status_code == 201 and expiry_of(forever) is None


def test_set_ttl_on_existing_image(client, owners, backend):
    account = owners[0]
    created = post(client, account, encode(photo()), query="?thumbnail=1").json
    r = client.put(f"{created['url']}/ttl", json={"ttl": 7}, headers=account.auth)
    assert r.status_code == 200, r.json
    expected = datetime.now(timezone.utc) + timedelta(days=7)
    assert r.json["ttl"] == 7 and _close(datetime.fromisoformat(r.json["expires_at"]), expected)
    assert _close(expiry_of(r), expected)
    assert _close(expiry_of(client.head(created["url"], headers=account.auth)), expected)
    assert _close(expiry_of(client.head(created["thumbnail_url"], headers=account.auth)), expected)
    r = client.put(f"{created['url']}/ttl", json={"ttl": -1}, headers=account.auth)
    assert r.status_code == 200 and r.json["expires_at"] is None
    assert expiry_of(client.head(created["url"], headers=account.auth)) is None


@pytest.mark.parametrize("bad", ["8", "0", "-2", "366", "x"])
def test_bad_ttl(client, owners, backend, bad):
    account = owners[0]
    r = post(client, account, encode(photo()), query=f"?ttl={bad}")
    assert r.status_code == 400 and r.json["error_code"] == 10005 and "ttl" in r.json["detail"]
    image_id = post(client, account, encode(photo())).json["image_id"]
    r = client.put(f"/images/{image_id}/ttl", json={"ttl": bad}, headers=account.auth)
    assert r.status_code == 400 and "ttl" in r.json["detail"]


def test_expired_image_is_gone(client, owners, backend, monkeypatch):
    account = owners[0]
    short = post(client, account, encode(photo()), query="?ttl=1").json["image_id"]
    long = post(client, account, encode(photo()), query="?ttl=3").json["image_id"]
    advance_store_clock(monkeypatch, days=2)
    assert client.get(f"/images/{short}", headers=account.auth).status_code == 404
    assert client.head(f"/images/{short}", headers=account.auth).status_code == 404
    assert client.get(f"/images/{long}", headers=account.auth).status_code == 200


def test_token_permissions(client, owners, backend):
    account = owners[0]
    viewer = bearer(account.token({"image": ["view"]}))
    creator = bearer(account.token({"image": ["creation"]}))
    r = client.post("/images", data=encode(photo()), content_type="image/jpeg", headers=viewer)
    assert r.status_code == 403
    r = client.post("/images", data=encode(photo()), content_type="image/jpeg", headers=creator)
    assert r.status_code == 201
    image_id = r.json["image_id"]
    assert client.get(f"/images/{image_id}", headers=creator).status_code == 403
    assert client.get(f"/images/{image_id}", headers=viewer).status_code == 200
    assert client.delete(f"/images/{image_id}", headers=viewer).status_code == 403
    assert client.get(f"/images/{image_id}").status_code == 401


def test_unknown_query_parameter(client, owners, backend):
    account = owners[0]
    r = post(client, account, encode(photo()), query="?tll=30")
    assert r.status_code == 400 and r.json["error_code"] == 10004
