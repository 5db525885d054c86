"""/sdk end to end: real worker, real models, shared photos; inputs, errors, estimations, descriptors."""
from __future__ import annotations

import base64
import csv
import functools
import http.server
import io
import threading
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from inference import descriptor_format, pipeline
from inference.images import decode_image
from tests.api.sdk_fixtures import FACES, files, post, sdk_user  # noqa: F401 - sdk_user is a fixture
from tests.conftest import bearer

LFW = FACES / "lfw"
PORTRAIT = LFW / "Colin_Powell" / "Colin_Powell_0001.jpg"


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def box(face: dict) -> tuple[float, float, float, float]:
    r = face["detection"]["rect"]
    return r["x"], r["y"], r["width"], r["height"]


def largest(faces: list[dict]) -> dict:
    return max(faces, key=lambda f: f["detection"]["rect"]["width"])


def sdk_descriptor(face: dict) -> np.ndarray:
    version, vector = descriptor_format.unpack(base64.b64decode(face["descriptor"]))
    assert version == descriptor_format.DESCRIPTOR_VERSION == face["descriptor_version"]
    return vector


def test_group_photos_every_annotated_face(client, sdk_user):
    annotated = defaultdict(list)
    with open(FACES / "multi" / "face_boxes_dlib.csv") as fh:
        for row in csv.DictReader(fh):
            annotated[row["path"].split("/")[-1]].append(tuple(float(row[k]) for k in "xywh"))
    names = ["dlib_2007_007763.jpg", "dlib_2008_004176.jpg", "dlib_2008_001322.jpg"]
    r = post(client, "/sdk", sdk_user, *(FACES / "multi" / n for n in names))
    assert r.status_code == 200, r.json
    for name, image in zip(names, r.json["images"]):
        assert image["filename"] == name
        found = [box(f) for f in image["faces"]]
        assert len(annotated[name]) <= len(found) <= len(annotated[name]) + 1, name
        assert all(any(iou(a, b) >= 0.4 for b in found) for a in annotated[name]), name
        assert all(len(f["landmarks5"]) == 5 and f["detection"]["score"] > 0.9 for f in image["faces"])
    sample_id = r.json["images"][0]["faces"][0]["sample_id"]
    sample = client.get(f"/samples/faces/{sample_id}", headers=sdk_user.auth)
    assert sample.status_code == 200 and Image.open(io.BytesIO(sample.data)).size == (150, 150)
    assert "aggregate" not in r.json and "descriptor" not in r.json["images"][0]["faces"][0]


def test_no_face_is_an_empty_list(client, sdk_user):
    paths = sorted((FACES / "noface").iterdir())
    r = post(client, "/sdk", sdk_user, *paths, extract_descriptor=1)
    assert r.status_code == 200, r.json
    assert [i["filename"] for i in r.json["images"]] == [p.name for p in paths]
    assert all(i["faces"] == [] for i in r.json["images"])


def test_descriptor_equals_the_pipeline_and_lands_in_an_attribute(client, sdk_user):
    r = post(client, "/sdk", sdk_user, PORTRAIT, extract_descriptor=1, estimate_basic_attributes=1)
    assert r.status_code == 200, r.json
    face = largest(r.json["images"][0]["faces"])
    direct = max(pipeline.process([decode_image(PORTRAIT.read_bytes())])[0], key=lambda f: f.detection.box[2])
    np.testing.assert_allclose(sdk_descriptor(face), direct.descriptor, atol=1e-4)
    np.testing.assert_allclose(face["landmarks5"], direct.landmarks5, atol=1e-3)
    attribute = client.get(f"/attributes/{face['attribute_id']}", headers=sdk_user.auth)
    assert attribute.status_code == 200, attribute.json
    assert attribute.json["descriptors"][0]["descriptor"] == face["descriptor"]
    assert attribute.json["sample_ids"] == [face["sample_id"]]
    assert face["basic_attributes"]["gender_label"] == "male"
    assert attribute.json["basic_attributes"] == {"age": pytest.approx(face["basic_attributes"]["age"]),
                                                  "gender": pytest.approx(face["basic_attributes"]["gender_score"])}


