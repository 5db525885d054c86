"""Events and general events: saving (all or none, with their outbox rows), filtered pages, statistics.

Handlers call :func:`save_events` with the events of one request; the API saves general events
itself. Reads go through one filter compiler (:mod:`app.filters`) so a filter means the same on
both resources and in both the query string and the ``filters`` of a statistics body.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from sqlalchemy import Integer, cast, extract, func, insert, literal_column, select, text
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.errors import APIError
from app.events.models import Event, EventDescriptor, GeneralEvent, Outbox
from app.faces.models import time_ordered_uuid, utcnow
from app.filters import Filterable, conditions, json_root, json_value
from app.pagination import paginate
from app.scope import Scope, scoped

GENERAL_EVENT_MAX_BYTES = 2 * 1024 * 1024
MAX_GROUPS = 1000
FREQUENCIES = ("hour", "day", "week", "month", "year")
AGGREGATORS = ("count", "min", "max", "avg")
LOCATION = ("city", "area", "district", "street", "house_number")
EVENT_FIELDS = frozenset(c.key for c in Event.__table__.columns) - {"account_id"}
# Arbitrary but fixed, and not the change log's: outbox seqs are drawn in commit order (see record_outbox).
_OUTBOX_LOCK = 0x6576656E74626F78 & 0x7FFFFFFFFFFFFFFF
# SQLite keeps timestamps as text; strftime formats that truncate them as date_trunc does.
_SQLITE_TRUNC = {"hour": ("%Y-%m-%d %H:00:00",), "day": ("%Y-%m-%d 00:00:00",),
                 "week": ("%Y-%m-%d 00:00:00", "weekday 0", "-6 days"), "month": ("%Y-%m-01 00:00:00",),
                 "year": ("%Y-01-01 00:00:00",)}


@dataclass(frozen=True)
class Resource:
    """One filtered resource: its table, what its filters name, what statistics may aggregate and group."""

    model: Any
    filters: Filterable
    targets: Mapping[str, Any] = field(default_factory=dict)
    groups: Mapping[str, Any] = field(default_factory=dict)


def _location(model: Any) -> dict[str, Any]:
    return {name: getattr(model, name) for name in LOCATION}


EVENTS = Resource(
    Event,
    Filterable(
        equal={"user_data": Event.user_data, **_location(Event)},
        any_of={"event_ids": Event.event_id, "handler_ids": Event.handler_id, "sources": Event.source,
                "external_ids": Event.external_id, "track_ids": Event.track_id, "stream_ids": Event.stream_id,
                "face_ids": Event.face_id, "top_candidate_ids": Event.top_candidate_id},
        overlaps={"tags": Event.tags},
        ranges={"create_time": Event.create_time, "end_time": Event.end_time, "top_similarity": Event.top_similarity},
        json={"meta": Event.meta, "attributes": Event.attributes},
        geo=(Event.longitude, Event.latitude)),
    targets={"top_similarity": Event.top_similarity, "longitude": Event.longitude, "latitude": Event.latitude},
    groups={"handler_id": Event.handler_id, "source": Event.source, "track_id": Event.track_id,
            "stream_id": Event.stream_id, "top_candidate_id": Event.top_candidate_id, **_location(Event)},
)
GENERAL_EVENTS = Resource(
    GeneralEvent,
    Filterable(
        equal=_location(GeneralEvent),
        any_of={"event_ids": GeneralEvent.event_id, "event_types": GeneralEvent.event_type,
                "track_ids": GeneralEvent.track_id, "stream_ids": GeneralEvent.stream_id},
        ranges={"create_time": GeneralEvent.create_time, "end_time": GeneralEvent.end_time},
        json={"content": GeneralEvent.content},
        geo=(GeneralEvent.longitude, GeneralEvent.latitude)),
    targets={"longitude": GeneralEvent.longitude, "latitude": GeneralEvent.latitude},
    groups={"event_type": GeneralEvent.event_type, "track_id": GeneralEvent.track_id,
            "stream_id": GeneralEvent.stream_id, **_location(GeneralEvent)},
)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


Notice = tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]  # (the event as sent, its callbacks)


def record_outbox(session: Session, kind: str, account_id: uuid.UUID, event_ids: Sequence[uuid.UUID],
                  notices: Sequence[Notice] | None = None) -> None:
    """One outbox row per event, in the caller's transaction, as its last statement; ``notices``
    (aligned with ``event_ids``) give an event with callbacks its payload and those callbacks.

    The relay tails the outbox by ``seq``, which is only safe if seq order is commit order: on
    PostgreSQL a transaction-scoped advisory lock serialises the writers from drawing seqs to commit
    (SQLite serialises writers anyway), as the change log does for the matcher.
    """
    if not event_ids:
        return
    if _dialect(session) == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _OUTBOX_LOCK})
    now = utcnow()
    given = notices or [(None, ())] * len(event_ids)
    session.execute(insert(Outbox.__table__), [
        {"kind": kind, "account_id": account_id, "event_id": event_id, "time": now,
         "payload": payload if callbacks else None, "callbacks": list(callbacks) or None}
        for event_id, (payload, callbacks) in zip(event_ids, given)])


def save_events(session: Session, scope: Scope, events: Sequence[Mapping[str, Any]],
                notices: Sequence[Notice] | None = None) -> list[uuid.UUID]:
    """Store the events of one request in the caller's transaction, all or none, with their outbox rows.

    Each event is a mapping of :class:`Event` columns (``account_id`` aside: the scope's owner);
    ``event_id`` defaults to a new time-ordered id, ``create_time`` to now and ``end_time`` to
    ``create_time``. Any failure (an unknown field, a bad value, a taken id) raises, and the
    caller's rollback leaves nothing behind. ``notices``: see :func:`record_outbox`. Returns the
    ids in the given order.
    """
    owner = scope.owner
    now = utcnow()
    rows = []
    for n, event in enumerate(events):
        unknown = set(event) - EVENT_FIELDS
        if unknown:
            raise ValueError(f"event {n}: unknown fields {sorted(unknown)}")
        row = {name: None for name in EVENT_FIELDS} | dict(event) | {"account_id": owner}
        row["event_id"] = row["event_id"] or time_ordered_uuid()
        row["create_time"] = row["create_time"] or now
        row["end_time"] = row["end_time"] or row["create_time"]
        rows.append(row)
    if rows:
        # Core inserts of plain rows: one statement for the batch, and the rows are never updated.
        session.execute(insert(Event.__table__), rows)
        record_outbox(session, "event", owner, [r["event_id"] for r in rows], notices)
    return [r["event_id"] for r in rows]


def save_descriptors(session: Session, scope: Scope, descriptors: Sequence[tuple[uuid.UUID, int, bytes]]) -> None:
    """(event id, version, float32 bytes) of events saved in the caller's transaction: what makes
    them matching candidates and references."""
    if descriptors:
        session.execute(insert(EventDescriptor.__table__), [
            {"event_id": event_id, "version": version, "account_id": scope.owner, "descriptor": data}
            for event_id, version, data in descriptors])


def announce(session: Session, scope: Scope, notices: Sequence[Notice]) -> None:
    """Outbox rows for events a handler does not store but whose callbacks must still go out."""
    sent = [(payload, callbacks) for payload, callbacks in notices if callbacks]
    record_outbox(session, "event", scope.owner, [uuid.UUID(str(p["event_id"])) for p, _ in sent], sent)


def save_general_event(session: Session, scope: Scope, body: Mapping[str, Any]) -> uuid.UUID:
    """Store one general event (as ``GeneralEventCreateSchema`` loads it) with its outbox row."""
    size = len(json.dumps(body["content"], ensure_ascii=False, separators=(",", ":")).encode())
    if size > GENERAL_EVENT_MAX_BYTES:
        raise APIError("event_too_large", f"content: {size} bytes as JSON, at most {GENERAL_EVENT_MAX_BYTES}")
    location = body.get("location") or {}
    geo = location.get("geo_position") or {}
    event_id = time_ordered_uuid()
    session.execute(insert(GeneralEvent.__table__), [{
        "event_id": event_id, "account_id": scope.owner, "event_type": body["event_type"],
        "create_time": body["create_time"], "end_time": body["end_time"], "track_id": body.get("track_id"),
        "stream_id": body.get("stream_id"), "content": body["content"],
        **{name: location.get(name) for name in LOCATION},
        "longitude": geo.get("longitude"), "latitude": geo.get("latitude")}])
    record_outbox(session, "general_event", scope.owner, [event_id])
    return event_id


def _location_view(row: Any) -> dict[str, Any]:
    geo = None if row.longitude is None else {"longitude": row.longitude, "latitude": row.latitude}
    return {**{name: getattr(row, name) for name in LOCATION}, "geo_position": geo}


def event_view(e: Event) -> dict[str, Any]:
    """An event as the API shows it: its columns, the location as one object."""
    return {"event_id": e.event_id, "account_id": e.account_id, "handler_id": e.handler_id,
            "create_time": e.create_time, "end_time": e.end_time, "source": e.source, "tags": e.tags,
            "external_id": e.external_id, "user_data": e.user_data, "track_id": e.track_id,
            "stream_id": e.stream_id, "face_id": e.face_id, "attributes": e.attributes,
            "top_candidate_id": e.top_candidate_id, "top_similarity": e.top_similarity, "meta": e.meta,
            "detections": e.detections, "location": _location_view(e)}


def general_event_view(e: GeneralEvent) -> dict[str, Any]:
    return {"event_id": e.event_id, "account_id": e.account_id, "event_type": e.event_type,
            "create_time": e.create_time, "end_time": e.end_time, "track_id": e.track_id,
            "stream_id": e.stream_id, "location": _location_view(e), "content": e.content}


def _filtered(session: Session, resource: Resource, scope: Scope, filters: Mapping[str, Any], *columns: Any) -> Any:
    model = resource.model
    return (scoped(model, scope, *columns).select_from(model.__table__)
            .where(*conditions(resource.filters, filters, _dialect(session))))


def _page(session: Session, resource: Resource, scope: Scope, filters: Mapping[str, Any],
          page: int, page_size: int) -> list[Any]:
    """Newest first; ``(account_id, create_time, event_id)`` read backwards is this order."""
    model = resource.model
    query = _filtered(session, resource, scope, filters, model).order_by(model.create_time.desc(),
                                                                        model.event_id.desc())
    return paginate(session, query, page, page_size)


def list_events(session: Session, scope: Scope, filters: dict[str, Any], page: int,
                page_size: int) -> list[dict[str, Any]]:
    return [event_view(e) for e in _page(session, EVENTS, scope, filters, page, page_size)]


def list_general_events(session: Session, scope: Scope, filters: dict[str, Any], page: int,
                        page_size: int) -> list[dict[str, Any]]:
    return [general_event_view(e) for e in _page(session, GENERAL_EVENTS, scope, filters, page, page_size)]


def _column_or_path(resource: Resource, names: Mapping[str, Any], name: str, what: str, kind: str,
                    dialect: str) -> ColumnElement[Any]:
    if name in names:
        return names[name]
    if json_root(name) in resource.filters.json:
        return json_value(resource.filters.json[json_root(name)], name, dialect, kind)
    raise APIError("validation", f"{what}: '{name}' is not one of {', '.join(names)} nor a path under "
                                 f"{', '.join(resource.filters.json)}")


def _time_bucket(column: Any, frequency: str | None, period: int | None, dialect: str) -> ColumnElement[Any]:
    """The start of the create_time bucket: calendar units (UTC, weeks from Monday) or fixed seconds from the epoch."""
    if period:
        if dialect == "postgresql":
            return func.floor(extract("epoch", column) / period) * period
        return cast(func.strftime("%s", column), Integer) // period * period
    if dialect == "postgresql":
        return func.date_trunc(frequency, column, "UTC")
    fmt, *modifiers = _SQLITE_TRUNC[frequency]  # type: ignore[index]
    return func.strftime(fmt, column, *modifiers)


def _utc_bucket(value: Any) -> datetime | None:
    """A bucket as the database returned it (a datetime, an epoch number, SQLite's text) in UTC."""
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


def _number(value: Any) -> Any:
    return float(value) if isinstance(value, Decimal) else value


def _group_value(name: str, value: Any) -> Any:
    """A group's key as JSON shows it: times in ISO 8601 UTC, ids as text."""
    if name == "time":
        bucket = _utc_bucket(value)
        return None if bucket is None else bucket.isoformat()
    return str(value) if isinstance(value, uuid.UUID) else _number(value)


def stats(session: Session, resource: Resource, scope: Scope, body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``aggregator`` over ``target`` for the filtered rows, per ``group_by`` value and time bucket.

    At most :data:`MAX_GROUPS` groups come back, in group order; NULLs form a group of their own,
    last on both databases.
    """
    dialect = _dialect(session)
    aggregator = body["aggregator"]
    if aggregator == "count":
        value: Any = func.count()
    else:
        target = _column_or_path(resource, resource.targets, body["target"], "target", "numeric", dialect)
        value = getattr(func, aggregator)(target)
    keys = [(name, _column_or_path(resource, resource.groups, name, "group_by", "string", dialect))
            for name in body.get("group_by") or ()]
    if body.get("frequency") or body.get("period"):
        keys.append(("time", _time_bucket(resource.model.create_time, body.get("frequency"), body.get("period"),
                                          dialect)))
    exprs = [expr.label(f"k{n}") for n, (_, expr) in enumerate(keys)]
    query = _filtered(session, resource, scope, body.get("filters") or {}, *exprs, value.label("value"))
    if exprs:
        # By output column name: the expressions carry bound parameters, and PostgreSQL would not
        # see a GROUP BY with parameters of its own as the same expression as the select list's.
        names = [literal_column(f"k{n}") for n in range(len(exprs))]
        # Groups are ordered outside the aggregation: with ORDER BY on the grouping itself,
        # PostgreSQL walks an index in group order (ix_event_handler over the whole table, say)
        # to aggregate sorted, instead of reading only the filtered rows by their own index and
        # hashing them: 520 against 180 ms for a week of 210,000 events (bench/events.py).
        grouped = query.group_by(*names).subquery()
        query = (select(grouped).order_by(*(grouped.c[f"k{n}"].asc().nulls_last() for n in range(len(exprs))))
                 .limit(MAX_GROUPS))
    return [{"group": {name: _group_value(name, row[n]) for n, (name, _) in enumerate(keys)},
             "value": _number(row[-1])} for row in session.execute(query)]
