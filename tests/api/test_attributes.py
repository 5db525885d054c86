"""Temporary attributes in Redis: create, read, expire, isolate, idempotent ids."""
from __future__ import annotations

import base64
import struct
import time
import uuid

import numpy as np
import pytest

from app.scope import Scope
from inference import descriptor_format as fmt
from tests.api.faces_helpers import face_sample, raw, sdk, vector
from tests.conftest import bearer


def _create(client, account, **body):
    return client.post("/attributes", json=body, headers=account.auth)


def _stored(redis_client, attribute_id):
    """Whether Redis still holds the attribute's bytes (expired ones must be freed)."""
    return bool(redis_client.exists(f"facegate:attribute:{attribute_id}"))


def test_create_read_samples_delete(client, account):
    vec = vector()
    samples = [face_sample(client, account), face_sample(client, account)]
    r = _create(client, account, descriptors=[{"descriptor": sdk(vec)}], sample_ids=samples,
                basic_attributes={"age": 31.5, "gender": 1, "ethnicity": "asian"}, ttl=60)
    assert r.status_code == 201, r.json
    attribute_id = r.json["attribute_id"]

    r = client.get(f"/attributes/{attribute_id}", headers=account.auth)
    assert r.status_code == 200
    assert r.json["account_id"] == account.account_id
    assert r.json["basic_attributes"] == {"age": 31.5, "gender": 1.0, "ethnicity": "asian"}
    assert r.json["sample_ids"] == samples
    [d] = r.json["descriptors"]
    assert d["version"] == fmt.DESCRIPTOR_VERSION and d["descriptor"] == sdk(vec)
    assert client.head(f"/attributes/{attribute_id}", headers=account.auth).status_code == 200
    assert client.get(f"/attributes/{attribute_id}/samples", headers=account.auth).json == {"samples": samples}

    assert client.delete(f"/attributes/{attribute_id}", headers=account.auth).status_code == 204
    r = client.get(f"/attributes/{attribute_id}", headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20003
    assert client.head(f"/attributes/{attribute_id}", headers=account.auth).status_code == 404
    assert client.delete(f"/attributes/{attribute_id}", headers=account.auth).status_code == 404


def test_raw_and_sdk_round_trip_bytes_identical(client, account):
    vec = vector()
    r = _create(client, account, descriptors=[{"format": "raw", "descriptor": raw(vec)}])
    assert r.status_code == 201, r.json
    got = client.get(f"/attributes/{r.json['attribute_id']}", headers=account.auth).json["descriptors"][0]
    sdk_bytes = base64.b64decode(got["descriptor"])
    assert sdk_bytes == fmt.pack(vec, fmt.DESCRIPTOR_VERSION)
    assert sdk_bytes[8:] == base64.b64decode(raw(vec))  # payload after signature + version is the raw form

    # SDK in, SDK out, then that SDK back in: still the same bytes.
    r = _create(client, account, descriptors=[{"descriptor": got["descriptor"]}])
    again = client.get(f"/attributes/{r.json['attribute_id']}", headers=account.auth).json["descriptors"][0]
    assert again["descriptor"] == got["descriptor"]


def test_ttl_expiry_frees_storage(client, account, redis_client):
    r = _create(client, account, basic_attributes={"age": 20}, ttl=1)
    attribute_id = r.json["attribute_id"]
    assert client.get(f"/attributes/{attribute_id}", headers=account.auth).status_code == 200
    time.sleep(1.3)
    assert client.get(f"/attributes/{attribute_id}", headers=account.auth).status_code == 404
    assert client.head(f"/attributes/{attribute_id}", headers=account.auth).status_code == 404
    assert not _stored(redis_client, attribute_id)


def test_ttl_default_and_bounds(client, account, settings_override):
    settings_override(attribute_ttl_default_s=120, attribute_ttl_max_s=600)
    r = _create(client, account, basic_attributes={"age": 40})
    created = client.get(f"/attributes/{r.json['attribute_id']}", headers=account.auth).json
    from datetime import datetime

    lived = datetime.fromisoformat(created["expire_time"]) - datetime.fromisoformat(created["create_time"])
    assert lived.total_seconds() == 120
    for ttl in (0, 601):
        r = _create(client, account, basic_attributes={"age": 40}, ttl=ttl)
        assert r.status_code == 400 and "ttl" in r.json["detail"], ttl


def _bad_payloads() -> dict[str, dict]:
    vec = vector()
    good = fmt.pack(vec, fmt.DESCRIPTOR_VERSION)
    unknown_version = good[:4] + struct.pack("<I", 9999) + good[8:]
    nan = vec.copy()
    nan[3] = np.nan
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return {
        "not base64": {"descriptor": "***not base64***"},
        "unknown version": {"descriptor": b64(unknown_version)},
        "truncated sdk": {"descriptor": b64(good[:-4])},
        "bad signature": {"descriptor": b64(b"XXXX" + good[4:])},
        "nan": {"descriptor": b64(good[:8] + nan.astype("<f4").tobytes())},
        "raw wrong length": {"format": "raw", "descriptor": b64(vec.tobytes()[:-8])},
        "raw nan": {"format": "raw", "descriptor": b64(nan.tobytes())},
        "version mismatch": {"descriptor": b64(good), "version": fmt.DESCRIPTOR_VERSION + 1},
    }


@pytest.mark.parametrize("case", sorted(_bad_payloads()))
def test_bad_descriptors_are_clear_400s(client, account, case):
    r = _create(client, account, descriptors=[_bad_payloads()[case]])
    assert r.status_code == 400, r.json
    assert r.json["error_code"] == 20004 and r.json["detail"]


def test_bad_requests(client, account):
    assert _create(client, account).status_code == 400  # neither descriptors nor basic attributes
    r = _create(client, account, basic_attributes={"age": 400})
    assert r.status_code == 400 and "age" in r.json["detail"]
    r = _create(client, account, basic_attributes={"age": 3}, colour="red")
    assert r.status_code == 400 and "colour" in r.json["detail"]
    r = _create(client, account, descriptors=[{"descriptor": sdk()}, {"descriptor": sdk()}])
    assert r.status_code == 400 and r.json["error_code"] == 20004  # two of one version
    assert client.get("/attributes/not-a-uuid", headers=account.auth).status_code == 400


def test_other_accounts_see_nothing(client, account_factory):
    a, b = account_factory(), account_factory()
    attribute_id = _create(client, a, basic_attributes={"age": 5}, sample_ids=[face_sample(client, a)]).json["attribute_id"]
    for path in (f"/attributes/{attribute_id}", f"/attributes/{attribute_id}/samples"):
        assert client.get(path, headers=b.auth).status_code == 404
    assert client.head(f"/attributes/{attribute_id}", headers=b.auth).status_code == 404
    assert client.delete(f"/attributes/{attribute_id}", headers=b.auth).status_code == 404
    assert client.get(f"/attributes/{attribute_id}", headers=a.auth).status_code == 200  # B's delete did nothing

    advanced = account_factory("advanced_user")
    assert client.get(f"/attributes/{attribute_id}", headers=advanced.auth).status_code == 200
    assert client.delete(f"/attributes/{attribute_id}", headers=advanced.auth).status_code == 404


def test_token_permissions(client, account):
    viewer = account.token({"attribute": ["view"]})
    r = client.post("/attributes", json={"basic_attributes": {"age": 1}}, headers=bearer(viewer))
    assert r.status_code == 403 and r.json["error_code"] == 11005


def test_service_api_for_extraction_results(client, account):
    """What an extraction task calls: descriptors as float32 vectors, no HTTP involved."""
    from app.attributes import service as attributes

    vec = vector()
    record = attributes.create_attribute(Scope.of(account.account_id), descriptors={fmt.DESCRIPTOR_VERSION: vec},
                                         basic_attributes={"age": 22.0}, ttl=30)
    got = client.get(f"/attributes/{record.attribute_id}", headers=account.auth).json
    assert got["descriptors"][0]["descriptor"] == sdk(vec)
    with pytest.raises(Exception) as err:
        attributes.create_attribute(Scope.of(account.account_id), descriptors={fmt.DESCRIPTOR_VERSION: vec[:10]})
    assert getattr(err.value, "error").code == 20004


def test_unreachable_redis_is_503(client, account, settings_override):
    settings_override(redis_url="redis://127.0.0.1:1/0")
    r = _create(client, account, basic_attributes={"age": 3})
    assert r.status_code == 503 and r.json["error_code"] == 20007


def test_samples_must_be_the_callers_own(client, account_factory):
    """Naming another account's sample (or one that never existed) would attach its image to ours."""
    a, b = account_factory(), account_factory()
    theirs = face_sample(client, a)
    for sample_ids in ([theirs], [face_sample(client, b), theirs], [str(uuid.uuid4())]):
        r = _create(client, b, basic_attributes={"age": 5}, sample_ids=sample_ids)
        assert r.status_code == 404 and r.json["error_code"] == 23002, r.json
        assert sample_ids[-1] in r.json["detail"]
    assert _create(client, a, basic_attributes={"age": 5}, sample_ids=[theirs]).status_code == 201
