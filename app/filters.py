"""One filter syntax for every filtered resource, compiled to SQLAlchemy conditions.

Events and general events (and later faces and lists) describe what may be filtered with one
:class:`Filterable`; :func:`conditions` turns the filters of a request (a query string or the
``filters`` object of a JSON body: the same names and the same values) into WHERE conditions.
Keeping one compiler is what makes ``create_time__gte``, ``meta.*`` and the geo box mean the
same thing everywhere.

The forms:

- ``name=value``: equality on a column; ``names=a,b``: any of the listed values;
- ``name__gte`` / ``__gt`` / ``__lte`` / ``__lt``: a range bound on a column;
- ``<root>.<path.to.field>__<op>:<type>`` on a JSON column (``meta``, ``attributes``, ``content``):
  ``op`` one of :data:`OPS` (default ``eq``), ``type`` one of :data:`TYPES` (default ``string``);
- the geo box ``origin_longitude``, ``origin_latitude`` (both or none), ``longitude_delta``,
  ``latitude_delta`` (default: the ``events_geo_delta_default`` setting).

JSON paths compile per dialect (PostgreSQL JSONB operators, SQLite JSON1 functions) and compare
only values of the requested JSON type, so a value of another type never reaches a CAST that
would fail: it is simply not equal (``neq``/``nin``/``nlike`` match it, like a missing field).
No Flask here: services and tasks compile filters too.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Numeric, String, Text, and_, case, cast, exists, func, literal, not_, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql.elements import ColumnElement

from app import settings
from app.errors import APIError

OPS = ("eq", "neq", "like", "nlike", "in", "nin", "gt", "gte", "lt", "lte")
TYPES = ("string", "integer", "numeric")
RANGE_OPS = ("gte", "gt", "lte", "lt")
GEO = ("origin_longitude", "origin_latitude", "longitude_delta", "latitude_delta")
# Field names are plain words: a dot separates levels, a double underscore starts the operator
# and a colon the type, so none of those (nor quotes that would end up in a JSON path) may appear.
SEGMENT = r"_?[A-Za-z0-9-]+(?:_[A-Za-z0-9-]+)*_?"
_SEGMENT = re.compile(f"^(?:{SEGMENT}|_)$")
MAX_IN_VALUES = 1000


@dataclass(frozen=True)
class Filterable:
    """What one resource lets callers filter on: filter name -> column (``contains``: a substring of
    the column; ``overlaps``: a JSON array column holding any of the given strings; ``custom``: a
    condition the resource builds from the value, such as membership of a list that lives in
    another table)."""

    equal: Mapping[str, Any] = field(default_factory=dict)
    any_of: Mapping[str, Any] = field(default_factory=dict)
    contains: Mapping[str, Any] = field(default_factory=dict)
    overlaps: Mapping[str, Any] = field(default_factory=dict)
    ranges: Mapping[str, Any] = field(default_factory=dict)
    json: Mapping[str, Any] = field(default_factory=dict)
    geo: tuple[Any, Any] | None = None
    custom: Mapping[str, Callable[[Any], ColumnElement[bool]]] = field(default_factory=dict)


@dataclass(frozen=True)
class JsonPath:
    """One parsed ``<root>.<path>__<op>:<type>`` name."""

    root: str
    path: tuple[str, ...]
    op: str
    kind: str


def json_root(name: str) -> str:
    """The part before the first dot: the JSON column a ``meta.*``-style filter name addresses."""
    return name.split(".", 1)[0] if "." in name else ""


def parse_path(name: str) -> JsonPath:
    """``meta.a.b__gte:numeric`` as its parts, or a 400 naming the filter and what is wrong."""
    rest, _, kind = name.partition(":")
    kind = kind or "string"
    if kind not in TYPES:
        raise APIError("bad_filter", f"{name}: unknown type '{kind}'; one of {', '.join(TYPES)}")
    path_text, sep, op = rest.rpartition("__")
    if not sep:
        path_text, op = rest, "eq"
    if op not in OPS:
        raise APIError("bad_filter", f"{name}: unknown operator '{op}'; one of {', '.join(OPS)}")
    root, *path = path_text.split(".")
    if not path or not all(_SEGMENT.match(s) for s in path):
        raise APIError("bad_filter", f"{name}: bad field name; a path is dot-separated names of letters, "
                                     "digits, '-' and '_' (no double underscore)")
    if op in ("like", "nlike") and kind != "string":
        raise APIError("bad_filter", f"{name}: '{op}' compares strings only; use the type string")
    return JsonPath(root, tuple(path), op, kind)


def _scalar(name: str, kind: str, value: Any) -> Any:
    """One filter value as the type the filter names; query strings give text, JSON bodies may give numbers."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise APIError("bad_filter", f"{name}: expected a {kind} value, got {json.dumps(value)[:40]}")
    if kind == "string":
        return str(value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise APIError("bad_filter", f"{name}: '{value}' is not {kind}") from None
    if not number.is_finite():
        raise APIError("bad_filter", f"{name}: '{value}' is not a finite number")
    if kind == "integer":
        if number != number.to_integral_value():
            raise APIError("bad_filter", f"{name}: '{value}' is not an integer")
        return int(number)
    return number


def _values(name: str, spec: JsonPath, value: Any) -> Any:
    if spec.op in ("in", "nin"):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list) or not items or len(items) > MAX_IN_VALUES:
            raise APIError("bad_filter", f"{name}: expected 1 to {MAX_IN_VALUES} comma-separated values")
        return [_scalar(name, spec.kind, v) for v in items]
    return _scalar(name, spec.kind, value)


