"""Lists: CRUD, filters, attach/detach (idempotent, all or nothing), isolation."""
from __future__ import annotations

import uuid

from tests.api.faces_helpers import face_with_descriptor, new_face, new_list
from tests.conftest import bearer


def _attach(client, account, list_id, face_ids, action="attach"):
    return client.patch(f"/lists/{list_id}/faces", json={"action": action, "face_ids": face_ids}, headers=account.auth)


def _members(client, account, list_id):
    r = client.get("/faces", query_string={"list_id": list_id, "page_size": 1000}, headers=account.auth)
    assert r.status_code == 200
    return sorted(f["face_id"] for f in r.json["faces"])


def test_crud(client, account):
    list_id = new_list(client, account, "staff")
    r = client.get(f"/lists/{list_id}", headers=account.auth)
    assert r.status_code == 200
    assert (r.json["user_data"], r.json["account_id"], r.json["faces_count"]) == ("staff", account.account_id, 0)
    before = r.json["last_update_time"]
    r = client.patch(f"/lists/{list_id}", json={"user_data": "visitors"}, headers=account.auth)
    assert r.status_code == 200 and r.json["user_data"] == "visitors" and r.json["last_update_time"] > before
    assert client.delete(f"/lists/{list_id}", headers=account.auth).status_code == 204
    r = client.get(f"/lists/{list_id}", headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20002
    assert client.delete(f"/lists/{list_id}", headers=account.auth).status_code == 404


def test_list_filters_and_count(client, account):
    ids = [new_list(client, account, f"group {i}") for i in range(4)]
    r = client.get("/lists", headers=account.auth)
    assert [x["list_id"] for x in r.json["lists"]] == ids and r.json["page"] == 1
    r = client.get("/lists", query_string={"user_data": "group 2"}, headers=account.auth)
    assert [x["list_id"] for x in r.json["lists"]] == [ids[2]]
    r = client.get("/lists", query_string={"list_ids": f"{ids[0]},{ids[3]}"}, headers=account.auth)
    assert [x["list_id"] for x in r.json["lists"]] == [ids[0], ids[3]]
    r = client.get("/lists", query_string={"page": 2, "page_size": 3}, headers=account.auth)
    assert [x["list_id"] for x in r.json["lists"]] == [ids[3]]
    assert client.get("/lists/count", headers=account.auth).json == {"lists_count": 4}
    assert client.get("/lists/count", query_string={"user_data": "group"}, headers=account.auth).json["lists_count"] == 4
    assert client.get("/lists", query_string={"user": "x"}, headers=account.auth).status_code == 400
    assert client.post("/lists", json={"user_data": "x" * 129}, headers=account.auth).status_code == 400
    assert client.patch(f"/lists/{ids[0]}", json={}, headers=account.auth).status_code == 400


def test_attach_detach_idempotent(client, account):
    list_id = new_list(client, account)
    faces = [face_with_descriptor(client, account) for _ in range(3)]
    r = _attach(client, account, list_id, faces[:2])
    assert r.status_code == 200 and r.json == {"list_id": list_id, "action": "attach", "changed": 2}
    assert _attach(client, account, list_id, faces[:2]).json["changed"] == 0  # twice: no-op
    assert _attach(client, account, list_id, faces + faces[:1]).json["changed"] == 1  # repeats in one call too
    assert _members(client, account, list_id) == sorted(faces)
    assert client.get(f"/lists/{list_id}", headers=account.auth).json["faces_count"] == 3
    assert client.get(f"/faces/{faces[0]}", headers=account.auth).json["lists"] == [list_id]

    assert _attach(client, account, list_id, faces[:1], "detach").json["changed"] == 1
    assert _attach(client, account, list_id, faces[:1], "detach").json["changed"] == 0  # not a member: fine
    assert _members(client, account, list_id) == sorted(faces[1:])
    assert client.get(f"/faces/{faces[0]}", headers=account.auth).json["lists"] == []


def test_attach_is_all_or_nothing(client, account_factory):
    a, b = account_factory(), account_factory()
    list_id = new_list(client, a)
    mine, theirs = new_face(client, a), new_face(client, b)
    r = _attach(client, a, list_id, [mine, theirs])
    assert r.status_code == 404 and r.json["error_code"] == 20001 and theirs in r.json["detail"]
    r = _attach(client, a, list_id, [mine, str(uuid.uuid4())])
    assert r.status_code == 404
    assert _members(client, a, list_id) == []
    _attach(client, a, list_id, [mine])
    assert _attach(client, a, list_id, [mine, theirs], "detach").status_code == 404
    assert _members(client, a, list_id) == [mine]


def test_bad_attach_requests(client, account, settings_override):
    list_id = new_list(client, account)
    face_id = new_face(client, account)
    for body in ({"action": "move", "face_ids": [face_id]}, {"action": "attach", "face_ids": []},
                 {"action": "attach"}, {"action": "attach", "face_ids": ["nope"]}):
        r = client.patch(f"/lists/{list_id}/faces", json=body, headers=account.auth)
        assert r.status_code == 400, body
    settings_override(faces_batch_max=2)
    more = [new_face(client, account) for _ in range(2)]
    r = _attach(client, account, list_id, [face_id, *more])
    assert r.status_code == 400 and "faces_batch_max" in r.json["detail"]
    r = _attach(client, account, str(uuid.uuid4()), [face_id])
    assert r.status_code == 404 and r.json["error_code"] == 20002


def test_delete_list_keeps_faces(client, account):
    list_id = new_list(client, account)
    face_id = new_face(client, account, list_ids=[list_id])
    assert client.get(f"/faces/{face_id}", headers=account.auth).json["lists"] == [list_id]
    client.delete(f"/lists/{list_id}", headers=account.auth)
    face = client.get(f"/faces/{face_id}", headers=account.auth)
    assert face.status_code == 200 and face.json["lists"] == []


def test_isolation(client, account_factory):
    a, b = account_factory(), account_factory()
    list_a = new_list(client, a, "a's list")
    face_a = new_face(client, a, list_ids=[list_a])
    list_b = new_list(client, b)
    face_b = new_face(client, b)
    for method in ("get", "patch", "delete"):
        kwargs = {"json": {"user_data": "taken"}} if method == "patch" else {}
        r = getattr(client, method)(f"/lists/{list_a}", headers=b.auth, **kwargs)
        assert r.status_code == 404 and r.json["error_code"] == 20002, method
    assert _attach(client, b, list_a, [face_b]).status_code == 404  # B cannot use A's list
    assert _attach(client, b, list_b, [face_a]).status_code == 404  # nor put A's face in its own
    assert _members(client, b, list_a) == []  # a list filter never reveals another account's faces
    assert client.get("/lists", query_string={"list_ids": list_a}, headers=b.auth).json["lists"] == []
    assert client.get("/lists/count", headers=b.auth).json["lists_count"] == 1
    r = client.post("/faces", json={"list_ids": [list_a]}, headers=b.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20002
    assert client.get(f"/lists/{list_a}", headers=a.auth).json == {
        **client.get(f"/lists/{list_a}", headers=a.auth).json, "user_data": "a's list", "faces_count": 1}

    advanced = account_factory("advanced_user")
    assert client.get(f"/lists/{list_a}", headers=advanced.auth).status_code == 200
    assert _members(client, advanced, list_a) == [face_a]
    assert _attach(client, advanced, list_a, [face_a], "detach").status_code == 404


def test_token_permissions(client, account):
    list_id = new_list(client, account)
    face_id = new_face(client, account)
    viewer = bearer(account.token({"list": ["view"]}))
    assert client.get(f"/lists/{list_id}", headers=viewer).status_code == 200
    r = client.patch(f"/lists/{list_id}/faces", json={"action": "attach", "face_ids": [face_id]}, headers=viewer)
    assert r.status_code == 403
    assert client.post("/lists", json={}, headers=viewer).status_code == 403
    assert client.delete(f"/lists/{list_id}", headers=viewer).status_code == 403
