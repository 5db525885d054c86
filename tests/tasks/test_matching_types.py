"""The matching task types end to end (clustering, cross_match, roc, reporter): the real worker
and models make faces and events of a few LFW people, and the tasks group and match them."""
from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from matcher.similarity import DEFAULT_DISTANCE_THRESHOLDS, DESCRIPTOR_VERSION, distance_for_similarity
from tests.api.sdk_fixtures import FACES, files
from tests.conftest import Account
from tests.tasks.test_framework import wait_status

PEOPLE = ("Ariel_Sharon", "Colin_Powell", "Donald_Rumsfeld", "Vladimir_Putin")
PHOTOS = 3  # per person


@dataclass
class Gallery:
    """The account, and who each of its faces and events shows."""

    account: Account
    faces: dict[str, str] = field(default_factory=dict)  # face_id -> person
    events: dict[str, str] = field(default_factory=dict)  # event_id -> person


@pytest.fixture(scope="module")
def gallery(app: Any, celery_worker: Any) -> Gallery:
    from app.image_store import service as image_store

    image_store.create_platform_buckets()
    client = app.test_client()
    found = Gallery(Account(client))
    r = client.post("/handlers", json={"policies": {
        "detect_policy": {"multiface_policy": "largest"},
        "extract_policy": {"extract_face_descriptor": True},
        "storage_policy": {"face_policy": {"store_face": True}}}}, headers=found.account.auth)
    assert r.status_code == 201, r.json
    handler_id = r.json["handler_id"]
    for person in PEOPLE:
        for photo in sorted((FACES / "lfw" / person).iterdir())[:PHOTOS]:
            form = {**files(photo), "external_id": json.dumps(person), "user_data": json.dumps(person)}
            r = client.post(f"/handlers/{handler_id}/events", data=form, headers=found.account.auth,
                            content_type="multipart/form-data")
            assert r.status_code == 201, r.json
            (event,) = r.json["events"]
            found.faces[event["face_id"]] = person
            found.events[event["event_id"]] = person
    return found


def run_task(client: Any, account: Account, name: str, content: dict[str, Any]) -> dict[str, Any]:
    """Create a task, wait until it is done, and return its task row."""
    r = client.post(f"/tasks/{name}", json={"content": content}, headers=account.auth)
    assert r.status_code == 201, r.json
    task = wait_status(client, account.auth, r.json["task_id"], (2, 3, 5), timeout=60)
    assert task["status"] == 5, (task, client.get(f"/tasks/{task['task_id']}/errors", headers=account.auth).json)
    return task


def result(client: Any, account: Account, name: str, content: dict[str, Any]) -> Any:
    task = run_task(client, account, name, content)
    r = client.get(f"/tasks/{task['task_id']}/result", headers=account.auth)
    assert r.status_code == 200
    return r.json


def by_person(ids: list[str], who: dict[str, str]) -> set[frozenset[str]]:
    groups: dict[str, set[str]] = {}
    for i in ids:
        groups.setdefault(who[i], set()).add(i)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("objects_type", ["faces", "events"])
def test_clustering_groups_each_person(client: Any, gallery: Gallery, objects_type: str) -> None:
    who = getattr(gallery, objects_type)
    # Measured on these photos: same person 0.82 and more, different people 0.41 and less; the
    # faces take the default threshold (0.6).
    content = {"objects_type": objects_type, **({"threshold": 0.6} if objects_type == "events" else {})}
    body = result(client, gallery.account, "clustering", content)
    assert body["errors"] == []
    clusters = body["result"]["clusters"]
    assert {frozenset(c) for c in clusters} == by_person(list(who), who)
    assert body["result"]["total_objects"] == len(who) and body["result"]["total_clusters"] == len(PEOPLE)


