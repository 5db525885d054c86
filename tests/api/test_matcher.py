"""POST /matcher/faces and /matcher/raw: exact top-k against a float64 brute force (random and real
dlib descriptors), cache path = database path, filters, account isolation, permissions, bad input."""
from __future__ import annotations

import base64
import struct
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest

from inference import descriptor_format as fmt
from matcher.cache import ListCache
from tests.api.faces_helpers import new_face, new_list, raw, sdk, vector
from tests.conftest import bearer, first_admin
from tests.matcher.conftest import real_descriptors  # noqa: F401  (session fixture: dlib descriptors of LFW photos)

pytestmark = pytest.mark.usefixtures("celery_worker")

LONG_AGO = (datetime.now(timezone.utc) - timedelta(days=1)).isoformat()


def create_faces(client: Any, account: Any, vectors: np.ndarray, list_ids: list[str] = (),
                 user_data: str = "") -> list[str]:
    ids: list[str] = []
    for start in range(0, len(vectors), 500):
        batch = [{"descriptors": [{"descriptor": sdk(v)}], "list_ids": list(list_ids), "user_data": user_data,
                  "external_id": f"x{start + i}"} for i, v in enumerate(vectors[start:start + 500])]
        r = client.post("/faces/batch", json={"faces": batch}, headers=account.auth)
        assert r.status_code == 201, r.json
        ids += [f["face_id"] for f in r.json["faces"]]
    return ids


def brute_force(queries: np.ndarray, x: np.ndarray, ids: list[str], k: int,
                threshold: float = 0.0) -> list[list[tuple[str, float]]]:
    """float64 distances, the documented similarity map, ties by id."""
    out = []
    for q in queries.astype(np.float64):
        d = np.sqrt(((x.astype(np.float64) - q) ** 2).sum(axis=1))
        order = sorted(range(len(ids)), key=lambda i: (d[i], ids[i]))[:k]
        out.append([(ids[i], float(fmt.similarity(d[i]))) for i in order if fmt.similarity(d[i]) >= threshold])
    return out


def match(client: Any, headers: dict[str, str], references: list[dict[str, Any]], filters: dict[str, Any],
          limit: int = 5, threshold: float | None = None, status: int = 200) -> Any:
    body: dict[str, Any] = {"references": references, "candidates": {"filters": filters}, "limit": limit}
    if threshold is not None:
        body["threshold"] = threshold
    r = client.post("/matcher/faces", json=body, headers=headers)
    assert r.status_code == status, r.json
    return r.json


def as_pairs(result: dict[str, Any]) -> list[list[tuple[str, float]]]:
    return [[(m["face_id"], m["similarity"]) for m in row["matches"]] for row in result["results"]]


def assert_same(got: list[list[tuple[str, float]]], want: list[list[tuple[str, float]]]) -> None:
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in want]
    for g, w in zip(got, want):
        np.testing.assert_allclose([s for _, s in g], [s for _, s in w], rtol=0, atol=1e-9)


