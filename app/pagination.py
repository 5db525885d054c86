"""The one way lists are paged: ``page`` (from 1) and ``page_size`` in, ``{"<items>": [...],
"page", "page_size"}`` out, and :func:`paginate` for the query in between."""
from __future__ import annotations

from typing import Any, TypeVar

from marshmallow import Schema, fields
from sqlalchemy import Select
from sqlalchemy.orm import Session

from app import settings
from app.schemas import INT32, SettingMax, StrictSchema

T = TypeVar("T")


class PaginationArgs(StrictSchema):
    """``page`` (from 1) and ``page_size`` (the ``page_size_default`` setting when not given, at
    most ``page_size_max``)."""

    page = fields.Integer(load_default=1, validate=INT32)
    page_size = fields.Integer(load_default=lambda: settings.current().page_size_default,
                               validate=SettingMax("page_size_max"))


def page_of(items: str, item_schema: type[Schema], name: str) -> type[Schema]:
    """The list-response convention every resource follows: ``{"<items>": [...], "page", "page_size"}``.

    ``name`` is the class name, which OpenAPI uses for the component.
    """
    return StrictSchema.from_dict({items: fields.List(fields.Nested(item_schema)),
                                   "page": fields.Integer(), "page_size": fields.Integer()}, name=name)


def offset(page: int, page_size: int) -> int:
    """Rows before the page (pages count from 1)."""
    return (page - 1) * page_size


def page_slice(query: Select[Any], page: int, page_size: int) -> Select[Any]:
    """``query`` limited to one page; the caller's ORDER BY makes the pages stable."""
    return query.offset(offset(page, page_size)).limit(page_size)


def paginate(session: Session, query: Select[Any], page: int, page_size: int) -> list[Any]:
    """One page of ``query``'s rows (entities when it selects one entity)."""
    return list(session.scalars(page_slice(query, page, page_size)))


def page_answer(items_name: str, items: list[Any], page: int, page_size: int) -> dict[str, Any]:
    """The list response: the items under their name beside ``page`` and ``page_size``."""
    return {items_name: items, "page": page, "page_size": page_size}
