"""Verifiers: CRUD, isolation, permissions, and verifications (pairs, pass/fail) against numpy."""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from inference import descriptor_format as fmt
from tests.api.faces_helpers import new_face, raw, sdk, vector
from tests.api.sdk_fixtures import sdk_user  # noqa: F401 - a fixture
from tests.conftest import bearer

pytestmark = pytest.mark.usefixtures("celery_worker")


def _verifier(client, account, **body) -> str:
    r = client.post("/verifiers", json=body, headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["verifier_id"]


def test_crud_and_isolation(client, account_factory):
    a, b, adv = account_factory(), account_factory(), account_factory("advanced_user")
    vid = _verifier(client, a, description="door 1", threshold=0.7)
    got = client.get(f"/verifiers/{vid}", headers=a.auth).json
    assert (got["description"], got["threshold"], got["version"]) == ("door 1", 0.7, fmt.DESCRIPTOR_VERSION)
    default = client.get(f"/verifiers/{_verifier(client, a)}", headers=a.auth).json
    assert default["threshold"] == fmt.DEFAULT_SIMILARITY_THRESHOLD
    r = client.patch(f"/verifiers/{vid}", json={"threshold": 0.9}, headers=a.auth)
    assert r.status_code == 200 and r.json["threshold"] == 0.9 and r.json["last_update_time"] >= got["last_update_time"]
    assert client.patch(f"/verifiers/{vid}", json={"threshold": 1.5}, headers=a.auth).status_code == 400
    assert client.patch(f"/verifiers/{vid}", json={"version": 7}, headers=a.auth).status_code == 400
    assert client.post("/verifiers", json={"version": 7}, headers=a.auth).status_code == 400
    listed = client.get("/verifiers", query_string={"description": "door"}, headers=a.auth).json["verifiers"]
    assert [v["verifier_id"] for v in listed] == [vid]
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"description": "x"}} if method == "patch" else {}
        r = getattr(client, method)(f"/verifiers/{vid}", headers=b.auth, **kwargs)
        assert r.status_code == 404 and r.json["error_code"] == 40004, method
    assert client.get("/verifiers", headers=b.auth).json["verifiers"] == []
    assert client.get(f"/verifiers/{vid}", headers=adv.auth).status_code == 200
    assert client.delete(f"/verifiers/{vid}", headers=adv.auth).status_code == 404
    token = bearer(a.token({"verifier": ["view"]}))
    assert client.get(f"/verifiers/{vid}", headers=token).status_code == 200
    assert client.delete(f"/verifiers/{vid}", headers=token).status_code == 403
    assert client.delete(f"/verifiers/{vid}", headers=a.auth).status_code == 204
    assert client.get(f"/verifiers/{vid}", headers=a.auth).status_code == 404


@pytest.mark.parametrize("inline", [False, True])
def test_verifications_match_numpy(client, account, settings_override, inline):
    settings_override(matcher_inline_max=10**6 if inline else 0)
    base = vector()
    same, other = base + 0.03 * vector(), vector()
    face = new_face(client, account, descriptors=[{"descriptor": sdk(base)}])
    r = client.post("/attributes", json={"descriptors": [{"descriptor": sdk(same)}]}, headers=account.auth)
    attribute = r.json["attribute_id"]
    vid = _verifier(client, account, threshold=0.5)
    body = {"references": [{"type": "face", "id": face}, {"type": "descriptor", "descriptor": raw(other),
                                                           "format": "raw", "id": "probe"}],
            "candidates": [{"type": "attribute", "id": attribute}, {"type": "descriptor", "descriptor": sdk(other)}]}
    r = client.post(f"/verifiers/{vid}/verifications", json=body, headers=account.auth)
    assert r.status_code == 200, r.json
    pairs = r.json["verifications"]
    vectors = {("face", face): base, ("descriptor", "probe"): other, ("attribute", attribute): same,
               ("descriptor", "1"): other}
    assert [(p["reference"]["id"], p["candidate"]["id"]) for p in pairs] == [
        (face, attribute), (face, "1"), ("probe", attribute), ("probe", "1")]
    for p in pairs:
        a = vectors[(p["reference"]["type"], p["reference"]["id"])].astype(np.float64)
        b = vectors[(p["candidate"]["type"], p["candidate"]["id"])].astype(np.float64)
        want = float(fmt.similarity(np.linalg.norm(a - b), fmt.DESCRIPTOR_VERSION))
        assert p["similarity"] == pytest.approx(want, abs=1e-9)
        assert p["status"] == ("pass" if want >= 0.5 else "fail")
    assert [p["status"] for p in pairs] == ["pass", "fail", "fail", "pass"]
    assert pairs[3]["similarity"] == 1.0  # exactly: identical descriptors
    # The face-attribute pair (distance about 0.03) scores just under 1: a threshold between the two
    # passes only the identical pair.
    near = float(fmt.similarity(np.linalg.norm(base.astype(np.float64) - same.astype(np.float64))))
    assert near < 1.0
    client.patch(f"/verifiers/{vid}", json={"threshold": (near + 1.0) / 2}, headers=account.auth)
    r = client.post(f"/verifiers/{vid}/verifications", json=body, headers=account.auth)
    assert [p["status"] for p in r.json["verifications"]] == ["fail", "fail", "fail", "pass"]


