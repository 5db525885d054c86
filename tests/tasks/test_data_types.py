"""The data task types end to end (exporter, linker, gc, additional extraction): the real worker,
real models on the shared photos, results read back over /tasks."""
from __future__ import annotations

import base64
import csv
import io
import json
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from inference import descriptor_format as fmt
from tests.api.sdk_fixtures import FACES, post
from tests.conftest import Account
from tests.tasks.test_framework import wait_status

PHOTOS = [FACES / "lfw" / "Colin_Powell" / "Colin_Powell_0001.jpg",
          FACES / "lfw" / "George_W_Bush" / "George_W_Bush_0001.jpg"]


# ---- fixtures and helpers -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def owner(app: Any, celery_worker: Any) -> Account:
    return Account(app.test_client())


@pytest.fixture(scope="module")
def photos(app: Any, owner: Account) -> list[dict[str, Any]]:
    """Each photo's largest face as /sdk finds it: its descriptor (SDK base64) and its sample's bytes."""
    client = app.test_client()
    r = post(client, "/sdk", owner, *PHOTOS, extract_descriptor=1)
    assert r.status_code == 200, r.json
    out = []
    for image in r.json["images"]:
        face = max(image["faces"], key=lambda f: f["detection"]["rect"]["width"])
        sample = client.get(f"/samples/faces/{face['sample_id']}", headers=owner.auth)
        assert sample.status_code == 200
        out.append({"descriptor": face["descriptor"], "sample": sample.data})
    return out


def new_sample(client: Any, account: Account, data: bytes) -> str:
    r = client.post("/samples/faces", data=data, content_type="image/jpeg", headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["sample_id"]


def new_face(client: Any, account: Account, photo: dict[str, Any] | None, user_data: str, *,
             sample: bool = True) -> str:
    """A face of ``photo`` (its descriptor, a copy of its sample), or one without either."""
    body: dict[str, Any] = {"user_data": user_data}
    if photo is not None:
        body["descriptors"] = [{"descriptor": photo["descriptor"]}]
        if sample:
            body["sample_ids"] = [new_sample(client, account, photo["sample"])]
    r = client.post("/faces", json=body, headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["face_id"]


def vector(photo: dict[str, Any]) -> np.ndarray:
    return fmt.unpack(base64.b64decode(photo["descriptor"]))[1]


def new_event(account: Account, tag: str, *, when: datetime, similarity: float | None = None,
              sample_id: str | None = None, photo: dict[str, Any] | None = None) -> str:
    """An event as a handler saves it (its largest face's sample and descriptor when given)."""
    from app.db import session_scope
    from app.events import service as events
    from app.scope import Scope

    scope = Scope.of(account.account_id)
    face = {"type": "face", "detection": {"rect": {"x": 0, "y": 0, "width": 120, "height": 120}},
            **({"sample_id": sample_id} if sample_id else {})}
    with session_scope() as session:
        [event_id] = events.save_events(session, scope, [{
            "create_time": when, "user_data": tag, "top_similarity": similarity, "source": "cam",
            "detections": [face], "attributes": {"basic_attributes": {"age": 40.0, "gender_score": 0.9}}}])
        if photo is not None:
            events.save_descriptors(session, scope, [(event_id, fmt.DESCRIPTOR_VERSION, vector(photo).tobytes())])
    return str(event_id)


def run_task(client: Any, account: Any, name: str, content: dict[str, Any], status: int = 5) -> dict[str, Any]:
    r = client.post(f"/tasks/{name}", json={"content": content}, headers=account.auth)
    assert r.status_code == 201, r.json
    task = wait_status(client, account.auth, r.json["task_id"], (3, 5), timeout=120)
    assert task["status"] == status, (task, client.get(f"/tasks/{task['task_id']}/errors", headers=account.auth).json)
    return task


def result(client: Any, account: Any, task: dict[str, Any]) -> Any:
    r = client.get(f"/tasks/{task['task_id']}/result", headers=account.auth)
    assert r.status_code == 200, r.json
    return r


def face_ids(client: Any, account: Account, **filters: Any) -> list[str]:
    r = client.get("/faces", query_string={"page_size": 100, **filters}, headers=account.auth)
    assert r.status_code == 200, r.json
    return [f["face_id"] for f in r.json["faces"]]


def run_part_again(task_id: int, part: int) -> Any:
    """Run a done part's body once more, as a redelivered message would (the runner itself skips a
    checkpointed part): what it returns, and the stored partial."""
    from app.db import session_scope
    from app.tasks import runner
    from app.tasks.models import Subtask, Task

    with session_scope() as session:
        task = session.get(Task, task_id)
        subtask = session.scalar(select(Subtask).where(Subtask.task_id == task_id, Subtask.part == part))
        assert subtask.status == 5
        job = runner.job_of(task, subtask)
        stored = subtask.result
    return job.task_type.part(job, subtask.content), stored


def split_again(task_id: int) -> list[dict[str, Any]]:
    """Run a task type's split once more, as a split delivered twice would."""
    from app.db import session_scope
    from app.tasks import runner
    from app.tasks.models import Task

    with session_scope() as session:
        job = runner.job_of(session.get(Task, task_id))
    return job.task_type.split(job)


def change_count() -> int:
    from app.db import session_scope
    from app.faces.models import ChangeLog

    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(ChangeLog))


# ---- exporter -----------------------------------------------------------------------------------------
def test_exporter_writes_one_csv_and_the_samples(client: Any, owner: Account, photos: list[dict[str, Any]],
                                                 monkeypatch: Any) -> None:
    from app.tasks.types import exporter

    monkeypatch.setattr(exporter, "PART_SIZE", 2)  # three parts for five faces
    tag = uuid.uuid4().hex
    made = sorted(new_face(client, owner, photos[n % 2], tag) for n in range(5))
    new_face(client, owner, photos[0], "someone else")
    task = run_task(client, owner, "exporter", {"objects_type": "faces", "filters": {"user_data": tag},
                                                "columns": ["face_id", "user_data", "sample_ids"],
                                                "with_samples": True})
    assert task["parts_total"] == 3
    r = result(client, owner, task)
    assert r.content_type == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.data))
    rows = list(csv.reader(io.TextIOWrapper(archive.open("faces.csv"), encoding="utf-8")))
    assert rows[0] == ["face_id", "user_data", "sample_ids"]
    assert [row[0] for row in rows[1:]] == made and all(row[1] == tag for row in rows[1:])
    samples = [s for row in rows[1:] for s in json.loads(row[2])]
    assert len(samples) == 5
    assert sorted(archive.namelist()) == sorted(["faces.csv", *(f"samples/{s}.jpg" for s in samples)])
    assert archive.read(f"samples/{samples[0]}.jpg") in (photos[0]["sample"], photos[1]["sample"])


