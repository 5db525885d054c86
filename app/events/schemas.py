"""Requests and answers of /events and /general_events: filters, pages, statistics, general events.

The filter schemas declare the filters with fixed names (typed and documented in the OpenAPI
document); names under a JSON column (``meta.*``, ``attributes.*``, ``content.*``) pass them by
and are compiled by :mod:`app.filters`, in a query string and in a statistics body alike.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, post_load, pre_load, validate, validates_schema
from webargs.fields import DelimitedList

from app.events.service import AGGREGATORS, EVENTS, FREQUENCIES, GENERAL_EVENTS
from app.filters import SEGMENT, TYPES, json_root
from app.pagination import PaginationArgs, page_of
from app.schemas import StrictSchema

MAX_FILTER_IDS = 1000
LOCATION_TEXT = validate.Length(max=36)
MIN_DELTA = 1e-6  # degrees, about 0.1 m: a box needs some width


class ListOrText(DelimitedList):
    """Comma-separated values in a query string; in a JSON body (the ``filters`` of a statistics
    request) an array, as the document says of the field, or the same comma-separated text."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, list):
            return fields.List._deserialize(self, value, attr, data, **kwargs)
        return super()._deserialize(value, attr, data, **kwargs)


def _ids(what: str) -> ListOrText:
    return ListOrText(fields.UUID(), validate=validate.Length(max=MAX_FILTER_IDS),
                      metadata={"description": f"comma-separated {what}"})


def _texts(what: str, length: int) -> ListOrText:
    return ListOrText(fields.String(validate=validate.Length(max=length)),
                      validate=validate.Length(max=MAX_FILTER_IDS), metadata={"description": f"comma-separated {what}"})


