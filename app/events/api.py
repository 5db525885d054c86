"""/events (read side: pages, one event, statistics) and /general_events (save, pages, statistics)."""
from __future__ import annotations

import uuid
from typing import Any

from flask import request

from app.auth import current_principal, require
from app.blueprint import Blueprint, filtered_page
from app.db import session_scope
from app.events import service
from app.events.models import Event
from app.events.schemas import (
    EventListArgs,
    EventListSchema,
    EventSchema,
    EventStatsSchema,
    GeneralEventCreatedSchema,
    GeneralEventCreateSchema,
    GeneralEventListArgs,
    GeneralEventListSchema,
    GeneralEventStatsSchema,
    StatsSchema,
)
from app.filters import json_root
from app.scope import get_or_404

events_blp = Blueprint("events", __name__, url_prefix="/events", description="Events")
general_blp = Blueprint("general_events", __name__, url_prefix="/general_events", description="General events")


def _with_paths(args: dict[str, Any], resource: service.Resource) -> dict[str, Any]:
    """The declared filters the schema loaded, plus the JSON-path filters of the query string it
    left to app.filters (their names cannot be declared in advance)."""
    return {**args, **{k: v for k, v in request.args.items() if json_root(k) in resource.filters.json}}


def _stats(body: dict[str, Any], resource: service.Resource) -> dict[str, Any]:
    scope = current_principal().read_scope(body["filters"].pop("account_id", None))
    with session_scope() as session:
        return {"results": service.stats(session, resource, scope, body)}


@events_blp.route("", methods=["GET"])
@events_blp.arguments(EventListArgs, location="query")
@events_blp.response(200, EventListSchema)
@require("event", "view")
def list_events(args: dict[str, Any]) -> dict[str, Any]:
    """Events newest first (`create_time`), filtered; `meta.*` and `attributes.*` filters as in docs/events.md."""
    return filtered_page("events", _with_paths(args, service.EVENTS), service.list_events)


@events_blp.route("/<uuid:event_id>", methods=["GET"])
@events_blp.response(200, EventSchema)
@require("event", "view")
def get_event(event_id: uuid.UUID) -> dict[str, Any]:
    with session_scope() as session:
        return service.event_view(get_or_404(session, Event, event_id, current_principal().read_scope()))


@events_blp.route("/stats", methods=["POST"])
@events_blp.arguments(EventStatsSchema)
@events_blp.response(200, StatsSchema)
@require("event", "view")
def event_stats(body: dict[str, Any]) -> dict[str, Any]:
    """Count, min, max or avg over the filtered events, per group and time bucket."""
    return _stats(body, service.EVENTS)


@general_blp.route("", methods=["POST"])
@general_blp.arguments(GeneralEventCreateSchema)
@general_blp.response(201, GeneralEventCreatedSchema)
@require("general_event", "creation")
def create_general_event(body: dict[str, Any]) -> dict[str, Any]:
    """Save one general event: any JSON `content` of at most 2 MiB, typed by `event_type`."""
    with session_scope() as session:
        return {"event_id": service.save_general_event(session, current_principal().scope, body)}


@general_blp.route("", methods=["GET"])
@general_blp.arguments(GeneralEventListArgs, location="query")
@general_blp.response(200, GeneralEventListSchema)
@require("general_event", "view")
def list_general_events(args: dict[str, Any]) -> dict[str, Any]:
    """General events newest first, filtered; `content.*` filters as in docs/events.md."""
    return filtered_page("general_events", _with_paths(args, service.GENERAL_EVENTS), service.list_general_events)


@general_blp.route("/stats", methods=["POST"])
@general_blp.arguments(GeneralEventStatsSchema)
@general_blp.response(200, StatsSchema)
@require("general_event", "view")
def general_event_stats(body: dict[str, Any]) -> dict[str, Any]:
    return _stats(body, service.GENERAL_EVENTS)


BLUEPRINTS = [events_blp, general_blp]
