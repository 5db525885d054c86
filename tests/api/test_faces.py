"""Faces: creation from every source, filters, pagination, batches, descriptors, limit, isolation."""
from __future__ import annotations

import base64
import logging
import math
import uuid
from datetime import datetime, timedelta, timezone

from inference import descriptor_format as fmt
from tests.api.faces_helpers import face_sample, face_with_descriptor, new_face, new_list, raw, sdk, vector
from tests.conftest import bearer


def _count(client, account, **query):
    r = client.get("/faces/count", query_string=query, headers=account.auth)
    assert r.status_code == 200, r.json
    return r.json["faces_count"]


def _ids(client, account, **query):
    r = client.get("/faces", query_string=query, headers=account.auth)
    assert r.status_code == 200, r.json
    return [f["face_id"] for f in r.json["faces"]]


def test_empty_face_fields(client, account):
    event_id = str(uuid.uuid4())
    face_id = new_face(client, account, external_id="ext-1", user_data="Ann", event_id=event_id, avatar="/a.jpg")
    r = client.get(f"/faces/{face_id}", headers=account.auth)
    assert r.status_code == 200
    face = r.json
    assert face["face_id"] == face_id and face["account_id"] == account.account_id
    assert (face["external_id"], face["user_data"], face["event_id"], face["avatar"]) == ("ext-1", "Ann", event_id, "/a.jpg")
    assert face["lists"] == [] and face["descriptor_versions"] == [] and face["basic_attributes"] is None
    assert abs(datetime.fromisoformat(face["create_time"]) - datetime.now(timezone.utc)) < timedelta(minutes=1)


def test_descriptor_round_trip_sdk_and_raw(client, account):
    vec = vector()
    for given in ({"descriptor": sdk(vec)}, {"format": "raw", "descriptor": raw(vec)}):
        face_id = new_face(client, account, descriptors=[given])
        r = client.get(f"/faces/{face_id}/descriptors", headers=account.auth)
        assert r.status_code == 200
        [d] = r.json["descriptors"]
        assert d["version"] == fmt.DESCRIPTOR_VERSION
        assert base64.b64decode(d["descriptor"]) == fmt.pack(vec, fmt.DESCRIPTOR_VERSION)
        version, back = fmt.unpack(base64.b64decode(d["descriptor"]))
        assert back.astype("<f4").tobytes() == vec.astype("<f4").tobytes()
        r = client.get(f"/faces/{face_id}/descriptors", query_string={"version": fmt.DESCRIPTOR_VERSION + 1},
                       headers=account.auth)
        assert r.status_code == 404 and r.json["error_code"] == 20006