class _PathsInQuery(Schema):
    """A query string's names under the resource's JSON columns are left to :mod:`app.filters`
    (the API view adds them back from the query string): they cannot be declared in advance."""

    JSON_ROOTS: tuple[str, ...] = ()

    @pre_load
    def _without_paths(self, data: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        return {k: data[k] for k in data if json_root(k) not in self.JSON_ROOTS}


class _PathsInBody(Schema):
    """A statistics body's ``filters``: names under the JSON columns are kept as given, anything
    else undeclared is refused. The document says no other properties: the paths cannot be listed."""

    JSON_ROOTS: tuple[str, ...] = ()

    class Meta:
        unknown = INCLUDE

    @post_load
    def _only_paths(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        unknown = sorted(k for k in data if k not in self.fields and json_root(k) not in self.JSON_ROOTS)
        if unknown:
            raise ValidationError({name: ["Unknown field."] for name in unknown})
        return data

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        return {"additionalProperties": False}


class _TimeAndPlaceArgs(StrictSchema):
    create_time__gte = fields.AwareDateTime(metadata={"description": "created at or after"})
    create_time__lt = fields.AwareDateTime(metadata={"description": "created before"})
    end_time__gte = fields.AwareDateTime(metadata={"description": "ended at or after"})
    end_time__lt = fields.AwareDateTime(metadata={"description": "ended before"})
    track_ids = _texts("track ids", 36)
    stream_ids = _ids("stream ids")
    city = fields.String(validate=LOCATION_TEXT)
    area = fields.String(validate=LOCATION_TEXT)
    district = fields.String(validate=LOCATION_TEXT)
    street = fields.String(validate=LOCATION_TEXT)
    house_number = fields.String(validate=LOCATION_TEXT)
    origin_longitude = fields.Float(validate=validate.Range(-180, 180),
                                    metadata={"description": "geo box centre; needs origin_latitude"})
    origin_latitude = fields.Float(validate=validate.Range(-90, 90),
                                   metadata={"description": "geo box centre; needs origin_longitude"})
    longitude_delta = fields.Float(validate=validate.Range(MIN_DELTA, 180),
                                   metadata={"description": "half the box's width (default "
                                                            "`events_geo_delta_default`)"})
    latitude_delta = fields.Float(validate=validate.Range(MIN_DELTA, 90),
                                  metadata={"description": "half the box's height (default "
                                                           "`events_geo_delta_default`)"})
    account_id = fields.UUID(metadata={"description": "advanced users: another account's events"})


class EventFilterArgs(_TimeAndPlaceArgs):
    JSON_ROOTS = ("meta", "attributes")

    event_ids = _ids("event ids")
    handler_ids = _ids("handler ids")
    sources = _texts("sources", 128)
    external_ids = _texts("external ids", 64)
    face_ids = _ids("face ids")
    tags = _texts("tags; an event with any of them", 36)
    top_candidate_ids = _ids("ids of the best match's candidate")
    user_data = fields.String(validate=validate.Length(max=128), metadata={"description": "equal to user_data"})
    top_similarity__gte = fields.Float(validate=validate.Range(0, 1), metadata={"description": "best match at least"})
    top_similarity__lte = fields.Float(validate=validate.Range(0, 1), metadata={"description": "best match at most"})


class EventListArgs(_PathsInQuery, EventFilterArgs, PaginationArgs):
    JSON_ROOTS = EventFilterArgs.JSON_ROOTS


class EventStatsFilters(_PathsInBody, EventFilterArgs):
    JSON_ROOTS = EventFilterArgs.JSON_ROOTS


class GeneralEventFilterArgs(_TimeAndPlaceArgs):
    JSON_ROOTS = ("content",)

    event_ids = _ids("event ids")
    event_types = _texts("event types", 64)


class GeneralEventListArgs(_PathsInQuery, GeneralEventFilterArgs, PaginationArgs):
    JSON_ROOTS = GeneralEventFilterArgs.JSON_ROOTS


class GeneralEventStatsFilters(_PathsInBody, GeneralEventFilterArgs):
    JSON_ROOTS = GeneralEventFilterArgs.JSON_ROOTS


def _path_or(names: tuple[str, ...], roots: tuple[str, ...], types: tuple[str, ...]) -> validate.Regexp:
    """One of ``names`` or a JSON path under ``roots`` with an optional type: a pattern the document shows."""
    path = rf"(?:{'|'.join(roots)})(?:\.{SEGMENT})+(?::(?:{'|'.join(types)}))?"
    return validate.Regexp(rf"^(?:{'|'.join(names)}|{path})$")


def stats_schema(name: str, filter_schema: type[Schema], targets: tuple[str, ...], groups: tuple[str, ...]) -> type[Schema]:
    """The body of ``POST .../stats`` of one resource: its filters, and what it may aggregate and group."""
    roots = filter_schema.JSON_ROOTS  # type: ignore[attr-defined]

    class Stats(StrictSchema):
        filters = fields.Nested(filter_schema, load_default=dict,
                                metadata={"description": "the filters of the list request, same names and values, "
                                                         "JSON paths included"})
        aggregator = fields.String(load_default="count", validate=validate.OneOf(AGGREGATORS))
        target = fields.String(validate=[validate.Length(max=256), _path_or(targets, roots, ("integer", "numeric"))],
                               metadata={"description": "what min, max and avg aggregate: a numeric field or a "
                                                        "JSON path (numeric unless `:integer`)"})
        group_by = fields.List(fields.String(validate=[validate.Length(max=256), _path_or(groups, roots, TYPES)]),
                               validate=validate.Length(max=5),
                               metadata={"description": "fields or JSON paths (`:string` unless typed)"})
        frequency = fields.String(validate=validate.OneOf(FREQUENCIES),
                                  metadata={"description": "calendar buckets of create_time (UTC; weeks from Monday)"})
        period = fields.Integer(validate=validate.Range(1, 10 * 366 * 86400),
                                metadata={"description": "buckets of create_time of this many seconds from the epoch"})

        @validates_schema
        def _consistent(self, data: dict[str, Any], **_: Any) -> None:
            if data.get("frequency") and data.get("period"):
                raise ValidationError("give frequency or period, not both", "period")
            if data.get("aggregator", "count") != "count" and not data.get("target"):
                raise ValidationError(f"needed by the aggregator {data['aggregator']}", "target")

        @classmethod
        def openapi_rules(cls) -> dict[str, Any]:
            counting = {"anyOf": [{"not": {"required": ["aggregator"]}},
                                  {"properties": {"aggregator": {"enum": ["count"]}}}, {"required": ["target"]}]}
            return {"allOf": [{"not": {"required": ["frequency", "period"]}}, counting]}

    Stats.__name__ = name
    return Stats


EventStatsSchema = stats_schema("EventStatsSchema", EventStatsFilters, tuple(EVENTS.targets), tuple(EVENTS.groups))
GeneralEventStatsSchema = stats_schema("GeneralEventStatsSchema", GeneralEventStatsFilters,
                                       tuple(GENERAL_EVENTS.targets), tuple(GENERAL_EVENTS.groups))


class StatsGroupSchema(StrictSchema):
    group = fields.Dict(metadata={"description": "the group's values by `group_by` name, and `time`: the "
                                                 "bucket's start"})
    value = fields.Raw(metadata={"description": "the aggregate: a number, or null (no value in the group)"})


class StatsSchema(StrictSchema):
    results = fields.List(fields.Nested(StatsGroupSchema),
                          metadata={"description": "one per group (at most 1000, in group order)"})


class GeoPositionSchema(StrictSchema):
    longitude = fields.Float(required=True, validate=validate.Range(-180, 180))
    latitude = fields.Float(required=True, validate=validate.Range(-90, 90))


class LocationSchema(StrictSchema):
    city = fields.String(validate=LOCATION_TEXT)
    area = fields.String(validate=LOCATION_TEXT)
    district = fields.String(validate=LOCATION_TEXT)
    street = fields.String(validate=LOCATION_TEXT)
    house_number = fields.String(validate=LOCATION_TEXT)
    geo_position = fields.Nested(GeoPositionSchema)


class LocationOutSchema(StrictSchema):
    city = fields.String(allow_none=True)
    area = fields.String(allow_none=True)
    district = fields.String(allow_none=True)
    street = fields.String(allow_none=True)
    house_number = fields.String(allow_none=True)
    geo_position = fields.Nested(GeoPositionSchema, allow_none=True)


class EventSchema(StrictSchema):
    event_id = fields.UUID()
    account_id = fields.UUID()
    handler_id = fields.UUID(allow_none=True)
    create_time = fields.DateTime()
    end_time = fields.DateTime()
    source = fields.String(allow_none=True)
    tags = fields.List(fields.String(), allow_none=True)
    external_id = fields.String(allow_none=True)
    user_data = fields.String(allow_none=True)
    track_id = fields.String(allow_none=True)
    stream_id = fields.UUID(allow_none=True)
    face_id = fields.UUID(allow_none=True)
    attributes = fields.Dict(allow_none=True)
    top_candidate_id = fields.UUID(allow_none=True)
    top_similarity = fields.Float(allow_none=True)
    meta = fields.Dict(allow_none=True)
    detections = fields.List(fields.Raw(), allow_none=True)
    image_origin_id = fields.UUID(allow_none=True, metadata={
        "description": "the stored source image (image_origin_policy), at /images/{image_id}"})
    location = fields.Nested(LocationOutSchema)


EventListSchema = page_of("events", EventSchema, "EventListSchema")


class GeneralEventCreateSchema(StrictSchema):
    event_type = fields.String(required=True, validate=validate.Length(min=1, max=64))
    create_time = fields.AwareDateTime(required=True)
    end_time = fields.AwareDateTime(required=True, metadata={"description": "not before create_time"})
    location = fields.Nested(LocationSchema)
    stream_id = fields.UUID()
    track_id = fields.String(validate=validate.Length(max=36))
    content = fields.Dict(required=True, metadata={"description": "any JSON object, at most 2 MiB"})


class GeneralEventCreatedSchema(StrictSchema):
    event_id = fields.UUID()


class GeneralEventSchema(StrictSchema):
    event_id = fields.UUID()
    account_id = fields.UUID()
    event_type = fields.String()
    create_time = fields.DateTime()
    end_time = fields.DateTime()
    track_id = fields.String(allow_none=True)
    stream_id = fields.UUID(allow_none=True)
    location = fields.Nested(LocationOutSchema)
    content = fields.Dict()


GeneralEventListSchema = page_of("general_events", GeneralEventSchema, "GeneralEventListSchema")
