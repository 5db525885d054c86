"""Events and general events: atomic saving with the outbox, filters (meta, geo, time, ids) through
the one compiler, clear refusals, statistics, isolation and pages; on PostgreSQL and on SQLite."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from app.db import session_scope
from app.events import service
from app.events.models import Event, Outbox
from app.scope import Scope
from tests.conftest import bearer

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)  # a Monday


def _save(account, events: list[dict]) -> list[uuid.UUID]:
    with session_scope() as session:
        return service.save_events(session, Scope.of(account.account_id), events)


def _events(client, account, **query) -> list[dict]:
    r = client.get("/events", query_string=query, headers=account.auth)
    assert r.status_code == 200, r.json
    return r.json["events"]


def _refused(client, account, **query) -> str:
    r = client.get("/events", query_string=query, headers=account.auth)
    assert r.status_code == 400, r.json
    assert r.json["error_code"] in (60001, 10005), r.json
    return r.json["detail"]


def _counts(account_id: str) -> tuple[int, int]:
    with session_scope() as session:
        owner = uuid.UUID(account_id)
        events = session.scalar(select(func.count()).select_from(Event.__table__)
                                .where(Event.__table__.c.account_id == owner))
        outbox = session.scalar(select(func.count()).select_from(Outbox).where(Outbox.account_id == owner))
        return events, outbox


@pytest.fixture()
def sample(account):
    """Five events of one account with meta, attributes, geo and matches spread over two days."""
    handler = uuid.uuid4()
    events = [
        {"create_time": T0, "source": "door", "handler_id": handler, "top_similarity": 0.95,
         "meta": {"user_info": {"temperature": 36.6, "name": "ann", "badge": 7}}, "longitude": 37.61, "latitude": 55.75,
         "attributes": {"age": 31, "gender": 0}, "tags": ["staff"], "city": "Moscow"},
        {"create_time": T0 + timedelta(hours=1), "source": "door", "handler_id": handler, "top_similarity": 0.5,
         "meta": {"user_info": {"temperature": 38.1, "name": "bob"}}, "longitude": 37.62, "latitude": 55.76,
         "attributes": {"age": 45, "gender": 1}},
        {"create_time": T0 + timedelta(hours=2), "source": "gate", "top_similarity": 0.7,
         "meta": {"user_info": {"temperature": "hot", "name": "Anna"}}, "longitude": 30.3, "latitude": 59.9},
        {"create_time": T0 + timedelta(days=1), "source": "gate", "meta": {"other": 1}},
        {"create_time": T0 + timedelta(days=1, hours=3), "source": "yard", "external_id": "ext-5"},
    ]
    ids = _save(account, events)
    return {"ids": ids, "handler": handler}


def _ids(found: list[dict]) -> list[str]:
    return [e["event_id"] for e in found]


def test_saved_events_read_back_newest_first_with_outbox(client, account, sample):
    ids = [str(i) for i in sample["ids"]]
    assert _ids(_events(client, account)) == ids[::-1]
    assert _counts(account.account_id) == (5, 5)
    got = client.get(f"/events/{ids[0]}", headers=account.auth).json
    assert got["meta"]["user_info"]["name"] == "ann" and got["tags"] == ["staff"]
    assert got["location"] == {"city": "Moscow", "area": None, "district": None, "street": None, "house_number": None,
                               "geo_position": {"longitude": 37.61, "latitude": 55.75}}
    assert got["create_time"].startswith("2026-11-02T10:00:00") and got["end_time"] == got["create_time"]


def test_outbox_seq_grows_in_save_order(account, account_factory):
    other = account_factory()
    _save(account, [{"source": "a"}, {"source": "b"}])
    _save(other, [{"source": "c"}])
    with session_scope() as session:
        rows = list(session.execute(select(Outbox.seq, Outbox.account_id).order_by(Outbox.seq)))[-3:]
    assert [str(a) for _, a in rows] == [account.account_id] * 2 + [other.account_id]
    assert rows[0][0] < rows[1][0] < rows[2][0]


def test_a_bad_row_mid_batch_saves_nothing(account):
    taken = _save(account, [{"source": "first"}])[0]
    for bad in ({"event_id": taken}, {"create_time": datetime(2026, 1, 1)}, {"no_such_field": 1}):
        with pytest.raises(Exception):
            _save(account, [{"source": "ok-1"}, bad, {"source": "ok-2"}])
        assert _counts(account.account_id) == (1, 1), bad


def test_id_time_and_column_filters(client, account, sample):
    ids = [str(i) for i in sample["ids"]]
    assert _ids(_events(client, account, event_ids=",".join(ids[:2]))) == ids[1::-1]
    assert _ids(_events(client, account, handler_ids=str(sample["handler"]))) == ids[1::-1]
    assert _ids(_events(client, account, sources="gate,yard")) == ids[:1:-1]
    day2 = (T0 + timedelta(days=1)).isoformat()
    assert _ids(_events(client, account, create_time__gte=day2)) == ids[:2:-1]
    assert _ids(_events(client, account, create_time__lt=day2, create_time__gte=(T0 + timedelta(hours=1)).isoformat())) \
        == [ids[2], ids[1]]
    assert _ids(_events(client, account, top_similarity__gte=0.6, top_similarity__lte=0.9)) == [ids[2]]
    assert _ids(_events(client, account, external_ids="ext-5", city="Moscow")) == []
    assert _ids(_events(client, account, city="Moscow")) == [ids[0]]


def test_meta_filters(client, account, sample):
    ids = [str(i) for i in sample["ids"]]

    def meta(name: str, value) -> list[str]:
        return _ids(_events(client, account, **{name: value}))

    assert meta("meta.user_info.name", "ann") == [ids[0]]
    assert meta("meta.user_info.name__eq:string", "ann") == [ids[0]]
    assert meta("meta.user_info.temperature__gte:numeric", "37") == [ids[1]]
    assert meta("meta.user_info.temperature__lt:numeric", "37") == [ids[0]]  # "hot" is not a number
    assert meta("meta.user_info.temperature__eq:numeric", "36.6") == [ids[0]]
    assert meta("meta.user_info.badge__eq:integer", "7") == [ids[0]]
    assert meta("meta.user_info.badge__gt:integer", "6") == [ids[0]]
    assert meta("meta.user_info.name__in:string", "bob,Anna") == [ids[2], ids[1]]
    assert meta("meta.user_info.name__nin:string", "bob,Anna") == [ids[4], ids[3], ids[0]]
    assert meta("meta.user_info.name__neq", "ann") == [ids[4], ids[3], ids[2], ids[1]]
    assert meta("meta.user_info.name__like", "An%") == [ids[2]]  # case-sensitive on both databases
    assert meta("meta.user_info.name__like", "_nn") == [ids[0]]
    assert meta("meta.user_info.name__nlike", "%n%") == [ids[4], ids[3], ids[1]]
    assert meta("meta.other__eq:integer", "1") == [ids[3]]
    assert meta("meta.other", "1") == []  # a number is not the string "1"
    assert meta("attributes.age__gte:integer", "40") == [ids[1]]
    both = {"meta.user_info.temperature__gte:numeric": "36", "attributes.gender__eq:integer": "1"}
    assert _ids(_events(client, account, **both)) == [ids[1]]


@pytest.mark.parametrize("name, value, words", [
    ("meta.user_info.name__about", "x", "unknown operator 'about'"),
    ("meta.user_info.name__eq:float", "x", "unknown type 'float'"),
    ("meta.user_info.name__like:integer", "1", "compares strings only"),
    ("meta.user info.name", "x", "bad field name"),
    ("meta.a__b.c", "x", "unknown operator 'b.c'"),
    ("meta.a__b__eq", "x", "bad field name"),
    ("meta.", "x", "bad field name"),
    ("meta.user_info.badge__eq:integer", "7.5", "not an integer"),
    ("meta.user_info.badge__gt:numeric", "many", "is not numeric"),
])
def test_meta_filter_refusals_name_the_filter(client, account, name, value, words):
    detail = _refused(client, account, **{name: value})
    assert name in detail and words in detail


def test_unknown_filters_are_refused(client, account):
    r = client.get("/events", query_string={"metadata.x": "1"}, headers=account.auth)
    assert r.status_code == 400 and "metadata.x" in r.json["detail"]
    r = client.get("/general_events", query_string={"meta.x": "1"}, headers=account.auth)
    assert r.status_code == 400 and "meta.x" in r.json["detail"]


def test_geo_filter(client, account, sample, settings_override):
    ids = [str(i) for i in sample["ids"]]
    moscow = {"origin_longitude": 37.615, "origin_latitude": 55.755}
    assert _ids(_events(client, account, **moscow)) == [ids[1], ids[0]]  # default delta 0.01
    settings_override(events_geo_delta_default=0.001)
    assert _ids(_events(client, account, **moscow)) == []
    assert _ids(_events(client, account, **moscow, longitude_delta=8, latitude_delta=5)) == [ids[2], ids[1], ids[0]]
    assert "go together" in _refused(client, account, origin_longitude=37.6)
    assert "go together" in _refused(client, account, longitude_delta=1)
    assert "180 degrees" in _refused(client, account, origin_longitude=0, origin_latitude=0, longitude_delta=91)
    assert "date line" in _refused(client, account, origin_longitude=179.5, origin_latitude=0, longitude_delta=1)
    assert "pole" in _refused(client, account, origin_longitude=0, origin_latitude=89.5, latitude_delta=1)


def test_isolation_and_advanced_users(client, account, account_factory, sample):
    other = account_factory()
    assert _events(client, other) == []
    eid = sample["ids"][0]
    r = client.get(f"/events/{eid}", headers=other.auth)
    assert r.status_code == 404 and r.json["error_code"] == 60002
    r = client.post("/events/stats", json={}, headers=other.auth)
    assert r.json["results"] == [{"group": {}, "value": 0}]
    adv = account_factory("advanced_user")
    assert len(_events(client, adv, account_id=account.account_id)) == 5
    token = account.token({"event": ["view"]})
    assert len(client.get("/events", headers=bearer(token)).json["events"]) == 5
    token = account.token({"face": ["view"]})
    assert client.get("/events", headers=bearer(token)).status_code == 403


def test_pagination(client, account):
    ids = _save(account, [{"create_time": T0 + timedelta(minutes=n)} for n in range(7)])
    pages = [_ids(_events(client, account, page=p, page_size=3)) for p in (1, 2, 3, 4)]
    assert pages == [[str(i) for i in ids[6:3:-1]], [str(i) for i in ids[3:0:-1]], [str(ids[0])], []]


def _stats(client, account, path="/events/stats", status=200, **body):
    r = client.post(path, json=body, headers=account.auth)
    assert r.status_code == status, r.json
    return r.json["results"] if status == 200 else r.json


def test_stats(client, account, sample):
    assert _stats(client, account) == [{"group": {}, "value": 5}]
    assert _stats(client, account, filters={"sources": "door,gate"}, aggregator="avg", target="top_similarity") \
        == [{"group": {}, "value": pytest.approx(0.7166666, abs=1e-6)}]
    assert _stats(client, account, aggregator="max", target="meta.user_info.temperature")[0]["value"] \
        == pytest.approx(38.1)
    by_source = _stats(client, account, group_by=["source"])
    assert by_source == [{"group": {"source": s}, "value": n} for s, n in (("door", 2), ("gate", 2), ("yard", 1))]
    by_day = _stats(client, account, frequency="day", filters={"meta.user_info.name__neq": "bob"})
    assert by_day == [{"group": {"time": "2026-11-02T00:00:00+00:00"}, "value": 2},
                      {"group": {"time": "2026-11-03T00:00:00+00:00"}, "value": 2}]
    by_week = _stats(client, account, frequency="week")
    assert by_week == [{"group": {"time": "2026-11-02T00:00:00+00:00"}, "value": 5}]
    by_hours = _stats(client, account, period=7200, group_by=["attributes.gender:integer"],
                      filters={"create_time__lt": (T0 + timedelta(days=1)).isoformat()})
    assert by_hours == [{"group": {"attributes.gender:integer": 0, "time": "2026-11-02T10:00:00+00:00"}, "value": 1},
                        {"group": {"attributes.gender:integer": 1, "time": "2026-11-02T10:00:00+00:00"}, "value": 1},
                        {"group": {"attributes.gender:integer": None, "time": "2026-11-02T12:00:00+00:00"}, "value": 1}]
    assert _stats(client, account, group_by=["handler_id"], filters={"handler_ids": str(sample["handler"])}) \
        == [{"group": {"handler_id": str(sample["handler"])}, "value": 2}]
    assert "target" in _stats(client, account, status=400, aggregator="avg")["detail"]
    assert "group_by" in _stats(client, account, status=400, group_by=["color"])["detail"]
    assert "nope" in _stats(client, account, status=400, filters={"nope": 1})["detail"]
    assert "meta.x__zz" in _stats(client, account, status=400, filters={"meta.x__zz": 1})["detail"]
    _stats(client, account, status=400, frequency="day", period=60)


def test_general_events(client, account, account_factory):
    body = {"event_type": "plate", "create_time": T0.isoformat(), "end_time": (T0 + timedelta(seconds=5)).isoformat(),
            "track_id": "t-1", "location": {"city": "Riga", "geo_position": {"longitude": 24.1, "latitude": 56.9}},
            "content": {"plate": {"number": "AB123", "confidence": 0.93}, "lane": 2}}
    r = client.post("/general_events", json=body, headers=account.auth)
    assert r.status_code == 201, r.json
    first = r.json["event_id"]
    later = (T0 + timedelta(minutes=1)).isoformat()
    second = client.post("/general_events", json={**body, "event_type": "crowd", "content": {"people": 40},
                                                  "create_time": later, "end_time": later},
                         headers=account.auth).json["event_id"]
    listed = client.get("/general_events", headers=account.auth).json["general_events"]
    assert [e["event_id"] for e in listed] == [second, first]
    got = client.get("/general_events", query_string={"content.plate.number": "AB123"}, headers=account.auth).json
    assert [e["event_id"] for e in got["general_events"]] == [first]
    assert got["general_events"][0]["location"]["geo_position"] == {"longitude": 24.1, "latitude": 56.9}
    got = client.get("/general_events", query_string={"content.plate.confidence__gt:numeric": "0.9",
                                                      "event_types": "plate"}, headers=account.auth).json
    assert [e["event_id"] for e in got["general_events"]] == [first]
    got = client.get("/general_events", query_string={"origin_longitude": 24.1, "origin_latitude": 56.9,
                                                      "content.people__gte:integer": 10}, headers=account.auth).json
    assert [e["event_id"] for e in got["general_events"]] == [second]
    stats = client.post("/general_events/stats", json={"group_by": ["event_type"]}, headers=account.auth).json
    assert stats["results"] == [{"group": {"event_type": "crowd"}, "value": 1},
                                {"group": {"event_type": "plate"}, "value": 1}]
    stats = client.post("/general_events/stats", json={"aggregator": "avg", "target": "content.lane:integer"},
                        headers=account.auth).json
    assert stats["results"] == [{"group": {}, "value": 2}]
    other = account_factory()
    assert client.get("/general_events", headers=other.auth).json["general_events"] == []
    r = client.post("/general_events", json={**body, "content": {"blob": "x" * (2 * 1024 * 1024)}},
                    headers=account.auth)
    assert r.status_code == 400 and r.json["error_code"] == 60003
    token = account.token({"general_event": ["view"]})
    assert client.post("/general_events", json=body, headers=bearer(token)).status_code == 403
    assert client.get("/general_events", headers=bearer(token)).status_code == 200


def test_hourly_rollup_answers_as_the_events_do(account):
    """Statistics the roll-up answers equal those counted over the events, on both databases, for
    counts and the best similarity, by handler, source and calendar or whole-hour buckets; and a
    rebuild from the events gives the same roll-up as the saves wrote."""
    import dataclasses
    import random

    from app.events.models import EventStatsHourly

    rng = random.Random(7)
    handlers = [uuid.uuid4(), uuid.uuid4(), None]
    sources = ["gate", "lobby", None]
    events = [{"handler_id": rng.choice(handlers), "source": rng.choice(sources),
               "top_similarity": rng.choice([None, round(rng.random(), 3)]),
               "create_time": T0 + timedelta(minutes=rng.randrange(0, 9 * 24 * 60))} for _ in range(400)]
    for n in range(0, len(events), 50):  # several saves touch the same hours
        _save(account, events[n:n + 50])
    scope = Scope.of(account.account_id)
    direct = dataclasses.replace(service.EVENTS)  # the same resource, not recognised as rolled up
    bodies = [
        {"aggregator": "count"},
        {"aggregator": "count", "group_by": ["handler_id"], "frequency": "day"},
        {"aggregator": "avg", "target": "top_similarity", "group_by": ["handler_id", "source"], "frequency": "week"},
        {"aggregator": "min", "target": "top_similarity", "group_by": ["source"], "period": 7200},
        {"aggregator": "max", "target": "top_similarity", "frequency": "hour",
         "filters": {"handler_ids": [handlers[0]], "create_time__gte": T0 + timedelta(days=1),
                     "create_time__lt": T0 + timedelta(days=3)}},
        {"aggregator": "count", "group_by": ["source"], "filters": {"sources": ["gate", "lobby"]}},
    ]
    with session_scope() as session:
        for body in bodies:
            assert service._rolled_up(body), body
            rolled = service.stats(session, service.EVENTS, scope, body)
            counted = service.stats(session, direct, scope, body)
            assert len(rolled) == len(counted) > 0, body
            for a, b in zip(rolled, counted):
                assert a["group"] == b["group"], body
                assert (a["value"] is None) == (b["value"] is None), body
                assert a["value"] is None or abs(a["value"] - b["value"]) < 1e-9, body
        assert not service._rolled_up({"aggregator": "count", "filters": {"create_time__gte": T0 + timedelta(minutes=5)}})
        assert not service._rolled_up({"aggregator": "count", "group_by": ["track_id"]})

        def rollup() -> list[tuple]:
            owner = uuid.UUID(str(account.account_id))
            rows = session.execute(select(EventStatsHourly).where(EventStatsHourly.account_id == owner)
                                   .order_by(EventStatsHourly.create_time, EventStatsHourly.handler_id,
                                             EventStatsHourly.source)).scalars()
            return [(r.create_time, r.handler_id, r.source, r.events, r.similarity_count,
                     round(r.similarity_sum, 9), r.similarity_min, r.similarity_max) for r in rows]

        written = rollup()
        assert sum(r[3] for r in written) == len(events)
        service.rebuild_hourly(session)
        assert rollup() == written