def test_descriptor_versions_one_pass_or_mirrored(client, sdk_user, settings_override):
    image = decode_image(PORTRAIT.read_bytes())
    by_version = {}
    for version in (descriptor_format.MIRRORED_VERSION, descriptor_format.SINGLE_PASS_VERSION):
        r = post(client, "/sdk", sdk_user, PORTRAIT, extract_descriptor=1, descriptor_version=version)
        assert r.status_code == 200, r.json
        face = largest(r.json["images"][0]["faces"])
        got, vector = descriptor_format.unpack(base64.b64decode(face["descriptor"]))
        assert got == face["descriptor_version"] == version
        direct = max(pipeline.process([image], version)[0], key=lambda f: f.detection.box[2])
        np.testing.assert_allclose(vector, direct.descriptor, atol=1e-4)
        stored = client.get(f"/attributes/{face['attribute_id']}", headers=sdk_user.auth).json
        assert [d["version"] for d in stored["descriptors"]] == [version]
        by_version[version] = vector
    gap = np.linalg.norm(by_version[101] - by_version[102])
    assert 1e-3 < gap < descriptor_format.DEFAULT_DISTANCE_THRESHOLD / 4  # same face, not the same vector
    # the setting decides when the request does not name a version (the default is the mirrored one)
    face = largest(post(client, "/sdk", sdk_user, PORTRAIT, extract_descriptor=1).json["images"][0]["faces"])
    assert face["descriptor_version"] == descriptor_format.MIRRORED_VERSION
    settings_override(face_descriptor_version=descriptor_format.SINGLE_PASS_VERSION)
    face = largest(post(client, "/sdk", sdk_user, PORTRAIT, extract_descriptor=1).json["images"][0]["faces"])
    assert face["descriptor_version"] == descriptor_format.SINGLE_PASS_VERSION
    r = post(client, "/sdk", sdk_user, PORTRAIT, extract_descriptor=1, descriptor_version=57)
    assert r.status_code == 400 and "descriptor_version" in str(r.json), r.json


def test_every_estimation_on_a_portrait(client, sdk_user):
    flags = {name: 1 for name in ("estimate_landmarks68", "estimate_head_pose", "estimate_eyes", "estimate_gaze",
                                  "estimate_mouth", "estimate_quality", "estimate_basic_attributes", "estimate_emotions")}
    r = post(client, "/sdk", sdk_user, PORTRAIT, **flags)
    assert r.status_code == 200, r.json
    face = largest(r.json["images"][0]["faces"])
    assert len(face["landmarks68"]) == 68
    assert all(abs(face["head_pose"][k]) < 30 for k in ("yaw", "pitch", "roll"))
    assert face["eyes"]["left"]["is_open"] and face["eyes"]["right"]["is_open"]
    assert abs(face["gaze"]["yaw"]) < 45
    assert 0 <= face["mouth"]["opened_score"] <= 1 and 0 <= face["mouth"]["smile_score"] <= 1
    assert all(0 <= face["quality"][k] <= 1 for k in ("blur", "darkness", "lightness", "illumination", "specularity"))
    assert 35 <= face["basic_attributes"]["age"] <= 85 and face["basic_attributes"]["gender_label"] == "male"
    assert sum(face["emotions"]["probabilities"].values()) == pytest.approx(1, abs=1e-4)
    assert face["emotions"]["predominant"] in face["emotions"]["probabilities"]


def test_aggregation_over_one_lfw_person(client, sdk_user):
    paths = sorted((LFW / "George_W_Bush").iterdir())[:4]
    r = post(client, "/sdk", sdk_user, *paths, extract_descriptor=1, estimate_basic_attributes=1, aggregate_attributes=1)
    assert r.status_code == 200, r.json
    faces = [largest(i["faces"]) for i in r.json["images"]]
    agg = r.json["aggregate"]
    assert agg["faces"] == 4 and agg["sample_ids"] == [f["sample_id"] for f in faces]
    vectors = np.stack([sdk_descriptor(f) for f in faces])
    _, aggregated = descriptor_format.unpack(base64.b64decode(agg["descriptor"]))
    np.testing.assert_allclose(aggregated, descriptor_format.aggregate(vectors), atol=1e-6)
    assert (np.linalg.norm(vectors - aggregated, axis=1) < descriptor_format.DEFAULT_DISTANCE_THRESHOLD).all()
    assert agg["basic_attributes"]["gender_label"] == "male" and sum(agg["basic_attributes"]["gender_votes"].values()) == 4
    assert agg["basic_attributes"]["age"] == pytest.approx(np.mean([f["basic_attributes"]["age"] for f in faces]), abs=1e-6)
    stored = client.get(f"/attributes/{agg['attribute_id']}", headers=sdk_user.auth).json
    assert stored["descriptors"][0]["descriptor"] == agg["descriptor"] and len(stored["sample_ids"]) == 4