def _sqlite_path(path: tuple[str, ...]) -> str:
    return "$" + "".join(f'."{segment}"' for segment in path)


def _typed(column: Any, spec: JsonPath, dialect: str) -> ColumnElement[Any]:
    """The value at the path when it has the filter's JSON type, else NULL."""
    if dialect == "postgresql":
        node = column[spec.path]
        if spec.kind == "string":
            return case((func.jsonb_typeof(node) == "string", node.as_string()))
        return case((func.jsonb_typeof(node) == "number", cast(node.as_string(), Numeric)))
    path = _sqlite_path(spec.path)
    found = func.json_type(column, path)
    wanted = found == "text" if spec.kind == "string" else found.in_(("integer", "real"))
    return case((wanted, func.json_extract(column, path)))


def _like(expr: ColumnElement[Any], pattern: str, dialect: str) -> ColumnElement[bool]:
    """``%`` any run and ``_`` one character, case-sensitive, no escape character, on both databases
    (SQLite's LIKE ignores case, so there it is GLOB with the pattern translated)."""
    if dialect == "postgresql":
        return expr.like(pattern.replace("\\", "\\\\"))
    glob = "".join({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch) for ch in pattern)
    return expr.op("GLOB")(glob)


def _json_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def _nested(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out: Any = _json_number(value)
    for segment in reversed(path):
        out = {segment: out}
    return out


def json_condition(column: Any, name: str, value: Any, dialect: str) -> ColumnElement[bool]:
    """The condition of one ``<root>.<path>__<op>:<type>`` filter on a JSON column."""
    spec = parse_path(name)
    wanted = _values(name, spec, value)
    if spec.op == "eq" and dialect == "postgresql":
        # Containment is type-exact and served by a GIN (jsonb_path_ops) index on the column.
        return column.op("@>")(cast(literal(json.dumps(_nested(spec.path, wanted)), String), JSONB))
    expr = _typed(column, spec, dialect)
    missing = expr.is_(None)
    if spec.op == "eq":
        return expr == wanted
    if spec.op == "neq":
        return or_(missing, expr != wanted)
    if spec.op == "in":
        return expr.in_(wanted)
    if spec.op == "nin":
        return or_(missing, expr.not_in(wanted))
    if spec.op == "like":
        return _like(expr, wanted, dialect)
    if spec.op == "nlike":
        return or_(missing, not_(_like(expr, wanted, dialect)))
    return {"gt": expr > wanted, "gte": expr >= wanted, "lt": expr < wanted, "lte": expr <= wanted}[spec.op]


def json_value(column: Any, name: str, dialect: str, default_kind: str = "string") -> ColumnElement[Any]:
    """The value at ``<root>.<path>[:<type>]`` when of that JSON type (NULL otherwise): what a
    statistics target or group names. No operator here: this selects, it does not compare."""
    if "__" in name:
        raise APIError("bad_filter", f"{name}: a field here is a path and a type, without an operator")
    return _typed(column, parse_path(name if ":" in name else f"{name}:{default_kind}"), dialect)


def geo_box(longitude: Any, latitude: Any, given: Mapping[str, Any]) -> ColumnElement[bool]:
    """The box around an origin: both origin fields or none; edges of at most 180 degrees, not over
    the date line or a pole (a box there would need two ranges, and is refused instead)."""
    # Every refusal here starts with "geo filter: ": the rules are between parameters and values,
    # which OpenAPI cannot state (tests/api/test_openapi.py knows them by that prefix).
    if given.get("origin_longitude") is None or given.get("origin_latitude") is None:
        raise APIError("bad_filter", "geo filter: origin_longitude and origin_latitude go together, "
                                     "and the deltas need both")
    default = settings.current().events_geo_delta_default
    lon, lat = float(given["origin_longitude"]), float(given["origin_latitude"])
    dlon = float(given.get("longitude_delta") or default)
    dlat = float(given.get("latitude_delta") or default)
    if not all(math.isfinite(v) for v in (lon, lat, dlon, dlat)) or dlon <= 0 or dlat <= 0:
        raise APIError("bad_filter", "geo filter: finite origin and positive deltas needed")
    if 2 * dlon > 180 or 2 * dlat > 180:
        raise APIError("bad_filter", "geo filter: the box's edges may span at most 180 degrees")
    if lon - dlon < -180 or lon + dlon > 180:
        raise APIError("bad_filter", "geo filter: the box crosses the date line (longitude +-180)")
    if lat - dlat < -90 or lat + dlat > 90:
        raise APIError("bad_filter", "geo filter: the box crosses a pole (latitude +-90)")
    return and_(longitude.between(lon - dlon, lon + dlon), latitude.between(lat - dlat, lat + dlat))


def _range(target: Filterable, name: str) -> tuple[Any, str] | None:
    base, sep, op = name.rpartition("__")
    if sep and op in RANGE_OPS and base in target.ranges:
        return target.ranges[base], op
    return None


def _overlaps(column: Any, values: list[str], dialect: str) -> ColumnElement[bool]:
    """A JSON array of strings that holds any of ``values``."""
    if dialect == "postgresql":
        return cast(column, JSONB).op("?|")(cast(values, ARRAY(Text)))
    items = func.json_each(column).table_valued("value")
    return exists(select(literal(1)).select_from(items).where(items.c.value.in_(values)))


def conditions(target: Filterable, filters: Mapping[str, Any], dialect: str = "") -> list[ColumnElement[bool]]:
    """WHERE conditions for ``filters`` (values already typed by the resource's schema, JSON-path
    values as given); an unknown filter is a 400 naming it. ``None`` and empty values (``""``,
    ``[]``: what an empty query parameter gives) are absent filters. ``dialect`` (the session's)
    is needed only by resources with JSON filters."""
    out: list[ColumnElement[bool]] = []
    geo: dict[str, Any] = {}
    for name, value in filters.items():
        if value is None or (isinstance(value, (str, list, tuple)) and not value):
            continue
        bound = _range(target, name)
        if name in target.equal:
            out.append(target.equal[name] == value)
        elif name in target.any_of:
            out.append(target.any_of[name].in_(value))
        elif name in target.contains:
            out.append(target.contains[name].contains(value, autoescape=True))
        elif name in target.overlaps:
            out.append(_overlaps(target.overlaps[name], list(value), dialect))
        elif name in target.custom:
            out.append(target.custom[name](value))
        elif bound is not None:
            column, op = bound
            out.append({"gte": column >= value, "gt": column > value, "lte": column <= value,
                        "lt": column < value}[op])
        elif json_root(name) in target.json:
            out.append(json_condition(target.json[json_root(name)], name, value, dialect))
        elif name in GEO and target.geo is not None:
            geo[name] = value
        else:
            raise APIError("bad_filter", f"{name}: unknown filter")
    if geo:
        out.append(geo_box(*target.geo, geo))  # type: ignore[misc]
    return out