def test_each_version_scores_with_its_own_threshold(client, account):
    """Two descriptors at a distance between the versions' thresholds: the same pair of vectors
    passes at similarity 0.5 as version with the larger threshold and fails as the other."""
    low, high = sorted(fmt.DEFAULT_DISTANCE_THRESHOLDS, key=fmt.DEFAULT_DISTANCE_THRESHOLDS.get)
    distance = (fmt.DEFAULT_DISTANCE_THRESHOLDS[low] + fmt.DEFAULT_DISTANCE_THRESHOLDS[high]) / 2
    a, b = vector(), vector()
    b = (a + (b - a) * np.float32(distance / np.linalg.norm(b - a))).astype("<f4")
    d = float(np.linalg.norm(a.astype(np.float64) - b.astype(np.float64)))
    assert fmt.DEFAULT_DISTANCE_THRESHOLDS[low] < d < fmt.DEFAULT_DISTANCE_THRESHOLDS[high]
    for version, status in ((low, "fail"), (high, "pass")):
        vid = _verifier(client, account, version=version)
        body = {"references": [{"type": "descriptor", "descriptor": sdk(a, version)}],
                "candidates": [{"type": "descriptor", "descriptor": sdk(b, version)}]}
        r = client.post(f"/verifiers/{vid}/verifications", json=body, headers=account.auth)
        assert r.status_code == 200, r.json
        (pair,) = r.json["verifications"]
        assert pair["similarity"] == pytest.approx(fmt.similarity(d, version), abs=1e-12)
        assert pair["status"] == status, (version, pair)


def test_verification_errors_and_permissions(client, account_factory):
    a, b = account_factory(), account_factory()
    face_b = new_face(client, b, descriptors=[{"descriptor": sdk()}])
    vid = _verifier(client, a)
    ref = [{"type": "descriptor", "descriptor": sdk()}]
    r = client.post(f"/verifiers/{vid}/verifications", json={"references": ref,
                                                             "candidates": [{"type": "face", "id": face_b}]},
                    headers=a.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20001
    r = client.post(f"/verifiers/{vid}/verifications", json={"references": ref, "candidates": ref}, headers=b.auth)
    assert r.status_code == 404 and r.json["error_code"] == 40004
    infinite = base64.b64encode(np.full(128, np.inf, "<f4").tobytes()).decode()
    bad = [{"type": "descriptor", "descriptor": infinite, "format": "raw"}]
    r = client.post(f"/verifiers/{vid}/verifications", json={"references": ref, "candidates": bad}, headers=a.auth)
    assert r.status_code == 400 and r.json["error_code"] == 20004
    own_face = new_face(client, a, descriptors=[{"descriptor": sdk()}])
    body = {"references": ref, "candidates": [{"type": "face", "id": own_face}]}
    token = bearer(a.token({"verifier": ["view"]}))
    r = client.post(f"/verifiers/{vid}/verifications", json=body, headers=token)
    assert r.status_code == 403 and "face: matching" in r.json["detail"]
    token = bearer(a.token({"verifier": ["view"], "face": ["matching"]}))
    assert client.post(f"/verifiers/{vid}/verifications", json=body, headers=token).status_code == 200
    r = client.post(f"/verifiers/{vid}/verifications", json={"references": ref, "candidates": []}, headers=a.auth)
    assert r.status_code == 400


def test_images_are_detected_extracted_and_verified_in_one_chain(client, sdk_user):
    """deepface's verify(img1, img2) and CompreFace's verification: two photos, one answer."""
    from tests.api.sdk_fixtures import FACES, files

    lfw = FACES / "lfw"
    sharon = sorted((lfw / "Ariel_Sharon").iterdir())
    powell = sorted((lfw / "Colin_Powell").iterdir())
    verifier = client.post("/verifiers", json={}, headers=sdk_user.auth).json["verifier_id"]

    def verify(*images, **fields):
        form = files(*images)
        form.update({name: json.dumps(value) for name, value in fields.items()})
        return client.post(f"/verifiers/{verifier}/images", data=form, headers=sdk_user.auth,
                           content_type="multipart/form-data")

    r = verify(sharon[0], sharon[1], powell[0])
    assert r.status_code == 200, r.json
    got = {(v["reference"]["id"], v["candidate"]["id"]): v for v in r.json["verifications"]}
    assert set(got) == {(sharon[0].name, sharon[1].name), (sharon[0].name, powell[0].name),
                        (sharon[1].name, powell[0].name)}
    assert got[(sharon[0].name, sharon[1].name)]["status"] == "pass"
    assert got[(sharon[0].name, powell[0].name)]["status"] == "fail"
    assert got[(sharon[0].name, sharon[1].name)]["reference"]["type"] == "image"

    # against stored candidates: a face made from the first photo's descriptor via /sdk
    answer = client.post("/sdk", data=files(sharon[2]), query_string={"extract_descriptor": 1},
                         headers=sdk_user.auth, content_type="multipart/form-data").json
    attribute_id = answer["images"][0]["faces"][0]["attribute_id"]
    r = verify(sharon[3], candidates=[{"type": "attribute", "id": attribute_id}])
    assert r.status_code == 200, r.json
    (only,) = r.json["verifications"]
    assert only["candidate"] == {"type": "attribute", "id": attribute_id} and only["status"] == "pass"

    noface = sorted((FACES / "noface").iterdir())[0]
    r = verify(sharon[0], noface)
    assert r.status_code == 400 and r.json["error_code"] == 30008 and noface.name in r.json["detail"]
    r = verify(sharon[0])
    assert r.status_code == 400 and "two images" in r.json["detail"]
