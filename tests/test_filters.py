"""app.filters on its own: parsing of JSON-path filter names, typed values, the geo box's refusals,
and the SQL each dialect gets (no database needed; tests/api/test_events.py runs them on both)."""
from __future__ import annotations

import pytest
from sqlalchemy import JSON, Column, Float, MetaData, String, Table, select
from sqlalchemy.dialects import postgresql, sqlite

from app.errors import APIError
from app.filters import Filterable, JsonPath, conditions, geo_box, json_condition, parse_path

T = Table("t", MetaData(), Column("meta", JSON), Column("source", String), Column("x", Float), Column("y", Float),
          Column("score", Float))
TARGET = Filterable(equal={"source": T.c.source}, any_of={"sources": T.c.source}, ranges={"score": T.c.score},
                    json={"meta": T.c.meta}, geo=(T.c.x, T.c.y))


def _sql(condition, dialect) -> str:
    return str(select(T.c.source).where(condition).compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


@pytest.mark.parametrize("name, parsed", [
    ("meta.a", JsonPath("meta", ("a",), "eq", "string")),
    ("meta.a.b-c.d_e__gte:numeric", JsonPath("meta", ("a", "b-c", "d_e"), "gte", "numeric")),
    ("content.x__nin:integer", JsonPath("content", ("x",), "nin", "integer")),
    ("meta.a:integer", JsonPath("meta", ("a",), "eq", "integer")),
])
def test_names_parse(name, parsed):
    assert parse_path(name) == parsed


@pytest.mark.parametrize("name, words", [
    ("meta.a__between", "unknown operator"), ("meta.a:text", "unknown type"), ("meta", "bad field name"),
    ("meta.a..b", "bad field name"), ("meta.a b", "bad field name"), ("meta.a'b", "bad field name"),
    ("meta.a__b__eq", "bad field name"), ("meta.a__like:numeric", "compares strings only"),
])
def test_bad_names_are_refused_by_name(name, words):
    with pytest.raises(APIError) as caught:
        parse_path(name)
    assert caught.value.error.code == 60001 and name in caught.value.detail and words in caught.value.detail


def test_values_follow_the_type():
    assert "36.6" in _sql(json_condition(T.c.meta, "meta.t__gt:numeric", "36.6", "sqlite"), sqlite.dialect())
    with pytest.raises(APIError, match="not an integer"):
        json_condition(T.c.meta, "meta.t__gt:integer", 1.5, "sqlite")
    with pytest.raises(APIError, match="finite"):
        json_condition(T.c.meta, "meta.t__gt:numeric", "NaN", "sqlite")
    with pytest.raises(APIError, match="expected a string"):
        json_condition(T.c.meta, "meta.t", True, "sqlite")
    with pytest.raises(APIError, match="comma-separated"):
        json_condition(T.c.meta, "meta.t__in", [], "sqlite")
    # A JSON body may give numbers and arrays where a query string gives text.
    assert "IN" in _sql(json_condition(T.c.meta, "meta.t__in:integer", [1, "2"], "sqlite"), sqlite.dialect())


def test_each_dialect_gets_its_own_json_sql():
    pg = _sql(json_condition(T.c.meta, "meta.a.b", "x", "postgresql"), postgresql.dialect())
    assert "@>" in pg and '{"a": {"b": "x"}}' in pg  # containment, served by the GIN index
    pg = _sql(json_condition(T.c.meta, "meta.a.b__gte:numeric", "1", "postgresql"), postgresql.dialect())
    assert "jsonb_typeof" in pg and "NUMERIC" in pg
    lite = _sql(json_condition(T.c.meta, "meta.a.b__like", "A%", "sqlite"), sqlite.dialect())
    assert "json_type" in lite and "GLOB" in lite and "'A*'" in lite and '$."a"."b"' in lite


def test_unknown_filters_and_geo_rules(settings_override):
    assert len(conditions(TARGET, {"source": "a", "sources": ["a"], "score__gte": 0.5, "score__lt": 1,
                                   "meta.k": "v", "unused": None}, "sqlite")) == 5
    for name in ("score__between", "colour", "meta_x"):
        with pytest.raises(APIError, match=f"{name}: unknown filter"):
            conditions(TARGET, {name: 1}, "sqlite")
    settings_override(events_geo_delta_default=0.5)
    box = _sql(geo_box(T.c.x, T.c.y, {"origin_longitude": 10, "origin_latitude": 20}), sqlite.dialect())
    assert "BETWEEN 9.5 AND 10.5" in box and "BETWEEN 19.5 AND 20.5" in box
    for given, words in [({"origin_longitude": 1}, "go together"), ({"latitude_delta": 1}, "go together"),
                         ({"origin_longitude": 0, "origin_latitude": 0, "longitude_delta": 90.5}, "180 degrees"),
                         ({"origin_longitude": -179.8, "origin_latitude": 0}, "date line"),
                         ({"origin_longitude": 0, "origin_latitude": -89.9}, "pole")]:
        with pytest.raises(APIError, match=words):
            geo_box(T.c.x, T.c.y, given)