def _variants() -> dict[str, bytes]:
    """The portrait, cropped to a non-square frame, in the encodings clients send."""
    upright = Image.open(PORTRAIT).convert("RGB").crop((25, 0, 225, 250))

    def save(image: Image.Image, fmt: str, **params: object) -> bytes:
        out = io.BytesIO()
        image.save(out, fmt, **params)
        return out.getvalue()

    exif = Image.Exif()
    exif[0x0112] = 6  # viewer rotates 90 degrees clockwise: store the pixels turned the other way
    rgba = upright.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.pad(np.full((230, 180), 255, np.uint8), 10)))
    return {
        "upright.jpg": save(upright, "JPEG", quality=95),
        "exif.jpg": save(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95, exif=exif),
        "cmyk.jpg": save(upright.convert("CMYK"), "JPEG", quality=95),
        "grey.png": save(upright.convert("L"), "PNG"),
        "alpha.png": save(rgba, "PNG"),
    }


def test_image_modes_and_exif_rotation(client, sdk_user):
    variants = _variants()
    r = post(client, "/sdk", sdk_user, *variants.items())
    assert r.status_code == 200, r.json
    images = {i["filename"]: i for i in r.json["images"]}
    reference = box(largest(images["upright.jpg"]["faces"]))
    for name, image in images.items():
        assert (image["width"], image["height"]) == (200, 250), name
        assert iou(box(largest(image["faces"])), reference) > 0.8, name


def test_base64_json_body_and_raw_body_agree_with_multipart(client, sdk_user):
    data = PORTRAIT.read_bytes()
    r = client.post("/sdk", json={"images": [{"image": base64.b64encode(data).decode(), "filename": "p.jpg"}]},
                    headers=sdk_user.auth)
    raw = client.post("/sdk", data=data, content_type="image/jpeg", headers=sdk_user.auth)
    assert r.status_code == raw.status_code == 200, (r.json, raw.json)
    assert r.json["images"][0]["filename"] == "p.jpg" and raw.json["images"][0]["filename"] == "image"
    assert box(largest(r.json["images"][0]["faces"])) == box(largest(raw.json["images"][0]["faces"]))
    bad = client.post("/sdk", json={"images": [{"image": "not base64!", "filename": "x"}]}, headers=sdk_user.auth)
    assert bad.status_code == 400 and bad.json["error_code"] == 23011 and "'x'" in bad.json["detail"]


@pytest.fixture()
def photo_server():
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(LFW))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_urls_only_when_enabled(client, sdk_user, settings_override, photo_server):
    url = f"{photo_server}/Colin_Powell/Colin_Powell_0001.jpg"
    r = client.post("/sdk", json={"images": [{"url": url}]}, headers=sdk_user.auth)
    assert r.status_code == 403 and r.json["error_code"] == 30005
    settings_override(sdk_url_fetch=True)
    r = client.post("/sdk", json={"images": [{"url": url}]}, headers=sdk_user.auth)
    assert r.status_code == 200 and len(r.json["images"][0]["faces"]) >= 1
    for bad in (f"{photo_server}/missing.jpg", "file:///etc/passwd"):
        r = client.post("/sdk", json={"images": [{"url": bad, "filename": "remote"}]}, headers=sdk_user.auth)
        assert r.status_code == 400 and r.json["error_code"] == 30006 and "'remote'" in r.json["detail"], bad