def test_cross_match_finds_the_same_person(client: Any, gallery: Gallery) -> None:
    everyone = {"objects_type": "faces"}
    body = result(client, gallery.account, "cross_match",
                  {"references": everyone, "candidates": everyone, "limit": len(gallery.faces)})
    sims = {(m["reference_id"], c["candidate_id"]): c["similarity"] for m in body["result"] for c in m["candidates"]}
    same = [s for (a, b), s in sims.items() if gallery.faces[a] == gallery.faces[b]]
    other = [s for (a, b), s in sims.items() if gallery.faces[a] != gallery.faces[b]]
    assert len(same) + len(other) == len(gallery.faces) * (len(gallery.faces) - 1)  # all but themselves
    assert min(same) > 0.75 and max(other) < 0.5
    for m in body["result"]:
        assert [c["similarity"] for c in m["candidates"]] == sorted((c["similarity"] for c in m["candidates"]),
                                                                    reverse=True)

    # The best two of each reference over 0.6: its own person's other photos; only Sharon's references.
    sharon = [f for f, p in gallery.faces.items() if p == "Ariel_Sharon"]
    body = result(client, gallery.account, "cross_match",
                  {"references": {"objects_type": "faces", "filters": {"face_ids": sharon}},
                   "candidates": everyone, "threshold": 0.6})
    assert {m["reference_id"]: {c["candidate_id"] for c in m["candidates"]} for m in body["result"]} == {
        f: set(sharon) - {f} for f in sharon}

    # Events against faces: an event's face (the same descriptor) comes first, then its person's.
    body = result(client, gallery.account, "cross_match",
                  {"references": {"objects_type": "events"}, "candidates": everyone, "limit": 3, "threshold": 0.6})
    assert len(body["result"]) == len(gallery.events)
    for m in body["result"]:
        person = gallery.events[m["reference_id"]]
        assert [gallery.faces[c["candidate_id"]] for c in m["candidates"]] == [person] * PHOTOS
        assert m["candidates"][0]["similarity"] > 0.99


def test_cross_match_omits_references_without_match(client: Any, gallery: Gallery) -> None:
    putin = [f for f, p in gallery.faces.items() if p == "Vladimir_Putin"]
    others = [f for f, p in gallery.faces.items() if p != "Vladimir_Putin"]
    body = result(client, gallery.account, "cross_match",
                  {"references": {"objects_type": "faces", "filters": {"face_ids": putin}},
                   "candidates": {"objects_type": "faces", "filters": {"face_ids": ",".join(others)}},
                   "threshold": 0.6})
    assert body == {"result": [], "errors": []}

    nobody = "0190e7a4-0000-7000-8000-000000000000"
    body = result(client, gallery.account, "cross_match",
                  {"references": {"objects_type": "faces", "filters": {"face_ids": [*putin, nobody]}},
                   "candidates": {"objects_type": "faces"}, "threshold": 0.6})
    assert {m["reference_id"] for m in body["result"]} == set(putin)
    assert [(e["error_code"], e["additional_info"]) for e in body["errors"]] == [(70016, nobody)]


@pytest.mark.parametrize("version", [101, 102])
def test_roc_by_hand(version: int) -> None:
    """Four faces on a line (a, b of label 0 at 0 and 0.3; c, d of label 1 at 0.5 and 1.5).
    By distance: bc 0.2 impostor, ab 0.3 genuine, ac 0.5 impostor, cd 1.0 genuine, bd 1.2 and
    ad 1.5 impostors: the curve (0,0) (.25,0) (.25,.5) (.5,.5) (.5,1) (.75,1) (1,1). Thresholds are
    on the version's similarity scale."""
    from functools import partial

    from app.tasks.types.roc import evaluate as evaluate_any
    from matcher.similarity import similarity as similarity_any

    evaluate, similarity = partial(evaluate_any, version=version), partial(similarity_any, version=version)

    x = np.zeros((4, 128), dtype=np.float32)
    x[:, 0] = [0.0, 0.3, 0.5, 1.5]
    out = evaluate(x, [0, 0, "x", "x"], 1, 0.0, [0.1, 0.3, 0.6])
    assert (out["faces"], out["genuine_pairs"], out["impostor_pairs"]) == (4, 2, 4)
    assert [(p["fpr"], p["tpr"]) for p in out["roc_curve"]] == [
        (0, 0), (.25, 0), (.25, .5), (.5, .5), (.5, 1), (.75, 1), (1, 1)]
    assert out["auc"] == pytest.approx(0.625)  # P(genuine more similar than impostor) = 5/8
    assert out["eer"] == pytest.approx({"fpr": 0.5, "tpr": 0.5, "threshold": similarity(0.5)}, abs=1e-6)
    assert [(p["key_fpr"], p["tpr"]) for p in out["key_points"]] == [(0.1, 0), (0.3, 0.5), (0.6, 1)]
    assert out["key_points"][0]["threshold"] is None
    assert out["key_points"][1]["threshold"] == pytest.approx(similarity(0.3), abs=1e-6)
    # Top-1: a's nearest is b (hit), b's and c's are each other (misses), d's is c (hit).
    assert out["hit_top_n"] == {"limit": 1, "threshold": 0.0, "references": 4, "probability": 0.5}
    assert evaluate(x, [0, 0, "x", "x"], 2, 0.0, [0.1])["hit_top_n"]["probability"] == 0.75
    # Top-2 at least as similar as distance 0.4: c keeps only b, d nothing.
    assert evaluate(x, [0, 0, "x", "x"], 2, similarity(0.4), [0.1])["hit_top_n"]["probability"] == 0.5