def test_face_from_attribute(client, account):
    vec, sample = vector(), face_sample(client, account)
    attribute_id = client.post("/attributes", json={"descriptors": [{"descriptor": sdk(vec)}], "sample_ids": [sample],
                                                    "basic_attributes": {"age": 50}}, headers=account.auth).json["attribute_id"]
    face_id = new_face(client, account, attribute_id=attribute_id, user_data="from attr")
    face = client.get(f"/faces/{face_id}", headers=account.auth).json
    assert face["basic_attributes"] == {"age": 50.0} and face["sample_ids"] == [sample]
    assert face["descriptor_versions"] == [fmt.DESCRIPTOR_VERSION]
    got = client.get(f"/faces/{face_id}/descriptors", headers=account.auth).json["descriptors"][0]["descriptor"]
    assert got == sdk(vec)

    r = client.post("/faces", json={"attribute_id": attribute_id, "descriptors": [{"descriptor": sdk()}]},
                    headers=account.auth)
    assert r.status_code == 400 and "attribute_id" in r.json["detail"]
    r = client.post("/faces", json={"attribute_id": str(uuid.uuid4())}, headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20003


def test_filters_and_pagination(client, account_factory):
    a = account_factory()
    lst = new_list(client, a)
    ids = [new_face(client, a, external_id=f"e{i}", user_data=f"user {i} 100%", list_ids=[lst] if i % 2 else [])
           for i in range(6)]
    assert _ids(client, a) == ids  # creation order
    assert _ids(client, a, page=2, page_size=4) == ids[4:]
    assert _ids(client, a, face_ids=",".join(ids[:2])) == ids[:2]
    assert _ids(client, a, external_ids="e3,e5,nope") == [ids[3], ids[5]]
    assert _ids(client, a, user_data="user 4") == [ids[4]]
    assert _ids(client, a, user_data="0%") == ids  # % is matched literally, not as a wildcard
    assert _ids(client, a, user_data="_") == []
    assert _ids(client, a, list_id=lst) == ids[1::2]
    assert _ids(client, a, face_id__gte=ids[2], face_id__lt=ids[4]) == ids[2:4]
    created = [datetime.fromisoformat(client.get(f"/faces/{i}", headers=a.auth).json["create_time"]) for i in ids]
    assert _ids(client, a, create_time__gte=created[3].isoformat()) == [i for i, t in zip(ids, created) if t >= created[3]]
    assert _ids(client, a, create_time__lt=created[0].isoformat()) == []
    assert _count(client, a) == 6
    assert _count(client, a, list_id=lst) == 3
    assert _count(client, a, external_ids="e1,e2", list_id=lst) == 1


def test_bad_queries(client, account):
    for query in ({"colour": "red"}, {"face_ids": "nope"}, {"page_size": 100000}, {"page": 0},
                  {"create_time__gte": "yesterday"}, {"create_time__gte": "2026-01-01T00:00:00"}):
        r = client.get("/faces", query_string=query, headers=account.auth)
        assert r.status_code == 400, query
    assert client.get("/faces/count", query_string={"page": 1}, headers=account.auth).status_code == 400
    r = client.post("/faces", json={"user_data": "x" * 129}, headers=account.auth)
    assert r.status_code == 400 and "user_data" in r.json["detail"]
    r = client.post("/faces", json={"descriptors": [{"descriptor": "AAAA"}]}, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 20004


def test_patch(client, account):
    face_id = new_face(client, account, external_id="old", user_data="old")
    r = client.patch(f"/faces/{face_id}", json={"user_data": "new", "external_id": None, "avatar": "/b.jpg"},
                     headers=account.auth)
    assert r.status_code == 200
    assert (r.json["user_data"], r.json["external_id"], r.json["avatar"]) == ("new", None, "/b.jpg")
    assert client.get(f"/faces/{face_id}", headers=account.auth).json["user_data"] == "new"

    vec = vector()
    r = client.patch(f"/faces/{face_id}", json={"descriptors": [{"descriptor": sdk(vec)}]}, headers=account.auth)
    assert r.status_code == 200 and r.json["descriptor_versions"] == [fmt.DESCRIPTOR_VERSION]
    newer = vector()
    client.patch(f"/faces/{face_id}", json={"descriptors": [{"descriptor": sdk(newer)}]}, headers=account.auth)
    got = client.get(f"/faces/{face_id}/descriptors", headers=account.auth).json["descriptors"]
    assert [d["descriptor"] for d in got] == [sdk(newer)]  # replaced, not duplicated
    r = client.patch(f"/faces/{face_id}", json={"face_id": str(uuid.uuid4())}, headers=account.auth)
    assert r.status_code == 400


def test_several_model_versions_per_face(client, account):
    """Re-extraction with another model adds a descriptor beside the old one (stored per version)."""
    from app.db import session_scope
    from app.faces.models import FaceDescriptor

    face_id = face_with_descriptor(client, account)
    other = fmt.DESCRIPTOR_VERSION + 1000  # a version this build cannot parse, stored as a re-extraction would
    with session_scope() as session:
        session.add(FaceDescriptor(face_id=uuid.UUID(face_id), version=other, descriptor=b"\0" * 16))
    assert client.get(f"/faces/{face_id}", headers=account.auth).json["descriptor_versions"] == [fmt.DESCRIPTOR_VERSION, other]
    r = client.delete(f"/faces/{face_id}/descriptors", query_string={"version": other}, headers=account.auth)
    assert r.status_code == 204
    assert client.get(f"/faces/{face_id}", headers=account.auth).json["descriptor_versions"] == [fmt.DESCRIPTOR_VERSION]
    assert client.delete(f"/faces/{face_id}/descriptors", headers=account.auth).status_code == 204
    assert client.get(f"/faces/{face_id}", headers=account.auth).json["descriptor_versions"] == []
    r = client.delete(f"/faces/{face_id}/descriptors", headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20006


def test_delete_single_and_batch(client, account_factory):
    a, b = account_factory(), account_factory()
    mine = [face_with_descriptor(client, a) for _ in range(3)]
    theirs = new_face(client, b)
    assert client.delete(f"/faces/{mine[0]}", headers=a.auth).status_code == 204
    assert client.get(f"/faces/{mine[0]}", headers=a.auth).status_code == 404
    assert client.delete(f"/faces/{mine[0]}", headers=a.auth).status_code == 404

    r = client.delete("/faces", json={"face_ids": [mine[1], theirs]}, headers=a.auth)
    assert r.status_code == 404 and theirs in r.json["detail"]
    assert _count(client, a) == 2 and _count(client, b) == 1  # all or nothing
    assert client.delete("/faces", json={"face_ids": mine[1:]}, headers=a.auth).status_code == 204
    assert _count(client, a) == 0
    assert client.delete("/faces", json={"face_ids": []}, headers=a.auth).status_code == 400


def test_batch_create(client, account, settings_override):
    settings_override(faces_batch_max=5)
    lst = new_list(client, account)
    body = {"faces": [{"descriptors": [{"descriptor": sdk()}], "external_id": f"b{i}", "list_ids": [lst]}
                      for i in range(5)]}
    r = client.post("/faces/batch", json=body, headers=account.auth)
    assert r.status_code == 201, r.json
    created = [f["face_id"] for f in r.json["faces"]]
    assert [f["external_id"] for f in r.json["faces"]] == [f"b{i}" for i in range(5)]
    assert _ids(client, account, list_id=lst) == created

    r = client.post("/faces/batch", json={"faces": body["faces"] * 2}, headers=account.auth)
    assert r.status_code == 400 and "faces_batch_max" in r.json["detail"]
    bad = body["faces"][:3] + [{"descriptors": [{"descriptor": "broken"}]}]
    r = client.post("/faces/batch", json={"faces": bad}, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 20004
    assert _count(client, account) == 5  # nothing of the failed batches was stored


def _fill(client, account, n):
    body = {"faces": [{"descriptors": [{"descriptor": sdk()}]} for _ in range(n)]}
    r = client.post("/faces/batch", json=body, headers=account.auth)
    return r


def test_face_limit(client, account, settings_override, caplog):
    from app.db import session_scope
    from app.faces.service import faces_with_descriptors

    with session_scope() as session:
        existing = faces_with_descriptors(session)  # the limit counts the whole installation
    limit = 2 * existing + 10
    settings_override(face_limit=limit)
    warned = lambda: [r for r in caplog.records if "face limit" in r.getMessage()]  # noqa: E731
    with caplog.at_level(logging.WARNING, logger="app.faces.service"):
        face_with_descriptor(client, account)
        assert not warned()
        assert _fill(client, account, math.ceil(0.85 * limit) - existing - 1).status_code == 201
        assert warned()
    r = _fill(client, account, limit - math.ceil(0.85 * limit) + 1)  # one too many: refused as a whole
    assert r.status_code == 403 and r.json["error_code"] == 20005 and "face_limit" in r.json["detail"]
    assert _fill(client, account, limit - math.ceil(0.85 * limit)).status_code == 201  # exactly at the limit
    r = client.post("/faces", json={"descriptors": [{"descriptor": sdk()}]}, headers=account.auth)
    assert r.status_code == 403 and r.json["error_code"] == 20005
    empty = new_face(client, account)  # faces without descriptors do not count
    r = client.patch(f"/faces/{empty}", json={"descriptors": [{"descriptor": sdk()}]}, headers=account.auth)
    assert r.status_code == 403 and r.json["error_code"] == 20005
    settings_override(face_limit=0)
    face_with_descriptor(client, account)


def test_isolation(client, account_factory):
    a, b = account_factory(), account_factory()
    face_id = face_with_descriptor(client, a, user_data="secret", external_id="shared-ext")
    new_face(client, b, external_id="shared-ext")
    for method, path in (("get", f"/faces/{face_id}"), ("patch", f"/faces/{face_id}"), ("delete", f"/faces/{face_id}"),
                         ("get", f"/faces/{face_id}/descriptors"), ("delete", f"/faces/{face_id}/descriptors")):
        kwargs = {"json": {"user_data": "mine"}} if method == "patch" else {}
        r = getattr(client, method)(path, headers=b.auth, **kwargs)
        assert r.status_code == 404 and r.json["error_code"] == 20001, (method, path)
    assert _ids(client, b, face_ids=face_id) == []
    assert _ids(client, b, user_data="secret") == []
    assert _count(client, b, external_ids="shared-ext") == 1
    r = client.get("/faces", query_string={"account_id": a.account_id}, headers=b.auth)
    assert r.status_code == 403
    assert client.get(f"/faces/{face_id}", headers=a.auth).json["user_data"] == "secret"

    advanced = account_factory("advanced_user")
    assert client.get(f"/faces/{face_id}", headers=advanced.auth).status_code == 200
    assert _ids(client, advanced, account_id=a.account_id) == [face_id]
    assert client.delete(f"/faces/{face_id}", headers=advanced.auth).status_code == 404
    scoped = advanced.token({"face": ["view"]})  # visibility_area defaults to the own account
    assert client.get(f"/faces/{face_id}", headers=bearer(scoped)).status_code == 404


def test_token_permissions(client, account):
    face_id = new_face(client, account)
    viewer = bearer(account.token({"face": ["view"]}))
    assert client.get(f"/faces/{face_id}", headers=viewer).status_code == 200
    assert client.post("/faces", json={}, headers=viewer).status_code == 403
    assert client.delete(f"/faces/{face_id}", headers=viewer).status_code == 403
    assert client.patch(f"/faces/{face_id}", json={"user_data": "x"}, headers=viewer).status_code == 403


def test_faces_name_only_their_accounts_samples(client, account_factory):
    a, b = account_factory(), account_factory()
    theirs, mine = face_sample(client, a), face_sample(client, b)
    r = client.post("/faces", json={"sample_ids": [mine, theirs]}, headers=b.auth)
    assert r.status_code == 404 and r.json["error_code"] == 23002 and theirs in r.json["detail"]
    assert client.get("/faces", headers=b.auth).json["faces"] == []  # nothing half-written
    assert client.get(f"/faces/{new_face(client, b, sample_ids=[mine])}", headers=b.auth).json["sample_ids"] == [mine]