def test_broken_images_are_named(client, sdk_user):
    good = PORTRAIT.read_bytes()
    for name, data in (("truncated.jpg", good[: len(good) // 3]), ("notes.txt", b"plain text, not an image")):
        r = post(client, "/sdk", sdk_user, ("fine.jpg", good), (name, data))
        assert r.status_code == 400, r.json
        assert r.json["error_code"] == 23011 and f"'{name}'" in r.json["detail"]


def test_pixel_limit(client, sdk_user, settings_override):
    settings_override(inference_max_image_pixels=250 * 250 - 1)
    r = post(client, "/sdk", sdk_user, PORTRAIT)
    assert r.status_code == 413 and r.json["error_code"] == 23012
    assert "Colin_Powell_0001.jpg" in r.json["detail"] and "250x250" in r.json["detail"]


def test_request_shape_errors(client, sdk_user, settings_override):
    r = client.post("/sdk", data={}, headers=sdk_user.auth, content_type="multipart/form-data")
    assert r.status_code == 400 and r.json["error_code"] == 30003
    r = post(client, "/sdk", sdk_user, PORTRAIT, estimate_head_pose=1, detect_face=0, detect_body=1)
    assert r.status_code == 400 and r.json["error_code"] == 10005 and "estimate_head_pose" in r.json["detail"]
    r = post(client, "/sdk", sdk_user, PORTRAIT, estimate_everything=1)
    assert r.status_code == 400 and r.json["error_code"] == 10004
    r = client.post("/sdk", data="x", content_type="text/plain", headers=sdk_user.auth)
    assert r.status_code == 415
    settings_override(sdk_max_images=1)
    r = post(client, "/sdk", sdk_user, PORTRAIT, PORTRAIT)
    assert r.status_code == 400 and r.json["error_code"] == 30004


def test_disabled_estimator_is_an_error_naming_it(client, sdk_user, settings_override):
    settings_override(enable_emotions=False)
    r = post(client, "/sdk", sdk_user, PORTRAIT, estimate_emotions=1)
    assert r.status_code == 403 and r.json["error_code"] == 30001
    assert "'emotions'" in r.json["detail"] and "estimate_emotions" in r.json["detail"]
    listed = client.get("/sdk/estimators", headers=sdk_user.auth)
    assert listed.status_code == 200
    state = {e["name"]: e for e in listed.json["estimators"]}
    assert not state["emotions"]["enabled"] and state["face_detector"]["enabled"]
    assert post(client, "/sdk", sdk_user, PORTRAIT, estimate_head_pose=1).status_code == 200


def test_needs_sdk_permission(client, sdk_user):
    token = sdk_user.token({"account": ["view"]})
    r = client.post("/sdk", data=files(PORTRAIT), headers=bearer(token), content_type="multipart/form-data")
    assert r.status_code == 403 and r.json["error_code"] == 11005


def _batcher(max_items: int, max_wait_s: float):
    from tasks.inference import Batcher

    return Batcher(lambda: (max_items, max_wait_s), "test-batcher")


def test_batcher_joins_concurrent_requests_up_to_its_cap():
    import time

    seen: list[list[int]] = []

    def double(items: list[int]) -> list[int]:
        seen.append(items)
        time.sleep(0.05)  # a forward pass: requests arriving meanwhile wait for the next batch
        return [2 * i for i in items]

    batcher = _batcher(4, 0.02)
    results: dict[int, list[int]] = {}
    threads = [threading.Thread(target=lambda n=n: results.__setitem__(n, batcher.run(double, [n, n + 100])))
               for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {n: [2 * n, 2 * n + 200] for n in range(8)}
    assert max(len(b) for b in seen) == 4 and len(seen) < 16  # 16 items in batches, none above the cap


def test_batcher_wait_is_capped_and_errors_reach_every_waiter():
    import time

    batcher = _batcher(32, 0.05)
    start = time.perf_counter()
    assert batcher.submit(lambda items: [i + 1 for i in items], 1).result(timeout=2) == 2
    assert time.perf_counter() - start < 1.0  # a lone item waits at most max_wait, not for a full batch

    def broken(items: list[int]) -> list[int]:
        raise RuntimeError(f"model failed on {len(items)} items")

    futures = [batcher.submit(broken, i) for i in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError, match="model failed"):
            future.result(timeout=5)


def test_samples_and_attributes_stay_in_their_account(client, sdk_user, account_factory):
    r = post(client, "/sdk", sdk_user, PORTRAIT, extract_descriptor=1)
    assert r.status_code == 200, r.json
    face = largest(r.json["images"][0]["faces"])
    other = account_factory()
    assert client.get(f"/samples/faces/{face['sample_id']}", headers=other.auth).status_code == 404
    assert client.get(f"/attributes/{face['attribute_id']}", headers=other.auth).status_code == 404
    assert client.get(f"/samples/faces/{face['sample_id']}", headers=sdk_user.auth).status_code == 200
