"""/detector: faces and bodies with stored samples, on the shared photos through the real worker."""
from __future__ import annotations

import io

from PIL import Image

from tests.api.sdk_fixtures import FACES, post, sdk_user  # noqa: F401 - sdk_user is a fixture

BUS = FACES / "bodies" / "yolov5_bus.jpg"
COUPLE = FACES / "multi" / "face_recognition_obama_and_biden.jpg"


def test_faces_and_bodies_with_samples(client, sdk_user):
    dog = FACES / "noface" / "dlib_dog.jpg"
    r = post(client, "/detector", sdk_user, BUS, COUPLE, dog, detect_body=1)
    assert r.status_code == 200, r.json
    bus, couple, nobody = r.json["images"]
    assert len(bus["bodies"]) >= 1 and len(couple["faces"]) >= 2
    assert nobody["bodies"] == [] and nobody["faces"] == []
    x, y, w, h = (bus["bodies"][0]["rect"][k] for k in ("x", "y", "width", "height"))
    assert 0 < x + w / 2 < bus["width"] and 0 < y + h / 2 < bus["height"]
    for kind, items in (("bodies", bus["bodies"]), ("faces", couple["faces"])):
        for item in items:
            assert (item if kind == "bodies" else item["detection"])["score"] >= 0.5
            sample = client.get(f"/samples/{kind}/{item['sample_id']}", headers=sdk_user.auth)
            assert sample.status_code == 200 and Image.open(io.BytesIO(sample.data)).format == "JPEG"
    assert all(set(face) == {"detection", "landmarks5", "sample_id"} for face in couple["faces"])


def test_faces_only_by_default(client, sdk_user):
    r = post(client, "/detector", sdk_user, COUPLE)
    assert r.status_code == 200 and "bodies" not in r.json["images"][0]
    assert len(r.json["images"][0]["faces"]) >= 2


def test_options_are_checked(client, sdk_user, settings_override):
    r = post(client, "/detector", sdk_user, BUS, detect_face=0)
    assert r.status_code == 400 and r.json["error_code"] == 10005
    r = post(client, "/detector", sdk_user, BUS, extract_descriptor=1)
    assert r.status_code == 400 and r.json["error_code"] == 10004
    settings_override(enable_all_estimators_by_default=False, enable_face_detector=True, enable_face_landmarks5=True)
    r = post(client, "/detector", sdk_user, BUS, detect_body=1)
    assert r.status_code == 403 and r.json["error_code"] == 30001 and "'body_detector'" in r.json["detail"]
    r = post(client, "/detector", sdk_user, COUPLE)
    assert r.status_code == 200 and len(r.json["images"][0]["faces"]) >= 2
