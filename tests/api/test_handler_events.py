"""POST /handlers/{id}/events end to end: real worker and models on the shared photos, real
PostgreSQL (or SQLite) and Redis; the webhook goes to an HTTP server on loopback and the websocket
subscriber talks to the API served on a real socket."""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import simple_websocket
from sqlalchemy import func, select
from werkzeug.serving import make_server

from app.db import session_scope
from app.events.models import Event, Outbox
from app.faces.models import Face
from app.handlers import processing
from app.notifications import service as notifications
from app.scope import Scope
from tests.api.sdk_fixtures import FACES, files, sdk_user  # noqa: F401 - sdk_user is a fixture
from tests.conftest import Account

LFW = FACES / "lfw"
SHARON = sorted((LFW / "Ariel_Sharon").iterdir())
POWELL = sorted((LFW / "Colin_Powell").iterdir())


class Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], Any]] = []
    fail_first = 0

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if Hooks.fail_first > 0:
            Hooks.fail_first -= 1
            self.send_response(503)
        else:
            Hooks.received.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def hook_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hooks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


@pytest.fixture(scope="module")
def served(app: Any) -> Iterator[str]:
    """The API on a real socket (websockets need one), in this process."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture(autouse=True)
def _fresh_relay(sdk_user: Account) -> None:
    notifications.reset_cursor()
    Hooks.received.clear()
    Hooks.fail_first = 0


def _handler(client: Any, account: Account, **policies: Any) -> str:
    r = client.post("/handlers", json={"policies": policies}, headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["handler_id"]


def _events(client: Any, account: Account, handler_id: str, *images: Any, **fields: Any) -> Any:
    form = files(*images)
    form.update({name: json.dumps(value) for name, value in fields.items()})
    return client.post(f"/handlers/{handler_id}/events", data=form, headers=account.auth,
                       content_type="multipart/form-data")


def _until(check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def _enrolled(client: Any, account: Account) -> tuple[str, str]:
    """A list holding Sharon, enrolled through a handler that stores and links faces."""
    list_id = client.post("/lists", json={}, headers=account.auth).json["list_id"]
    enroll = _handler(client, account, extract_policy={"extract_face_descriptor": True},
                      detect_policy={"multiface_policy": "largest"},
                      storage_policy={"face_policy": {"store_face": True,
                                                      "link_to_lists_policy": [{"list_id": list_id}]}})
    r = _events(client, account, enroll, SHARON[0], external_id="sharon")
    assert r.status_code == 201, r.json
    (event,) = r.json["events"]
    face_id = event["face_id"]
    assert face_id and event["external_id"] == "sharon"
    face = client.get(f"/faces/{face_id}", headers=account.auth).json
    assert face["lists"] == [list_id] and face["external_id"] == "sharon" and face["event_id"] == event["event_id"]
    return list_id, face_id


def test_detect_extract_match_store_link_notify(client, sdk_user, hook_url, served):
    list_id, face_id = _enrolled(client, sdk_user)
    watch = _handler(
        client, sdk_user,
        extract_policy={"extract_face_descriptor": True, "extract_basic_attributes": True},
        match_policy=[{"label": "staff", "candidates": {"list_id": list_id}, "threshold": 0.3}],
        conditional_tags_policy=[{"tag": "known", "filters": {"label": "staff", "similarity__gte": 0.6}}],
        storage_policy={"attribute_policy": {"store_attribute": True}},
        callbacks=[{"type": "http", "url": hook_url, "headers": [{"name": "X-Key", "value": "k1"}],
                    "auth": {"login": "hook", "password": "pw"}, "filters": {"similarity__gte": 0.6}},
                   {"type": "luna-ws-notification"}])
    ws = simple_websocket.Client(f"ws://{served}/ws?handler_ids={watch}&similarity__gte=0.6",
                                 headers=sdk_user.auth)
    try:
        r = _events(client, sdk_user, watch, SHARON[1], POWELL[0], source="door-1", tags=["entrance"],
                    meta={"site": {"floor": 2}}, location={"city": "Oslo", "geo_position": {"longitude": 10.75,
                                                                                             "latitude": 59.91}})
        assert r.status_code == 201, r.json
        known, stranger = r.json["events"]
        assert (known["filename"], stranger["filename"]) == (SHARON[1].name, POWELL[0].name)
        assert known["top_candidate_id"] == face_id and known["top_similarity"] >= 0.6
        assert stranger["top_candidate_id"] != face_id or stranger["top_similarity"] < 0.6
        assert known["tags"] == ["entrance", "known"] and stranger["tags"] == ["entrance"]
        face = known["detections"][0]
        assert face["type"] == "face" and face["matches"][0]["label"] == "staff"
        assert face["basic_attributes"]["gender_label"] == "male" and face["attribute_id"]
        assert client.get(f"/attributes/{face['attribute_id']}", headers=sdk_user.auth).status_code == 200
        assert known["meta"] == {"site": {"floor": 2}} and known["location"]["city"] == "Oslo"

        # stored: the same events come back from /events, filtered
        got = client.get("/events", query_string={"handler_ids": watch, "sources": "door-1"},
                         headers=sdk_user.auth).json["events"]
        assert {e["event_id"] for e in got} == {known["event_id"], stranger["event_id"]}
        got = client.get("/events", query_string={"handler_ids": watch, "top_similarity__gte": 0.6,
                                                  "meta.site.floor__eq:integer": 2},
                         headers=sdk_user.auth).json["events"]
        assert [e["event_id"] for e in got] == [known["event_id"]]
        got = client.get("/events", query_string={"handler_ids": watch, "tags": "known,vip"},
                         headers=sdk_user.auth).json["events"]
        assert [e["event_id"] for e in got] == [known["event_id"]]
        assert len(client.get("/events", query_string={"handler_ids": watch, "tags": "entrance"},
                              headers=sdk_user.auth).json["events"]) == 2
        stats = client.post("/events/stats", json={"filters": {"handler_ids": [watch]}, "group_by": ["source"]},
                            headers=sdk_user.auth).json["results"]
        assert stats == [{"group": {"source": "door-1"}, "value": 2}]

        # the webhook: only the event whose filter held, with the callback's headers and auth
        hooks = _until(lambda: Hooks.received)
        time.sleep(0.5)
        assert len(Hooks.received) == 1
        headers, body = hooks[0]
        assert body["event_id"] == known["event_id"] and headers["X-Key"] == "k1"
        assert headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pw").decode()
        assert headers["Luna-Event-Id"] == known["event_id"]

        # the websocket: the subscriber's own filter leaves the stranger out
        message = json.loads(ws.receive(timeout=20))
        assert message["event"]["event_id"] == known["event_id"] and message["seq"] > 0
        assert ws.receive(timeout=1) is None
    finally:
        ws.close()
    counts = client.get("/notifications/deliveries", headers=sdk_user.auth).json
    assert counts["delivered"] >= 1 and counts["failed"] == 0


def test_other_accounts_see_nothing(client, sdk_user, served, account):
    handler = _handler(client, sdk_user, callbacks=[{"type": "luna-ws-notification"}])
    assert _events(client, account, handler, SHARON[2]).json["error_code"] == 50001
    ws = simple_websocket.Client(f"ws://{served}/ws", headers=account.auth)
    try:
        r = _events(client, sdk_user, handler, SHARON[2])
        assert r.status_code == 201
        event_id = r.json["events"][0]["event_id"]
        assert client.get(f"/events/{event_id}", headers=account.auth).status_code == 404
        assert client.get("/events", query_string={"handler_ids": handler}, headers=account.auth).json["events"] == []
        assert ws.receive(timeout=2) is None
    finally:
        ws.close()


def test_webhook_retried_with_backoff(client, sdk_user, hook_url, settings_override):
    settings_override(callback_backoff_s=0.2)
    Hooks.fail_first = 2
    handler = _handler(client, sdk_user, callbacks=[{"type": "http", "url": hook_url}])
    event_id = _events(client, sdk_user, handler, SHARON[3]).json["events"][0]["event_id"]
    hooks = _until(lambda: Hooks.received)
    assert [body["event_id"] for _, body in hooks] == [event_id]
    counts = client.get("/notifications/deliveries", headers=sdk_user.auth).json
    assert counts["failed_attempts"] >= 2


def test_a_failure_mid_save_leaves_nothing(client, sdk_user, monkeypatch):
    list_id = client.post("/lists", json={}, headers=sdk_user.auth).json["list_id"]
    handler = _handler(client, sdk_user, extract_policy={"extract_face_descriptor": True},
                       storage_policy={"face_policy": {"store_face": True,
                                                       "link_to_lists_policy": [{"list_id": list_id}]}})

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("disk full")

    # The faces and events are inserted when the outbox write fails, in the same transaction.
    monkeypatch.setattr("app.events.service.record_outbox", broken)
    before = _counts(sdk_user)
    r = _events(client, sdk_user, handler, SHARON[4], POWELL[1])
    assert r.status_code == 500 and r.json["error_code"] == 13002
    assert _counts(sdk_user) == before
    assert client.get("/faces", query_string={"list_id": list_id}, headers=sdk_user.auth).json["faces"] == []


def _counts(account: Account) -> tuple[int, int, int]:
    owner = uuid.UUID(str(account.account_id))
    with session_scope() as session:
        return (session.scalar(select(func.count()).select_from(Event).where(Event.account_id == owner)),
                session.scalar(select(func.count()).select_from(Face).where(Face.account_id == owner)),
                session.scalar(select(func.count()).select_from(Outbox).where(Outbox.account_id == owner)))


def test_a_repeated_save_step_writes_once(client, sdk_user, monkeypatch):
    """A redelivered save step (its worker died before acknowledging) finds its rows and writes none."""
    calls: list[tuple[Any, ...]] = []
    original = processing.save

    def recording(*args: Any) -> Any:
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(processing, "save", recording)
    handler = _handler(client, sdk_user, extract_policy={"extract_face_descriptor": True},
                       storage_policy={"face_policy": {"store_face": True}})
    answered = _events(client, sdk_user, handler, SHARON[5]).json["events"]
    before = _counts(sdk_user)
    assert before[0] and before[1]
    (args,) = calls
    assert original(*args) == answered
    assert _counts(sdk_user) == before


def test_wait_saving_off_answers_first_and_saves_behind(client, sdk_user):
    handler = _handler(client, sdk_user, storage_policy={"event_policy": {"wait_saving": False}})
    r = _events(client, sdk_user, handler, SHARON[6])
    assert r.status_code == 201, r.json
    event_id = r.json["events"][0]["event_id"]
    assert _until(lambda: client.get(f"/events/{event_id}", headers=sdk_user.auth).status_code == 200)


def test_aggregate_dynamic_and_single_face_policies(client, sdk_user):
    dynamic = client.post("/handlers", json={"handler_type": "dynamic"}, headers=sdk_user.auth).json["handler_id"]
    r = _events(client, sdk_user, dynamic, SHARON[7])
    assert r.status_code == 400 and r.json["error_code"] == 50002
    policies = {"extract_policy": {"extract_face_descriptor": True, "extract_basic_attributes": True}}
    r = _events(client, sdk_user, dynamic, SHARON[7], SHARON[8], policies=policies, aggregate_attributes=True)
    assert r.status_code == 201, r.json
    (event,) = r.json["events"]
    assert event["filename"] == "aggregate" and len(event["detections"][0]["aggregated_from"]) == 2
    assert event["attributes"]["basic_attributes"]["gender_label"] == "male"

    group = sorted((FACES / "multi").glob("*.jpg"))[0]
    single = _handler(client, sdk_user, detect_policy={"multiface_policy": "single"})
    r = _events(client, sdk_user, single, group)
    assert r.status_code == 400 and r.json["error_code"] == 50003
    largest = _handler(client, sdk_user, detect_policy={"multiface_policy": "largest"})
    assert len(_events(client, sdk_user, largest, group).json["events"][0]["detections"]) == 1


def test_json_body_with_per_image_fields(client, sdk_user):
    handler = _handler(client, sdk_user, storage_policy={"image_origin_policy": {"store_image": True, "ttl": 2}})
    body = {"images": [{"image": base64.b64encode(SHARON[9].read_bytes()).decode(), "filename": "a.jpg",
                        "meta": {"n": 1}, "external_id": "x1"}], "meta": {"n": 0, "m": 2}, "user_data": "u"}
    r = client.post(f"/handlers/{handler}/events", json=body, headers=sdk_user.auth)
    assert r.status_code == 201, r.json
    (event,) = r.json["events"]
    assert (event["filename"], event["external_id"], event["meta"], event["user_data"]) == (
        "a.jpg", "x1", {"n": 1, "m": 2}, "u")
    sample_id = event["detections"][0]["sample_id"]
    assert client.get(f"/samples/faces/{sample_id}", headers=sdk_user.auth).status_code == 200
    image = client.get(f"/images/{event['image_origin_id']}", headers=sdk_user.auth)
    assert image.status_code == 200 and image.data[:2] == b"\xff\xd8" and "X-Luna-Expiry-Date" in image.headers


def test_events_read_back_with_their_stored_source_image(client, sdk_user):
    stored = _handler(client, sdk_user, storage_policy={"image_origin_policy": {"store_image": True}})
    plain = _handler(client, sdk_user)
    made = {}
    for handler in (stored, plain):
        r = _events(client, sdk_user, handler, POWELL[0])
        assert r.status_code == 201, r.json
        (made[handler],) = r.json["events"]
    listed = client.get("/events", query_string={"handler_ids": f"{stored},{plain}"}, headers=sdk_user.auth)
    assert listed.status_code == 200, listed.json
    shown = {e["handler_id"]: e["image_origin_id"] for e in listed.json["events"]}
    origin = made[stored]["image_origin_id"]
    assert origin and shown == {stored: origin, plain: None}
    one = client.get(f"/events/{made[stored]['event_id']}", headers=sdk_user.auth).json
    assert one["image_origin_id"] == origin
    assert client.get(f"/images/{origin}", headers=sdk_user.auth).status_code == 200


def test_plain_get_of_ws_is_a_clear_400(client, sdk_user):
    r = client.get("/ws", headers=sdk_user.auth)
    assert r.status_code == 400 and "websocket" in r.json["detail"]


def test_a_slow_subscriber_does_not_hold_up_the_others(sdk_user, settings_override):
    settings_override(ws_queue_max=2)
    account = str(sdk_user.account_id)
    hub = notifications.Hub()
    slow = notifications.Subscriber(Scope.of(account), {})
    fast = notifications.Subscriber(Scope.of(account), {})
    stranger = notifications.Subscriber(Scope.of(uuid.uuid4()), {})
    for s in (slow, fast, stranger):
        hub._subscribers.add(s)
    for seq in range(1, 6):
        hub.dispatch(json.dumps({"seq": seq, "account_id": account, "event": {"event_id": str(seq)}}))
        got, text = fast.queue.get_nowait()  # the fast one drains as it goes
        assert got == json.loads(text)["seq"] == seq
    hub.dispatch(json.dumps({"seq": 3, "account_id": account, "event": {}}))  # a relay's repeat: dropped
    assert fast.queue.empty()
    assert slow.too_slow and slow.queue.qsize() == 2
    assert stranger.queue.empty() and not stranger.too_slow


def test_every_api_process_gets_each_event(client, sdk_user):
    """Two hubs (as in two API processes) on the Redis channel both pass a real event on."""
    account = str(sdk_user.account_id)
    handler = _handler(client, sdk_user, callbacks=[{"type": "luna-ws-notification"}])
    hubs = [notifications.Hub(), notifications.Hub()]
    subscribers = [notifications.Subscriber(Scope.of(account), {"handler_ids": [handler]}) for _ in hubs]
    for hub, subscriber in zip(hubs, subscribers):
        hub.subscribe(subscriber)
    event_id = _events(client, sdk_user, handler, SHARON[6]).json["events"][0]["event_id"]
    for subscriber in subscribers:
        assert json.loads(subscriber.queue.get(timeout=20)[1])["event"]["event_id"] == event_id


def test_events_as_matching_candidates_and_references(client, sdk_user, account):
    list_id, face_id = _enrolled(client, sdk_user)
    handler = _handler(client, sdk_user, extract_policy={"extract_face_descriptor": True},
                       detect_policy={"multiface_policy": "largest"})
    made = _events(client, sdk_user, handler, SHARON[1], POWELL[2], source="gate").json["events"]
    sharon, powell = (e["event_id"] for e in made)

    def match(user: Account, references: list[dict[str, Any]], **candidates: Any) -> Any:
        return client.post("/matcher/faces", headers=user.auth, json={
            "references": references, "candidates": {"source": "events", **candidates}, "limit": 3})

    r = match(sdk_user, [{"type": "face", "id": face_id}], event_filters={"handler_ids": [handler]})
    assert r.status_code == 200, r.json
    (result,) = r.json["results"]
    assert result["matches"][0]["event_id"] == sharon and result["matches"][0]["source"] == "gate"
    assert [m["event_id"] for m in result["matches"]] == [sharon, powell]
    assert result["matches"][0]["similarity"] > result["matches"][1]["similarity"]

    # an event as the reference, against the list's faces and against events by a meta-free filter
    r = client.post("/matcher/faces", headers=sdk_user.auth, json={
        "references": [{"type": "event", "id": sharon}], "candidates": {"filters": {"list_id": list_id}}})
    assert r.status_code == 200, r.json
    assert r.json["results"][0]["matches"][0]["face_id"] == face_id
    r = match(sdk_user, [{"type": "event", "id": powell}], event_filters={"sources": ["gate"]})
    assert r.json["results"][0]["matches"][0]["event_id"] == powell
    assert r.json["results"][0]["matches"][0]["similarity"] > 0.99

    # refusals: the wrong filters for the source, another account's event, a token without event matching
    assert match(sdk_user, [{"type": "face", "id": face_id}], filters={}).status_code == 400
    r = match(account, [{"type": "event", "id": sharon}], event_filters={})
    assert r.status_code == 404 and r.json["error_code"] == 60002
    own = client.post("/lists", json={}, headers=account.auth).json["list_id"]
    r = client.post("/matcher/faces", headers=account.auth, json={
        "references": [{"type": "event", "id": sharon}], "candidates": {"filters": {"list_id": own}}})
    assert r.status_code == 404
    token = sdk_user.token({"face": ["matching"]})
    r = client.post("/matcher/faces", headers={"Authorization": f"Bearer {token}"}, json={
        "references": [{"type": "face", "id": face_id}], "candidates": {"source": "events"}})
    assert r.status_code == 403


def test_stored_face_samples_are_images_too(client, sdk_user, account):
    """A sample (an aligned face stored by /detector or a handler) is one face, not detected again:
    extracted, matched and stored like a photo's face."""
    list_id, face_id = _enrolled(client, sdk_user)
    detected = client.post("/detector", data=files(SHARON[2]), headers=sdk_user.auth,
                           content_type="multipart/form-data").json
    sample_id = detected["images"][0]["faces"][0]["sample_id"]
    handler = _handler(client, sdk_user, extract_policy={"extract_face_descriptor": True},
                       match_policy=[{"label": "staff", "candidates": {"list_id": list_id}}])
    r = client.post(f"/handlers/{handler}/events", json={"images": [{"sample_id": sample_id, "filename": "s"}]},
                    headers=sdk_user.auth)
    assert r.status_code == 201, r.json
    (event,) = r.json["events"]
    (face,) = event["detections"]
    assert face["detection"]["rect"] == {"x": 0.0, "y": 0.0, "width": 150.0, "height": 150.0}
    assert event["top_candidate_id"] == face_id and event["top_similarity"] > 0.8
    r = client.post(f"/handlers/{handler}/events", json={"images": [{"sample_id": sample_id}]},
                    headers=account.auth)
    assert r.status_code == 404  # another account's handler; its own handler cannot read the sample either
    own = _handler(client, account)
    r = client.post(f"/handlers/{own}/events", json={"images": [{"sample_id": sample_id}]}, headers=account.auth)
    assert r.status_code == 404 and r.json["error_code"] == 23002


def test_a_reconnecting_subscriber_gets_what_it_missed(client, sdk_user, served):
    """Events published while nobody listened come first to a subscriber that gives the last seq it
    saw, read from the outbox; then the live ones, none twice."""
    handler = _handler(client, sdk_user, callbacks=[{"type": "luna-ws-notification"}])
    with session_scope() as session:
        head = session.scalar(select(func.max(Outbox.seq))) or 0
    missed = [_events(client, sdk_user, handler, image).json["events"][0]["event_id"] for image in SHARON[3:5]]
    ws = simple_websocket.Client(f"ws://{served}/ws?handler_ids={handler}&since_seq={head}", headers=sdk_user.auth)
    try:
        replayed = [json.loads(ws.receive(timeout=20)) for _ in missed]
        assert [m["event"]["event_id"] for m in replayed] == missed
        assert replayed[0]["seq"] < replayed[1]["seq"]
        live = _events(client, sdk_user, handler, SHARON[5]).json["events"][0]["event_id"]
        assert json.loads(ws.receive(timeout=20))["event"]["event_id"] == live
        assert ws.receive(timeout=2) is None
    finally:
        ws.close()
