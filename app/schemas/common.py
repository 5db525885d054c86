"""Conventions every resource reuses: strict schemas, pagination, error body."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from app import settings


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo in a request never passes silently."""

    class Meta:
        unknown = RAISE


class PaginationArgs(StrictSchema):
    """``page`` (from 1) and ``page_size`` (capped by the ``page_size_max`` setting)."""

    page = fields.Integer(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Integer(load_default=None, validate=validate.Range(min=1))

    @validates_schema
    def _cap(self, data: dict[str, Any], **_: Any) -> None:
        s = settings.current()
        if data.get("page_size") is None:
            data["page_size"] = s.page_size_default
        elif data["page_size"] > s.page_size_max:
            raise ValidationError(f"must be at most {s.page_size_max}", "page_size")


def page_of(items: str, item_schema: type[Schema], name: str) -> type[Schema]:
    """The list-response convention every resource follows: ``{"<items>": [...], "page", "page_size"}``.

    ``name`` is the class name, which OpenAPI uses for the component.
    """
    return StrictSchema.from_dict({items: fields.List(fields.Nested(item_schema)),
                                   "page": fields.Integer(), "page_size": fields.Integer()}, name=name)


class ErrorSchema(Schema):
    error_code = fields.Integer(required=True, metadata={"description": "stable code, see docs/errors.md"})
    desc = fields.String(required=True, metadata={"description": "fixed description of the code"})
    detail = fields.String(required=True, metadata={"description": "what exactly went wrong"})