def test_roc_on_faces(client: Any, gallery: Gallery, account_factory: Any) -> None:
    other = account_factory()  # its face is as absent from the markup as a missing one
    r = client.post("/handlers", json={"policies": {"extract_policy": {"extract_face_descriptor": True},
                                                    "storage_policy": {"face_policy": {"store_face": True}}}},
                    headers=other.auth)
    foreign = client.post(f"/handlers/{r.json['handler_id']}/events",
                          data=files(sorted((FACES / "lfw" / PEOPLE[0]).iterdir())[5]), headers=other.auth,
                          content_type="multipart/form-data").json["events"][0]["face_id"]
    markup = [{"face_id": f, "label": PEOPLE.index(p)} for f, p in gallery.faces.items()]
    body = result(client, gallery.account, "roc", {"markup": [*markup, {"face_id": foreign, "label": 0}]})
    out = body["result"]
    assert [e["additional_info"] for e in body["errors"]] == [foreign]
    assert out["faces"] == len(gallery.faces)
    assert out["genuine_pairs"] == len(PEOPLE) * PHOTOS * (PHOTOS - 1) // 2
    assert out["auc"] == 1.0 and out["eer"]["fpr"] == 0 and out["eer"]["tpr"] == 1
    # the equal-error threshold is the least similar genuine pair's similarity: on the default
    # version's scale, a distance under its threshold (every pair is told apart) and over 0.4
    least = distance_for_similarity(out["eer"]["threshold"], DESCRIPTOR_VERSION)
    assert 0.4 < least < DEFAULT_DISTANCE_THRESHOLDS[DESCRIPTOR_VERSION], least
    assert out["hit_top_n"]["probability"] == 1.0 and out["hit_top_n"]["references"] == len(gallery.faces)
    assert [p["tpr"] for p in out["key_points"]] == [1.0] * 5
    assert out["roc_curve"][0] == {"fpr": 0, "tpr": 0, "threshold": None} and out["roc_curve"][-1]["fpr"] == 1


def _report(client: Any, account: Account, content: dict[str, Any]) -> zipfile.ZipFile:
    task = run_task(client, account, "reporter", content)
    r = client.get(f"/tasks/{task['task_id']}/result", headers=account.auth)
    assert r.status_code == 200 and r.content_type == "application/zip"
    return zipfile.ZipFile(io.BytesIO(r.data))


@pytest.mark.parametrize("objects_type", ["faces", "events"])
def test_reporter_lists_each_object_with_its_cluster(client: Any, gallery: Gallery, objects_type: str) -> None:
    who = getattr(gallery, objects_type)
    clustering = run_task(client, gallery.account, "clustering", {"objects_type": objects_type})
    clusters = client.get(f"/tasks/{clustering['task_id']}/result", headers=gallery.account.auth).json["result"]

    archive = _report(client, gallery.account, {"task_id": clustering["task_id"], "columns": ["external_id",
                                                                                              "create_time"]})
    assert archive.namelist() == ["report.csv"]
    rows = list(csv.reader(io.StringIO(archive.read("report.csv").decode())))
    id_column = objects_type[:-1] + "_id"
    assert rows[0] == ["cluster_id", id_column, "external_id", "create_time"]
    assert sorted((int(r[0]), r[1]) for r in rows[1:]) == sorted(
        (n, i) for n, c in enumerate(clusters["clusters"]) for i in c)
    assert all(r[2] == who[r[1]] and r[3] for r in rows[1:])

    archive = _report(client, gallery.account, {"task_id": clustering["task_id"], "with_images": True})
    images = {n for n in archive.namelist() if n.startswith("images/")}
    assert images == {f"images/{i}.jpg" for i in who}
    assert all(archive.read(n)[:2] == b"\xff\xd8" for n in images)  # JPEG
    header = next(csv.reader(io.StringIO(archive.read("report.csv").decode())))
    assert header[:3] == ["cluster_id", id_column, "external_id" if objects_type == "faces" else "handler_id"]