@pytest.fixture()
def cache_searches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts list-cache searches (the worker runs in this process, on threads)."""
    calls: list[int] = []
    original = ListCache.search

    def spy(self: ListCache, *args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ListCache, "search", spy)
    return calls


def test_topk_equals_brute_force_on_cache_and_database_paths(client, account, cache_searches):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, 128)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    list_id = new_list(client, account)
    ids = create_faces(client, account, x, [list_id])
    queries = np.concatenate([rng.standard_normal((4, 128)).astype(np.float32) * 0.06, x[:2] + 0.01])
    refs = [{"type": "descriptor", "descriptor": raw(q), "format": "raw"} for q in queries]
    refs += [{"type": "face", "id": ids[10]}]
    want = brute_force(np.concatenate([queries, x[10:11]]), x, ids, 10)

    via_cache = match(client, account.auth, refs, {"list_id": list_id}, limit=10)
    assert cache_searches, "a list_id-only request must be answered by the list cache"
    assert_same(as_pairs(via_cache), want)
    assert via_cache["results"][-1]["matches"][0]["face_id"] == ids[10]  # a face finds itself first
    assert via_cache["results"][-1]["matches"][0]["similarity"] == 1.0  # exactly: distance 0

    searches = len(cache_searches)
    via_db = match(client, account.auth, refs, {"list_id": list_id, "create_time__gte": LONG_AGO}, limit=10)
    via_account = match(client, account.auth, refs, {}, limit=10)
    assert len(cache_searches) == searches, "filters beyond list_id must go to the database"
    assert via_db == via_cache and via_account == via_cache
    assert via_cache["results"][0]["reference"] == {"type": "descriptor", "id": "0"}
    first = via_cache["results"][0]["matches"][0]
    assert first["lists"] == [list_id] and first["account_id"] == account.account_id
    assert first["external_id"] == f"x{ids.index(first['face_id'])}"


def test_cache_switched_off_gives_the_same_answer(client, account, settings_override, cache_searches):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((120, 128)).astype(np.float32)
    list_id = new_list(client, account)
    ids = create_faces(client, account, x, [list_id])
    refs = [{"type": "descriptor", "descriptor": sdk(v)} for v in rng.standard_normal((3, 128)).astype(np.float32)]
    with_cache = match(client, account.auth, refs, {"list_id": list_id}, limit=7)
    assert cache_searches
    settings_override(matcher_use_cache=False)
    searches = len(cache_searches)
    without = match(client, account.auth, refs, {"list_id": list_id}, limit=7)
    assert len(cache_searches) == searches
    assert without == with_cache
    q = np.stack([fmt.unpack(base64.b64decode(r["descriptor"]))[1] for r in refs])
    assert_same(as_pairs(without), brute_force(q, x, ids, 7))


def test_real_dlib_descriptors(client, account, real_descriptors):  # noqa: F811
    x, who = real_descriptors
    list_id = new_list(client, account)
    ids = create_faces(client, account, x, [list_id])
    refs = [{"type": "face", "id": ids[i]} for i in range(0, len(ids), 7)]
    result = match(client, account.auth, refs, {"list_id": list_id}, limit=6)
    assert_same(as_pairs(result), brute_force(x[::7], x, ids, 6))
    db = match(client, account.auth, refs, {"face_ids": ids}, limit=6)
    assert db == result
    # With the model's threshold, the best other face is the same person for most references.
    same = [who[ids.index(row["matches"][1]["face_id"])] == who[ids.index(row["reference"]["id"])]
            for row in result["results"] if len(row["matches"]) > 1]
    assert sum(same) >= 0.8 * len(same)


def test_filters_limit_and_threshold(client, account):
    base = vector()
    near = [base + 0.02 * vector() for _ in range(6)]
    list_id = new_list(client, account)
    tagged = create_faces(client, account, np.stack(near[:3]), [list_id], user_data="vip-group")
    other = create_faces(client, account, np.stack(near[3:]), [])
    ref = [{"type": "descriptor", "descriptor": sdk(base)}]
    all_ids = {m["face_id"] for m in match(client, account.auth, ref, {}, limit=100)["results"][0]["matches"]}
    assert set(tagged) | set(other) <= all_ids
    got = match(client, account.auth, ref, {"user_data": "vip"}, limit=100)["results"][0]["matches"]
    assert {m["face_id"] for m in got} == set(tagged)
    got = match(client, account.auth, ref, {"external_ids": ["x0"], "list_id": list_id})["results"][0]["matches"]
    assert [m["face_id"] for m in got] == [tagged[0]]
    got = match(client, account.auth, ref, {"face_ids": other}, limit=2)["results"][0]["matches"]
    assert len(got) == 2 and {m["face_id"] for m in got} <= set(other)
    assert got[0]["similarity"] >= got[1]["similarity"]
    far = match(client, account.auth, [{"type": "descriptor", "descriptor": sdk(-base)}], {"face_ids": tagged},
                threshold=0.5)
    assert far["results"][0]["matches"] == []
    r = client.post("/matcher/faces", json={"references": ref, "candidates": {"filters": {}}, "limit": 101},
                    headers=account.auth)
    assert r.status_code == 400 and "matcher_limit_max" in r.json["detail"]
    r = client.post("/matcher/faces", json={"references": ref, "candidates": {"filters": {"colour": "red"}}},
                    headers=account.auth)
    assert r.status_code == 400 and "colour" in r.json["detail"]


def test_attribute_references_need_attribute_matching(client, account):
    v = vector()
    face = new_face(client, account, descriptors=[{"descriptor": sdk(v)}])
    r = client.post("/attributes", json={"descriptors": [{"descriptor": sdk(v)}]}, headers=account.auth)
    assert r.status_code == 201, r.json
    ref = [{"type": "attribute", "id": r.json["attribute_id"]}]
    face_only = bearer(account.token({"face": ["matching"]}))
    body = {"references": ref, "candidates": {"filters": {"face_ids": [face]}}}
    r = client.post("/matcher/faces", json=body, headers=face_only)
    assert r.status_code == 403 and "attribute: matching" in r.json["detail"]
    both = bearer(account.token({"face": ["matching"], "attribute": ["matching"]}))
    r = client.post("/matcher/faces", json=body, headers=both)
    assert r.status_code == 200 and r.json["results"][0]["matches"][0]["face_id"] == face
    assert client.post("/matcher/faces", json=body, headers=bearer(account.token({"face": ["view"]}))).status_code == 403


def test_account_isolation(client, account_factory):
    a, b, adv = account_factory(), account_factory(), account_factory("advanced_user")
    v = vector()
    list_a = new_list(client, a)
    face_a = new_face(client, a, descriptors=[{"descriptor": sdk(v)}], list_ids=[list_a])
    face_b = new_face(client, b, descriptors=[{"descriptor": sdk(v + 0.01)}])
    ref = [{"type": "descriptor", "descriptor": sdk(v)}]
    r = client.post("/matcher/faces", json={"references": ref, "candidates": {"filters": {"list_id": list_a}}},
                    headers=b.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20002
    seen_by_b = match(client, b.auth, ref, {}, limit=100)["results"][0]["matches"]
    assert {m["account_id"] for m in seen_by_b} == {b.account_id} and face_b in {m["face_id"] for m in seen_by_b}
    r = client.post("/matcher/faces", json={"references": [{"type": "face", "id": face_a}],
                                            "candidates": {"filters": {}}}, headers=b.auth)
    assert r.status_code == 404 and r.json["error_code"] == 20001
    r = client.post("/matcher/faces", json={"references": ref, "candidates": {"filters": {"account_id": a.account_id}}},
                    headers=b.auth)
    assert r.status_code == 403
    # An advanced user matches across accounts: another account's list, or one account's faces.
    got = match(client, adv.auth, [{"type": "face", "id": face_a}], {"list_id": list_a})["results"][0]["matches"]
    assert [m["face_id"] for m in got] == [face_a]
    got = match(client, adv.auth, ref, {"account_id": b.account_id, "face_ids": [face_a, face_b]})
    assert [m["face_id"] for m in got["results"][0]["matches"]] == [face_b]
    got = match(client, adv.auth, ref, {"face_ids": [face_a, face_b]})
    assert [m["face_id"] for m in got["results"][0]["matches"]] == [face_a, face_b]


def _bad_descriptors() -> dict[str, dict[str, Any]]:
    v = vector()
    payload = v.astype("<f4").tobytes()
    return {
        "version": {"descriptor": base64.b64encode(struct.pack("<4sI", fmt.SIGNATURE, 999) + payload).decode()},
        "short": {"descriptor": base64.b64encode(payload[:-4]).decode(), "format": "raw"},
        "long sdk": {"descriptor": base64.b64encode(struct.pack("<4sI", fmt.SIGNATURE, fmt.DESCRIPTOR_VERSION)
                                                    + payload + payload[:4]).decode()},
        "nan": {"descriptor": base64.b64encode(np.full(128, np.nan, "<f4").tobytes()).decode(), "format": "raw"},
        "base64": {"descriptor": "not base64 at all!"},
    }


@pytest.mark.parametrize("case", sorted(_bad_descriptors()))
def test_bad_descriptors_are_clear_400s(client, account, case):
    bad = _bad_descriptors()[case]
    words = {"version": "version 999", "short": "bytes", "long sdk": "payload bytes", "nan": "NaN",
             "base64": "base64"}[case]
    r = client.post("/matcher/faces", json={"references": [{"type": "descriptor", **bad}],
                                            "candidates": {"filters": {}}}, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 20004, r.json
    assert words in r.json["detail"] and "'0'" in r.json["detail"]
    good = {"descriptor": sdk()}
    r = client.post("/matcher/raw", json={"references": [good], "candidates": [good, bad]}, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 20004 and words in r.json["detail"]


def test_reference_face_without_descriptor(client, account):
    empty = new_face(client, account)
    r = client.post("/matcher/faces", json={"references": [{"type": "face", "id": empty}],
                                            "candidates": {"filters": {}}}, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 40001 and empty in r.json["detail"]
    r = client.post("/matcher/faces", json={"references": [{"type": "face", "id": "nope"}],
                                            "candidates": {"filters": {}}}, headers=account.auth)
    assert r.status_code == 400 and "UUID" in r.json["detail"]
    r = client.post("/matcher/faces", json={"references": [{"type": "event", "id": empty}],
                                            "candidates": {"filters": {}}}, headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 60002  # a face's id is no event's
    r = client.post("/matcher/faces", json={"references": [{"type": "body", "id": empty}],
                                            "candidates": {"filters": {}}}, headers=account.auth)
    assert r.status_code == 400 and "unknown type" in r.json["detail"]


@pytest.mark.parametrize("inline", [False, True])
def test_raw_matching_brute_force_on_both_paths(client, account, settings_override, inline):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((60, 128)).astype(np.float32)
    q = rng.standard_normal((3, 128)).astype(np.float32)
    settings_override(matcher_inline_max=10**6 if inline else 0)
    body = {"references": [{"descriptor": raw(v), "format": "raw", "id": f"q{i}"} for i, v in enumerate(q)],
            "candidates": [{"descriptor": sdk(v), "id": f"c{i}"} for i, v in enumerate(x)], "limit": 8}
    r = client.post("/matcher/raw", json=body, headers=account.auth)
    assert r.status_code == 200, r.json
    want = brute_force(q, x, [f"c{i}" for i in range(len(x))], 8)
    got = [[(m["id"], m["similarity"]) for m in row["matches"]] for row in r.json["results"]]
    # Ties break by position for raw candidates; random data has none, so the order is the same.
    assert_same(got, want)
    assert [row["reference"]["id"] for row in r.json["results"]] == ["q0", "q1", "q2"]
    dup = {**body, "candidates": body["candidates"][:2] + body["candidates"][:1]}
    r = client.post("/matcher/raw", json=dup, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 40003


def test_status_reports_a_loaded_cache(client, account):
    list_id = new_list(client, account)
    face = new_face(client, account, descriptors=[{"descriptor": sdk()}], list_ids=[list_id])
    match(client, account.auth, [{"type": "face", "id": face}], {"list_id": list_id})
    assert client.get("/matcher/status").status_code == 401  # counts over every account: not public
    assert client.get("/matcher/status", headers=account.auth).status_code == 403
    r = client.get("/matcher/status", headers=first_admin().auth)
    assert r.status_code == 200, r.json
    assert r.json["ready"] is True and r.json["descriptor_version"] == fmt.DESCRIPTOR_VERSION
    assert r.json["feed_seq"] >= 1 and r.json["descriptors"] >= 1 and r.json["load_seconds"] is not None
