"""Handlers: CRUD and versions, the policies' defaults, the refusals at creation (and from the
validator alike), account isolation, permissions and pagination."""
from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Account, bearer, first_admin

MATCHING = {
    "extract_policy": {"extract_face_descriptor": True},
    "match_policy": [{"label": "staff", "limit": 2, "threshold": 0.6}],
    "conditional_tags_policy": [{"tag": "known", "filters": {"label": "staff", "similarity__gte": 0.8}}],
    "callbacks": [{"type": "http", "url": "http://127.0.0.1:8080/hook", "headers": [{"name": "X-Key", "value": "k"}],
                   "filters": {"similarity__gte": 0.7}},
                  {"type": "luna-ws-notification"}],
}


def _create(client: Any, account: Account, **body: Any) -> str:
    r = client.post("/handlers", json=body, headers=account.auth)
    assert r.status_code == 201, r.json
    assert r.json["url"] == f"/handlers/{r.json['handler_id']}"
    return r.json["handler_id"]


def _new_list(client: Any, account: Account) -> str:
    r = client.post("/lists", json={}, headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["list_id"]


def test_defaults_make_a_complete_static_handler(client: Any, account: Account) -> None:
    got = client.get(f"/handlers/{_create(client, account)}", headers=account.auth).json
    assert (got["handler_type"], got["description"], got["version"]) == ("static", "", 1)
    p = got["policies"]
    assert p["detect_policy"]["detect_face"] is True and p["detect_policy"]["detect_body"] is False
    assert p["detect_policy"]["multiface_policy"] == "all"
    assert p["extract_policy"]["extract_face_descriptor"] is False
    assert p["match_policy"] == [] and p["conditional_tags_policy"] == [] and p["callbacks"] == []
    storage = p["storage_policy"]
    assert storage["face_sample_policy"]["store_sample"] is True
    assert storage["face_policy"] == {"store_face": False, "link_to_lists_policy": []}
    assert storage["event_policy"] == {"store_event": True, "wait_saving": True}


def test_crud_round_trip_and_versions(client: Any, account: Account) -> None:
    list_id = _new_list(client, account)
    policies = {**MATCHING, "match_policy": [{"label": "staff", "candidates": {"list_id": list_id}}]}
    hid = _create(client, account, description="door", policies=policies)
    got = client.get(f"/handlers/{hid}", headers=account.auth).json
    assert got["version"] == 1 and got["policies"]["match_policy"] == [
        {"label": "staff", "candidates": {"list_id": list_id}, "limit": 3, "threshold": 0.0}]
    assert got["policies"]["callbacks"][0]["headers"] == [{"name": "X-Key", "value": "k"}]
    assert client.get(f"/handlers/{hid}", headers=account.auth).json["version"] == 1

    r = client.patch(f"/handlers/{hid}", json={"description": "gate"}, headers=account.auth)
    assert r.status_code == 200 and (r.json["description"], r.json["version"]) == ("gate", 2)
    assert r.json["policies"] == got["policies"] and r.json["last_update_time"] >= got["last_update_time"]
    r = client.patch(f"/handlers/{hid}", json={"policies": {}}, headers=account.auth)
    assert r.status_code == 200 and r.json["version"] == 3 and r.json["policies"]["match_policy"] == []
    assert client.patch(f"/handlers/{hid}", json={}, headers=account.auth).json["version"] == 3

    r = client.put(f"/handlers/{hid}", json={"handler_type": "dynamic"}, headers=account.auth)
    assert r.status_code == 200, r.json
    assert (r.json["handler_type"], r.json["policies"], r.json["description"], r.json["version"]) == (
        "dynamic", None, "", 4)
    assert client.get(f"/handlers/{hid}", headers=account.auth).json["version"] == 4

    assert client.delete(f"/handlers/{hid}", headers=account.auth).status_code == 204
    r = client.get(f"/handlers/{hid}", headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 50001


def test_dynamic_handlers_take_no_policies(client: Any, account: Account) -> None:
    hid = _create(client, account, handler_type="dynamic")
    assert client.get(f"/handlers/{hid}", headers=account.auth).json["policies"] is None
    for r in (client.post("/handlers", json={"handler_type": "dynamic", "policies": {}}, headers=account.auth),
              client.patch(f"/handlers/{hid}", json={"policies": {}}, headers=account.auth)):
        assert r.status_code == 400 and r.json["error_code"] == 50002, r.json
    assert client.get(f"/handlers/{hid}", headers=account.auth).json["version"] == 1


CONFLICTS = [
    ({"detect_policy": {"detect_face": False}}, "detect_face, detect_body or both"),
    ({"detect_policy": {"detect_face": False, "detect_body": True},
      "extract_policy": {"extract_face_descriptor": True}}, "extract_policy.extract_face_descriptor"),
    ({"detect_policy": {"detect_face": False, "detect_body": True, "estimate_emotions": True}},
     "detect_policy.estimate_emotions"),
    ({"detect_policy": {"yaw_threshold": 30}}, "needs detect_policy.estimate_head_pose"),
    ({"detect_policy": {"min_quality": 0.5}}, "needs detect_policy.estimate_quality"),
    ({"match_policy": [{"label": "a"}]}, "needs extract_policy.extract_face_descriptor"),
    ({"extract_policy": {"extract_face_descriptor": True}, "match_policy": [{"label": "a"}, {"label": "a"}]},
     "unique"),
    ({"conditional_tags_policy": [{"tag": "t", "filters": {"similarity__gte": 0.5}}]}, "need a match_policy"),
    ({**MATCHING, "callbacks": [{"type": "luna-ws-notification", "filters": {"label": "nobody"}}]},
     "no match labelled 'nobody'"),
    ({"conditional_tags_policy": [{"tag": "t", "filters": {"gender": "male"}}]}, "age and gender filters"),
    ({"storage_policy": {"attribute_policy": {"store_attribute": True}}}, "store_attribute"),
    ({"storage_policy": {"face_policy": {"link_to_lists_policy": [{"list_id": str(uuid.uuid4())}]}}},
     "needs store_face"),
]


@pytest.mark.parametrize("policies,fragment", CONFLICTS)
def test_contradicting_policies_are_refused_by_creation_and_validator(
        client: Any, account: Account, policies: dict[str, Any], fragment: str) -> None:
    for r in (client.post("/handlers", json={"policies": policies}, headers=account.auth),
              client.post("/handlers/validator", json={"policies": policies}, headers=account.auth)):
        assert r.status_code == 400 and r.json["error_code"] == 50002, r.json
        assert fragment in r.json["detail"], r.json
    assert client.get("/handlers", headers=account.auth).json["handlers"] == []


def test_validator_accepts_without_storing(client: Any, account: Account) -> None:
    list_id = _new_list(client, account)
    policies = {**MATCHING, "detect_policy": {"estimate_head_pose": True, "yaw_threshold": 20,
                                              "estimate_basic_attributes": True},
                "storage_policy": {"face_policy": {"store_face": True, "link_to_lists_policy": [
                    {"list_id": list_id, "filters": {"age__gte": 18}}]}}}
    r = client.post("/handlers/validator", json={"policies": policies}, headers=account.auth)
    assert r.status_code == 200 and r.json == {"valid": True}
    assert client.get("/handlers", headers=account.auth).json["handlers"] == []
    _create(client, account, policies=policies)


def test_disabled_estimators_are_refused(client: Any, account: Account, settings_override: Any) -> None:
    settings_override(enable_emotions=False, enable_face_descriptor=False)
    for policies, needed in (({"detect_policy": {"estimate_emotions": True}}, "detect_policy.estimate_emotions"),
                             ({"extract_policy": {"extract_face_descriptor": True}},
                              "extract_policy.extract_face_descriptor")):
        for url in ("/handlers", "/handlers/validator"):
            r = client.post(url, json={"policies": policies}, headers=account.auth)
            assert r.status_code == 403 and r.json["error_code"] == 30001, r.json
            assert needed in r.json["detail"]
    assert client.post("/handlers", json={}, headers=account.auth).status_code == 201
    settings_override(enable_all_estimators_by_default=False, enable_face_detector=True)
    r = client.post("/handlers", json={}, headers=account.auth)
    assert r.status_code == 403 and "face_landmarks5" in r.json["detail"]


def test_lists_of_other_accounts_are_refused(client: Any, account_factory: Any) -> None:
    a, b = account_factory(), account_factory()
    foreign = _new_list(client, b)
    for policies in ({**MATCHING, "match_policy": [{"label": "x", "candidates": {"list_id": foreign}}],
                      "conditional_tags_policy": [], "callbacks": []},
                     {"storage_policy": {"face_policy": {"store_face": True,
                                                         "link_to_lists_policy": [{"list_id": foreign}]}}}):
        for url in ("/handlers", "/handlers/validator"):
            r = client.post(url, json={"policies": policies}, headers=a.auth)
            assert r.status_code == 404 and r.json["error_code"] == 20002 and foreign in r.json["detail"], r.json
    hid = _create(client, a)
    r = client.put(f"/handlers/{hid}", json={"policies": {
        "storage_policy": {"face_policy": {"store_face": True, "link_to_lists_policy": [{"list_id": foreign}]}}}},
        headers=a.auth)
    assert r.status_code == 404 and client.get(f"/handlers/{hid}", headers=a.auth).json["version"] == 1


@pytest.mark.parametrize("body", [
    {"handler_type": "sometimes"},
    {"policies": {"detect_policy": {"detect_fce": True}}},
    {"policies": {"detect_policy": {"yaw_threshold": 200}}},
    {"policies": {"match_policy": [{"limit": 3}]}},
    {"policies": {"match_policy": [{"label": "a", "candidates": {"list_id": "not-a-uuid"}}]}},
    {"policies": {"callbacks": [{"type": "http"}]}},
    {"policies": {"callbacks": [{"type": "http", "url": "ftp://example.com/x"}]}},
    {"policies": {"callbacks": [{"type": "luna-ws-notification", "url": "http://example.com/x"}]}},
    {"policies": {"callbacks": [{"type": "http", "url": "http://example.com", "headers": [{"name": "bad header", "value": "x"}]}]}},
    {"policies": {"callbacks": [{"type": "http", "url": "http://example.com", "headers": [{"name": "X-A", "value": "a\r\nX-B: b"}]}]}},
    {"policies": {"callbacks": [{"type": "http", "url": "http://example.com", "headers": [{"name": "X-A", "value": "\u20ac"}]}]}},
    {"policies": {"storage_policy": {"face_sample_policy": {"ttl": 12345}}}},
    {"policies": {"storage_policy": {"event_policy": {"wait_saving": "maybe"}}}},
    {"policies": []},
])
def test_bad_shapes_are_validation_errors(client: Any, account: Account, body: dict[str, Any]) -> None:
    r = client.post("/handlers", json=body, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 10005, r.json


def test_isolation_permissions_and_read_rules(client: Any, account_factory: Any) -> None:
    a, b, adv = account_factory(), account_factory(), account_factory("advanced_user")
    hid = _create(client, a, description="mine")
    for method, kwargs in (("get", {}), ("patch", {"json": {"description": "x"}}), ("put", {"json": {}}),
                           ("delete", {})):
        r = client.open(f"/handlers/{hid}", method=method.upper(), headers=b.auth, **kwargs)
        assert r.status_code == 404 and r.json["error_code"] == 50001, method
    assert client.get("/handlers", headers=b.auth).json["handlers"] == []
    assert client.get("/handlers", query_string={"account_id": a.account_id}, headers=b.auth).status_code == 403
    # advanced users read other accounts' handlers, and change none
    assert client.get(f"/handlers/{hid}", headers=adv.auth).status_code == 200
    listed = client.get("/handlers", query_string={"account_id": a.account_id}, headers=adv.auth).json
    assert [h["handler_id"] for h in listed["handlers"]] == [hid]
    assert client.patch(f"/handlers/{hid}", json={"description": "x"}, headers=adv.auth).status_code == 404
    assert client.delete(f"/handlers/{hid}", headers=adv.auth).status_code == 404
    r = client.get("/handlers", headers=first_admin().auth)
    assert r.status_code == 403 and r.json["error_code"] == 11006
    token = bearer(a.token({"handler": ["view"]}))
    assert client.get(f"/handlers/{hid}", headers=token).status_code == 200
    for method, url, kwargs in (("POST", "/handlers", {"json": {}}), ("POST", "/handlers/validator",
                                                                      {"json": {"policies": {}}}),
                                ("PATCH", f"/handlers/{hid}", {"json": {}}), ("DELETE", f"/handlers/{hid}", {})):
        r = client.open(url, method=method, headers=token, **kwargs)
        assert r.status_code == 403 and r.json["error_code"] == 11005, (method, url)
    assert client.get(f"/handlers/{hid}", headers=a.auth).json["version"] == 1


def test_list_filters_and_pagination(client: Any, account: Account) -> None:
    ids = [_create(client, account, description=f"cam {n}") for n in range(5)]
    dynamic = _create(client, account, description="cam dynamic", handler_type="dynamic")
    pages = [client.get("/handlers", query_string={"page": n, "page_size": 2}, headers=account.auth).json
             for n in (1, 2, 3, 4)]
    assert [[h["handler_id"] for h in p["handlers"]] for p in pages] == [ids[:2], ids[2:4], [ids[4], dynamic], []]
    assert (pages[1]["page"], pages[1]["page_size"]) == (2, 2)
    by_type = client.get("/handlers", query_string={"handler_type": "dynamic"}, headers=account.auth).json
    assert [h["handler_id"] for h in by_type["handlers"]] == [dynamic]
    by_text = client.get("/handlers", query_string={"description": "cam 3"}, headers=account.auth).json
    assert [h["handler_id"] for h in by_text["handlers"]] == [ids[3]]
    r = client.get("/handlers", query_string={"handler_type": "other"}, headers=account.auth)
    assert r.status_code == 400