def test_reporter_refuses_what_is_no_done_clustering_of_its_account(client: Any, gallery: Gallery,
                                                                    account_factory: Any) -> None:
    clustering = run_task(client, gallery.account, "clustering", {"objects_type": "faces"})["task_id"]
    cross = client.post("/tasks/cross_match", json={"content": {"references": {"objects_type": "faces"},
                                                                "candidates": {"objects_type": "faces"}}},
                        headers=gallery.account.auth).json["task_id"]
    other = account_factory()
    r = client.post("/tasks/reporter", json={"content": {"task_id": clustering}}, headers=other.auth)
    assert r.status_code == 404 and r.json["error_code"] == 70001, r.json
    for content, fragment in (({"task_id": cross}, "not a clustering task"),
                              ({"task_id": clustering, "columns": ["top_similarity"]}, "no fields of faces"),
                              ({"task_id": clustering, "columns": ["password"]}, "columns.0")):
        r = client.post("/tasks/reporter", json={"content": content}, headers=gallery.account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005 and fragment in r.json["detail"], r.json


@pytest.mark.parametrize("name, content", [
    ("clustering", {}),
    ("clustering", {"objects_type": "bodies"}),
    ("clustering", {"objects_type": "faces", "threshold": 1.5}),
    ("clustering", {"objects_type": "faces", "filters": {"account_id": "6c721b90-f5a0-409a-ab70-bc339a70184c"}}),
    ("clustering", {"objects_type": "faces", "filters": {"sources": ["a"]}}),
    ("clustering", {"objects_type": "events", "filters": {"create_time__gte": "yesterday"}}),
    ("cross_match", {"references": {"objects_type": "faces"}}),
    ("cross_match", {"references": {"objects_type": "faces"}, "candidates": {"objects_type": "faces"}, "limit": 0}),
    ("roc", {"markup": [{"face_id": "6c721b90-f5a0-409a-ab70-bc339a70184c", "label": 0}]}),
    ("roc", {"markup": [{"face_id": "6c721b90-f5a0-409a-ab70-bc339a70184c", "label": 0},
                        {"face_id": "8bc6e8df-410b-4065-b592-abc5f0432a1c", "label": 1}]}),
    ("roc", {"markup": [{"face_id": "6c721b90-f5a0-409a-ab70-bc339a70184c", "label": 0},
                        {"face_id": "6c721b90-f5a0-409a-ab70-bc339a70184c", "label": 0},
                        {"face_id": "8bc6e8df-410b-4065-b592-abc5f0432a1c", "label": 1}]}),
    ("roc", {"markup": [{"face_id": "6c721b90-f5a0-409a-ab70-bc339a70184c", "label": 1.5},
                        {"face_id": "8bc6e8df-410b-4065-b592-abc5f0432a1c", "label": 1.5}]}),
    ("reporter", {"task_id": 0}),
])
def test_bad_bodies_are_400(client: Any, account: Account, name: str, content: dict[str, Any]) -> None:
    r = client.post(f"/tasks/{name}", json={"content": content}, headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 10005, r.json


def test_bad_json_path_is_400(client: Any, account: Account) -> None:
    r = client.post("/tasks/clustering", json={"content": {"objects_type": "events", "filters": {"meta.a__zz": 1}}},
                    headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 60001, r.json


def test_many_parts_give_the_same_results(client: Any, gallery: Gallery, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parts of five objects (the worker runs in this process): ranges, the forests' merge and the
    parts' concatenation give what one part gives."""
    from app.tasks.types import clustering, cross_match, reporter

    everyone = {"objects_type": "faces"}
    whole = result(client, gallery.account, "clustering", everyone)["result"]
    matches = result(client, gallery.account, "cross_match", {"references": everyone, "candidates": everyone})
    monkeypatch.setattr(clustering, "PART_SIZE", 5)
    monkeypatch.setattr(cross_match, "PART_SIZE", 5)
    monkeypatch.setattr(reporter, "PART_ROWS", {False: 5, True: 5})
    task = run_task(client, gallery.account, "clustering", everyone)
    assert task["parts_total"] == 3
    assert client.get(f"/tasks/{task['task_id']}/result", headers=gallery.account.auth).json["result"] == whole
    task = run_task(client, gallery.account, "cross_match", {"references": everyone, "candidates": everyone})
    assert task["parts_total"] == 3
    assert client.get(f"/tasks/{task['task_id']}/result", headers=gallery.account.auth).json == matches
    archive = _report(client, gallery.account, {"task_id": task["task_id"] - 1, "columns": ["user_data"],
                                                "with_images": True})
    rows = list(csv.reader(io.StringIO(archive.read("report.csv").decode())))
    assert len(rows) == 1 + len(gallery.faces) and len(archive.namelist()) == 1 + len(gallery.faces)