def test_exporter_events_default_columns_and_no_samples(client: Any, owner: Account) -> None:
    from app.tasks.types.exporter import EVENT_COLUMNS

    tag = uuid.uuid4().hex
    now = datetime.now(timezone.utc)
    made = sorted(new_event(owner, tag, when=now - timedelta(minutes=n), similarity=0.5) for n in range(3))
    task = run_task(client, owner, "exporter", {"objects_type": "events", "filters": {"user_data": tag}})
    archive = zipfile.ZipFile(io.BytesIO(result(client, owner, task).data))
    assert archive.namelist() == ["events.csv"]
    rows = list(csv.DictReader(io.TextIOWrapper(archive.open("events.csv"), encoding="utf-8")))
    assert list(rows[0]) == list(EVENT_COLUMNS)
    assert [row["event_id"] for row in rows] == made
    assert rows[0]["top_similarity"] == "0.5" and rows[0]["handler_id"] == ""
    assert '"age":40.0' in rows[0]["attributes"]


def test_exporter_of_nothing_is_a_header(client: Any, owner: Account, photos: list[dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex
    task = run_task(client, owner, "exporter", {"objects_type": "faces", "filters": {"user_data": tag},
                                                "columns": ["external_id", "face_id"]})
    archive = zipfile.ZipFile(io.BytesIO(result(client, owner, task).data))
    assert archive.read("faces.csv") == b"external_id,face_id\n"
    # a range emptied after the split: no rows, no blob, no failure
    face = new_face(client, owner, photos[0], tag, sample=False)
    task = run_task(client, owner, "exporter", {"objects_type": "faces", "filters": {"user_data": tag}})
    assert client.delete(f"/faces/{face}", headers=owner.auth).status_code == 204
    assert run_part_again(task["task_id"], 0) == ({"part": 0, "rows": 0, "samples": 0},
                                                  {"part": 0, "rows": 1, "samples": 0})


def test_exporter_refuses_unknown_columns(client: Any, owner: Account) -> None:
    for content in ({"objects_type": "faces", "columns": ["face_id", "password"]},
                    {"objects_type": "events", "columns": ["lists"]},
                    {"objects_type": "faces", "filters": {"nope": 1}}):
        r = client.post("/tasks/exporter", json={"content": content}, headers=owner.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005, (content, r.json)


# ---- gc -----------------------------------------------------------------------------------------------
def test_gc_deletes_the_filtered_faces_and_their_samples(client: Any, owner: Account,
                                                         photos: list[dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex
    doomed = [new_face(client, owner, photos[0], f"{tag}-old") for _ in range(3)]
    kept = new_face(client, owner, photos[1], f"{tag}-new")
    samples = [client.get(f"/faces/{f}", headers=owner.auth).json["sample_ids"][0] for f in doomed]
    task = run_task(client, owner, "gc", {"target": "faces", "filters": {"user_data": f"{tag}-old"},
                                          "remove_samples": True})
    assert result(client, owner, task).json["result"] == {"deleted": 3, "samples_deleted": 3}
    assert face_ids(client, owner, user_data=tag) == [kept]
    assert all(client.get(f"/samples/faces/{s}", headers=owner.auth).status_code == 404 for s in samples)
    kept_sample = client.get(f"/faces/{kept}", headers=owner.auth).json["sample_ids"][0]
    assert client.get(f"/samples/faces/{kept_sample}", headers=owner.auth).status_code == 200


def hourly(account: Account, rebuilt: bool = False) -> list[tuple[Any, ...]]:
    """The account's hourly statistics rows; ``rebuilt``: as made anew from its events (rolled back)."""
    from app.db import session_factory
    from app.events import service as events
    from app.events.models import EventStatsHourly as H

    session = session_factory()()
    try:
        if rebuilt:
            events.rebuild_hourly(session)
        rows = session.execute(select(H.create_time, H.handler_id, H.source, H.events, H.similarity_count,
                                      H.similarity_sum, H.similarity_min, H.similarity_max)
                               .where(H.account_id == uuid.UUID(account.account_id))
                               .order_by(H.create_time, H.handler_id, H.source)).all()
    finally:
        session.rollback()
        session.close()
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows]


def test_gc_events_keep_the_hourly_statistics_true(client: Any, account: Account, celery_worker: Any) -> None:
    from app.db import session_scope
    from app.events.models import Event, EventDescriptor

    hour = datetime(2021, 3, 4, 10, tzinfo=timezone.utc)
    handler = str(uuid.uuid4())
    old = [new_event(account, "t", when=hour + timedelta(minutes=m), similarity=s) for m, s in ((1, 0.9), (2, 0.2))]
    sample = new_sample(client, account, (FACES / "lfw" / "Colin_Powell" / "Colin_Powell_0002.jpg").read_bytes())
    old.append(new_event(account, "t", when=hour - timedelta(hours=1), similarity=None, sample_id=sample))
    kept = [new_event(account, "t", when=hour + timedelta(minutes=40), similarity=s) for s in (0.5, 0.7, None)]
    with session_scope() as session:
        session.get(Event, uuid.UUID(kept[0])).handler_id = uuid.UUID(handler)
    cut = (hour + timedelta(minutes=30)).isoformat()
    task = run_task(client, account, "gc", {"target": "events", "filters": {"create_time__lt": cut},
                                            "remove_samples": True})
    assert result(client, account, task).json["result"] == {"deleted": 3, "samples_deleted": 1}
    assert client.get(f"/samples/faces/{sample}", headers=account.auth).status_code == 404
    with session_scope() as session:
        left = session.scalars(select(Event.event_id).where(Event.account_id == uuid.UUID(account.account_id))).all()
        assert sorted(map(str, left)) == sorted(kept)
        assert session.scalar(select(func.count()).select_from(EventDescriptor)
                              .where(EventDescriptor.event_id.in_([uuid.UUID(e) for e in old]))) == 0
    after = hourly(account)
    assert after == hourly(account, rebuilt=True)
    assert sorted((row[3], row[6], row[7]) for row in after) == [(1, 0.5, 0.5), (2, 0.7, 0.7)]


def test_gc_removes_the_events_stored_source_images(client: Any, owner: Account) -> None:
    handler = client.post("/handlers", json={"policies": {"storage_policy": {
        "image_origin_policy": {"store_image": True}}}}, headers=owner.auth).json["handler_id"]
    r = post(client, f"/handlers/{handler}/events", owner, PHOTOS[0])
    assert r.status_code == 201, r.json
    (event,) = r.json["events"]
    shown = client.get(f"/events/{event['event_id']}", headers=owner.auth).json
    origin = shown["image_origin_id"]
    assert origin and origin == event["image_origin_id"]
    image = client.get(f"/images/{origin}", headers=owner.auth)
    assert image.status_code == 200 and image.data[:2] == b"\xff\xd8"
    task = run_task(client, owner, "gc", {"target": "events", "filters": {"handler_id": handler},
                                          "remove_image_origins": True})
    assert result(client, owner, task).json["result"] == {"deleted": 1, "image_origins_deleted": 1}
    assert client.get(f"/events/{event['event_id']}", headers=owner.auth).status_code == 404
    assert client.get(f"/images/{origin}", headers=owner.auth).status_code == 404


def test_gc_refuses_users_admin_targets_and_empty_filters(client: Any, owner: Account,
                                                          account_factory: Any) -> None:
    from app.errors import ERRORS

    other = account_factory()
    foreign = client.post("/lists", json={}, headers=other.auth).json["list_id"]
    for content, status, code in (
            ({"target": "faces", "filters": {"list_id": foreign}}, 404, ERRORS["list_not_found"].code),
            ({"target": "descriptors", "filters": {"descriptor_version": fmt.DESCRIPTOR_VERSION}}, 403, 70008),
            ({"target": "faces", "filters": {"account_id": other.account_id}}, 403, 70008),
            ({"target": "faces", "filters": {}}, 400, 10005),
            ({"target": "events"}, 400, 10005),
            ({"target": "faces", "filters": {"handler_id": str(uuid.uuid4())}}, 400, 10005),
            ({"target": "faces", "filters": {"create_time__lt": "now"}, "remove_image_origins": True}, 400, 10005)):
        r = client.post("/tasks/gc", json={"content": content}, headers=owner.auth)
        assert (r.status_code, r.json["error_code"]) == (status, code), (content, r.json)


def test_gc_admin_deletes_a_descriptor_version_of_the_named_account(client: Any, owner: Account,
                                                                     account_factory: Any) -> None:
    from tests.conftest import first_admin

    other_version = next(v for v in fmt.DESCRIPTOR_LENGTHS if v != fmt.DESCRIPTOR_VERSION)
    user, bystander = account_factory(), account_factory()
    old = fmt.pack(np.ones(fmt.DESCRIPTOR_LENGTHS[other_version], dtype="<f4") / 16, other_version)
    body = {"descriptors": [{"descriptor": base64.b64encode(old).decode()}]}
    mine = client.post("/faces", json=body, headers=user.auth).json["face_id"]
    theirs = client.post("/faces", json=body, headers=bystander.auth).json["face_id"]
    task = run_task(client, first_admin(), "gc", {"target": "descriptors", "filters": {
        "descriptor_version": other_version, "account_id": user.account_id}})
    assert result(client, first_admin(), task).json["result"] == {"deleted": 1}
    assert client.get(f"/faces/{mine}", headers=user.auth).json["descriptor_versions"] == []
    assert client.get(f"/faces/{theirs}", headers=bystander.auth).json["descriptor_versions"] == [other_version]


def test_gc_general_events_by_end_time(client: Any, account: Account, celery_worker: Any) -> None:
    from app.db import session_scope
    from app.events import service as events
    from app.events.models import GeneralEvent
    from app.scope import Scope

    old, new = datetime(2020, 1, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)
    with session_scope() as session:
        made = {when: events.save_general_event(session, Scope.of(account.account_id), {
            "event_type": "door", "create_time": when, "end_time": when, "content": {"n": n}})
            for n, when in enumerate((old, old + timedelta(hours=1), new))}
    task = run_task(client, account, "gc", {"target": "general_events", "filters": {"end_time__lt": "now-1d"}})
    assert result(client, account, task).json["result"] == {"deleted": 2}
    with session_scope() as session:
        left = session.scalars(select(GeneralEvent.event_id)
                               .where(GeneralEvent.account_id == uuid.UUID(account.account_id))).all()
    assert left == [made[new]]


# ---- linker -------------------------------------------------------------------------------------------
def test_linker_attaches_exactly_the_filtered_faces_once(client: Any, owner: Account,
                                                         photos: list[dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex
    chosen = sorted(new_face(client, owner, photos[n % 2], f"{tag}-in", sample=False) for n in range(3))
    new_face(client, owner, photos[0], f"{tag}-out", sample=False)
    r = client.post("/tasks/linker", json={"content": {"objects_type": "faces", "filters": {"user_data": f"{tag}-in"},
                                                       "list": {"create_list": 1, "attributes": {"user_data": tag}}}},
                    headers=owner.auth)
    assert r.status_code == 201, r.json
    task = wait_status(client, owner.auth, r.json["task_id"], (3, 5))
    assert task["status"] == 5
    assert task["content"]["filters"]["create_time__lt"]  # the creation time, stored
    later = new_face(client, owner, photos[1], f"{tag}-in", sample=False)  # after the task: not linked
    linked = result(client, owner, task).json["result"]
    assert linked["faces"] == chosen and linked["faces_count"] == 3
    the_list = client.get(f"/lists/{linked['list_id']}", headers=owner.auth).json
    assert the_list["user_data"] == tag and the_list["faces_count"] == 3
    assert face_ids(client, owner, list_id=linked["list_id"]) == chosen

    before = change_count()
    partial, stored = run_part_again(task["task_id"], 0)
    assert partial == stored == {"faces": chosen}
    assert len(split_again(task["task_id"])) == 1
    assert client.get("/lists", query_string={"user_data": tag}, headers=owner.auth).json["lists"] == [the_list]
    assert face_ids(client, owner, list_id=linked["list_id"]) == chosen and later not in chosen
    assert change_count() == before


def test_linker_makes_faces_of_events_once(client: Any, owner: Account, photos: list[dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex
    now = datetime.now(timezone.utc)
    sample = new_sample(client, owner, photos[0]["sample"])
    with_all = new_event(owner, tag, when=now, sample_id=sample, photo=photos[0])
    bare = new_event(owner, tag, when=now)
    list_id = client.post("/lists", json={"user_data": tag}, headers=owner.auth).json["list_id"]
    task = run_task(client, owner, "linker", {"objects_type": "events", "filters": {"user_data": tag},
                                              "list": {"list_id": list_id}})
    made = result(client, owner, task).json["result"]["faces"]
    assert len(made) == 2 and face_ids(client, owner, list_id=list_id) == sorted(made)
    views = {v["event_id"]: v for v in (client.get(f"/faces/{f}", headers=owner.auth).json for f in made)}
    assert set(views) == {with_all, bare}
    assert views[with_all]["sample_ids"] == [sample] and views[with_all]["user_data"] == tag
    assert views[with_all]["descriptor_versions"] == [fmt.DESCRIPTOR_VERSION]
    assert views[with_all]["basic_attributes"] == {"age": 40.0, "gender": 0.9}
    assert views[bare]["descriptor_versions"] == [] and views[bare]["sample_ids"] == []
    r = client.get(f"/faces/{views[with_all]['face_id']}/descriptors", headers=owner.auth)
    np.testing.assert_allclose(fmt.unpack(base64.b64decode(r.json["descriptors"][0]["descriptor"]))[1],
                               vector(photos[0]), atol=1e-6)

    before = change_count()
    partial, stored = run_part_again(task["task_id"], 0)
    assert partial == stored
    assert sorted(face_ids(client, owner, user_data=tag)) == sorted(made)  # no second faces
    assert change_count() == before


def test_linker_refuses_a_foreign_list_and_two_lists(client: Any, owner: Account, account_factory: Any) -> None:
    foreign = client.post("/lists", json={}, headers=account_factory().auth).json["list_id"]
    for target, status in (({"list_id": foreign}, 404), ({"list_id": foreign, "create_list": 1}, 400), ({}, 400),
                           ({"list_id": foreign, "attributes": {"user_data": "x"}}, 400)):
        r = client.post("/tasks/linker", json={"content": {"objects_type": "faces", "list": target}},
                        headers=owner.auth)
        assert r.status_code == status, (target, r.json)


# ---- additional extraction ----------------------------------------------------------------------------
def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return fmt.similarity(float(np.linalg.norm(a - b)))


def face_vector(client: Any, account: Account, face_id: str) -> np.ndarray:
    r = client.get(f"/faces/{face_id}/descriptors", headers=account.auth)
    assert r.status_code == 200, r.json
    [stored] = r.json["descriptors"]
    assert stored["version"] == fmt.DESCRIPTOR_VERSION
    return fmt.unpack(base64.b64decode(stored["descriptor"]))[1]


def test_additional_extract_recreates_a_descriptor_from_the_sample(client: Any, owner: Account,
                                                                    photos: list[dict[str, Any]]) -> None:
    from app.db import session_scope
    from app.faces.models import ChangeLog

    tag = uuid.uuid4().hex
    face = new_face(client, owner, photos[0], tag)
    assert client.delete(f"/faces/{face}/descriptors", headers=owner.auth).status_code == 204
    bare = new_face(client, owner, None, tag)
    gone = new_face(client, owner, photos[1], tag)  # its sample deleted, then its descriptor
    assert client.delete(f"/faces/{gone}/descriptors", headers=owner.auth).status_code == 204
    gone_sample = client.get(f"/faces/{gone}", headers=owner.auth).json["sample_ids"][0]
    assert client.delete(f"/samples/faces/{gone_sample}", headers=owner.auth).status_code == 204
    whole = new_face(client, owner, photos[1], tag)  # has its descriptor: not touched
    task = run_task(client, owner, "additional_extract", {"objects_type": "faces", "filters": {"user_data": tag},
                                                          "extraction_target": "face_descriptor"})
    r = result(client, owner, task).json
    assert r["result"] == {"extracted": 1, "skipped": 2}
    assert sorted((e["error_code"], e["additional_info"]) for e in r["errors"]) == sorted([(70015, bare),
                                                                                          (70015, gone)])
    assert client.get(f"/faces/{gone}", headers=owner.auth).json["descriptor_versions"] == []
    again = face_vector(client, owner, face)
    # the sample is the photo's aligned face (as JPEG): the same person, another one's far
    assert similarity(again, vector(photos[0])) > 0.9 and similarity(again, vector(photos[1])) < 0.5
    np.testing.assert_allclose(face_vector(client, owner, whole), vector(photos[1]), atol=1e-6)
    with session_scope() as session:  # the matcher's feed learns the new descriptor
        kinds = session.scalars(select(ChangeLog.kind).where(ChangeLog.face_id == uuid.UUID(face))
                                .order_by(ChangeLog.seq)).all()
    assert kinds[-1] == "descriptor_added"


def test_additional_extract_of_events(client: Any, owner: Account,
                                                       photos: list[dict[str, Any]]) -> None:
    from app.db import session_scope
    from app.events.models import Event, EventDescriptor

    tag = uuid.uuid4().hex
    now = datetime.now(timezone.utc)
    event = new_event(owner, tag, when=now, sample_id=new_sample(client, owner, photos[0]["sample"]))
    with session_scope() as session:  # as a handler that did not estimate them would have saved it
        session.get(Event, uuid.UUID(event)).attributes = {"quality": 0.8}
    task = run_task(client, owner, "additional_extract", {"objects_type": "events", "filters": {"user_data": tag},
                                                          "extraction_target": "basic_attributes"})
    assert result(client, owner, task).json["result"] == {"extracted": 1, "skipped": 0}
    with session_scope() as session:
        attributes = session.get(Event, uuid.UUID(event)).attributes
    assert attributes["quality"] == 0.8
    assert attributes["basic_attributes"]["gender_label"] == "male" and 20 < attributes["basic_attributes"]["age"] < 90

    task = run_task(client, owner, "additional_extract", {"objects_type": "events", "filters": {"user_data": tag},
                                                          "extraction_target": "face_descriptor"})
    assert result(client, owner, task).json["result"] == {"extracted": 1, "skipped": 0}
    with session_scope() as session:
        [(version, data)] = session.execute(select(EventDescriptor.version, EventDescriptor.descriptor)
                                            .where(EventDescriptor.event_id == uuid.UUID(event))).all()
    assert version == fmt.DESCRIPTOR_VERSION
    assert similarity(np.frombuffer(data, dtype="<f4"), vector(photos[0])) > 0.9
