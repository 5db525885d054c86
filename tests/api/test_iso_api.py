"""/iso: ISO/IEC 19794-5-style checks through the real worker, default and user thresholds."""
from __future__ import annotations

import base64
import io
import json

from PIL import Image

from inference.iso import DEFAULT_THRESHOLDS
from tests.api.sdk_fixtures import FACES, files, post, sdk_user  # noqa: F401 - sdk_user is a fixture

PORTRAIT = FACES / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg"


def checks(image: dict) -> dict[str, dict]:
    return {c["name"]: c for c in image["checks"]}


def as_png(path) -> bytes:
    out = io.BytesIO()
    Image.open(path).save(out, "PNG")
    return out.getvalue()


def test_default_thresholds(client, sdk_user):
    r = post(client, "/iso", sdk_user, PORTRAIT, FACES / "noface" / "dlib_dog.jpg")
    assert r.status_code == 200, r.json
    portrait, dog = r.json["images"]
    got = checks(portrait)
    assert list(got) == list(DEFAULT_THRESHOLDS)
    assert got["image_format"]["value"] == "JPEG" and got["image_format"]["result"] == 1
    assert got["image_width"]["value"] == 250 and got["image_width"]["result"] == 1
    assert got["aspect_ratio"]["value"] == 1.0 and got["aspect_ratio"]["result"] == 0  # a portrait is 3:4
    assert portrait["result"] == 0 and portrait["face"]["rect"]["width"] > 50
    assert all(c["result"] in (0, 1) and c["error"] is None for c in got.values())
    assert got["head_yaw"]["threshold"] == {"min": -5.0, "max": 5.0}
    dog_checks = checks(dog)
    assert dog_checks["face_count"]["value"] == 0 and dog_checks["face_count"]["result"] == 0
    assert dog_checks["eyes_open"]["result"] is None and "no face" in dog_checks["eyes_open"]["error"]
    assert dog["face"] is None and dog["result"] == 0


def test_user_thresholds_json_and_form(client, sdk_user):
    thresholds = {"aspect_ratio": {"min": 0.9, "max": 1.1}, "image_format": ["PNG"]}
    body = {"images": [{"image": base64.b64encode(PORTRAIT.read_bytes()).decode(), "filename": "p.jpg"},
                       {"image": base64.b64encode(as_png(PORTRAIT)).decode(), "filename": "p.png"}],
            "thresholds": thresholds}
    r = client.post("/iso", json=body, headers=sdk_user.auth)
    assert r.status_code == 200, r.json
    jpeg, png = (checks(i) for i in r.json["images"])
    assert jpeg["aspect_ratio"]["result"] == 1 and jpeg["aspect_ratio"]["threshold"] == {"min": 0.9, "max": 1.1}
    assert (jpeg["image_format"]["result"], png["image_format"]["value"], png["image_format"]["result"]) == (0, "PNG", 1)
    form = {**files(PORTRAIT), "thresholds": json.dumps({"image_width": {"min": 300}})}
    r = client.post("/iso", data=form, headers=sdk_user.auth, content_type="multipart/form-data")
    assert r.status_code == 200, r.json
    assert checks(r.json["images"][0])["image_width"]["result"] == 0


def test_bad_thresholds(client, sdk_user):
    for thresholds in ({"nose_length": {"min": 1}}, {"head_yaw": {"low": 1}}, {"head_yaw": 5}):
        body = {"images": [{"image": "AAAA"}], "thresholds": thresholds}
        r = client.post("/iso", json=body, headers=sdk_user.auth)
        assert r.status_code == 400 and r.json["error_code"] == 30007, thresholds


def test_disabled_estimator_leaves_its_checks_unevaluated(client, sdk_user, settings_override):
    settings_override(enable_eyes=False)
    r = post(client, "/iso", sdk_user, PORTRAIT)
    assert r.status_code == 200, r.json
    got = checks(r.json["images"][0])
    assert got["eyes_open"]["result"] is None and "'eyes'" in got["eyes_open"]["error"]
    assert got["head_yaw"]["result"] in (0, 1) and r.json["images"][0]["result"] == 0
