"""Task writes are idempotent and never kept by accident; chains and chords of the dispatch layer.

A message delivered twice (a redelivery after a worker died, a duplicate publish) runs the task
twice: every id it writes is derived from its task id, so the second run overwrites the first
one's samples and temporary attributes instead of adding copies. What a task wrote stays
provisional (it expires) until the API has handed the answer to its caller.
"""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from app import dispatch, settings
from app.errors import APIError
from app.image_store import service as image_store
from app.scope import Scope
from app.sdk import service as sdk
from app.sdk.schemas import SdkArgs
from tests.api.sdk_fixtures import FACES, post, sdk_user  # noqa: F401 - sdk_user is a fixture

GROUP = FACES / "multi" / "dlib_2008_001322.jpg"  # several faces in one photo


def _attribute_keys(redis_client: Any, account_id: str) -> set[str]:
    keys = set()
    for key in redis_client.scan_iter("facegate:attribute:*"):
        if json.loads(redis_client.get(key))["account_id"] == account_id:
            keys.add(key.decode())
    return keys


def _sample_files(account_id: str) -> list[Path]:
    root = settings.current().effective_storage_path
    return [p for p in root.rglob("*.meta.json") if json.loads(p.read_text()).get("account_id") == account_id]


def _run_sdk_task(scope: Scope, refs: list[dict[str, str]], options: dict[str, Any], task_id: str) -> Any:
    sig = dispatch.task("inference.sdk", scope.wire(), refs, options)
    return dispatch.wait(sig.apply_async(task_id=task_id), 120)


def test_the_same_message_twice_writes_nothing_twice(sdk_user, redis_client):
    scope = Scope.of(sdk_user.account_id)
    source = image_store.put(sdk.SOURCE, scope, GROUP.read_bytes(), "image/jpeg", ttl=1)
    refs = [{"image_id": source.id, "filename": GROUP.name}]
    options = SdkArgs().load({"extract_descriptor": "1", "aggregate_attributes": "1"})
    task_id = str(uuid.uuid4())
    samples_before = len(_sample_files(sdk_user.account_id))

    first = _run_sdk_task(scope, refs, options, task_id)
    faces = first["images"][0]["faces"]
    assert len(faces) >= 2
    after_first = (len(_sample_files(sdk_user.account_id)), _attribute_keys(redis_client, sdk_user.account_id))
    second = _run_sdk_task(scope, refs, options, task_id)  # the same message delivered again
    after_second = (len(_sample_files(sdk_user.account_id)), _attribute_keys(redis_client, sdk_user.account_id))

    assert [f["sample_id"] for f in second["images"][0]["faces"]] == [f["sample_id"] for f in faces]
    assert [f["attribute_id"] for f in second["images"][0]["faces"]] == [f["attribute_id"] for f in faces]
    assert second["aggregate"]["attribute_id"] == first["aggregate"]["attribute_id"]
    assert after_second == after_first
    assert after_first[0] == samples_before + len(faces)  # one sample per face
    assert len(after_first[1]) == len(faces) + 1  # one attribute per face, plus the aggregate's
    # Another task (another id) is another request: it writes its own.
    third = _run_sdk_task(scope, refs, options, str(uuid.uuid4()))
    assert {f["sample_id"] for f in third["images"][0]["faces"]}.isdisjoint(f["sample_id"] for f in faces)


def test_samples_are_provisional_until_the_caller_has_the_answer(client, sdk_user):
    scope = Scope.of(sdk_user.account_id)
    sample_kind = image_store.KINDS["face_sample"]
    source = image_store.put(sdk.SOURCE, scope, GROUP.read_bytes(), "image/jpeg", ttl=1)
    answer = _run_sdk_task(scope, [{"image_id": source.id, "filename": "g"}], SdkArgs().load({}), str(uuid.uuid4()))
    orphan = answer["images"][0]["faces"][0]["sample_id"]
    # Nobody got this answer through the API: its samples expire with the request's source images.
    assert image_store.head(sample_kind, scope, orphan).expires_at is not None

    r = post(client, "/sdk", sdk_user, GROUP)
    assert r.status_code == 200, r.json
    kept = r.json["images"][0]["faces"][0]["sample_id"]
    assert image_store.head(sample_kind, scope, kept).expires_at is None  # the samples bucket keeps forever


def test_chain_passes_results_and_stops_at_an_error(celery_worker):
    ping = dispatch.task("system.ping")
    assert dispatch.call(dispatch.chain_of(ping, ping.clone()), 30)["pong"] is True
    missing = dispatch.task("matcher.verify", str(uuid.uuid4()), Scope.of(uuid.uuid4()).wire(),
                            {"references": [], "candidates": []})
    with pytest.raises(APIError) as exc:
        dispatch.call(dispatch.chain_of(missing, ping.clone()), 30)
    assert exc.value.kind == "verifier_not_found"  # the error came out at the end; ping did not hide it


def test_chord_merges_the_parts(celery_worker):
    parts = [dispatch.task("system.ping") for _ in range(3)]
    merged = dispatch.call(dispatch.chord_of(parts, dispatch.task("system.ping")), 30)
    assert merged["pong"] is True


def test_every_task_of_a_chain_expires(celery_worker):
    sig = dispatch.chain_of(dispatch.task("system.ping"), dispatch.task("system.ping"))
    dispatch.wait(dispatch.send(sig, 30), 30)
    assert all(step.options.get("expires") for step in sig.tasks)


def test_a_step_gets_what_came_before_unwrapped():
    """A chain step gets its predecessor's result, a chord's merge the list of its parts' results;
    an error among them comes out instead of the step running."""
    echo = dispatch.reported(lambda value: value)
    error = {"error": {"kind": "face_not_found", "detail": "face 1 not found"}}
    assert echo({"result": 3}) == {"result": 3}
    assert echo([{"result": 1}, {"result": 2}]) == {"result": [1, 2]}
    assert echo([{"result": 1}, error]) == error
    assert echo(error) == error
    assert echo([1, 2]) == {"result": [1, 2]}  # plain arguments pass as they are
