"""Schema conventions every service reuses: strict schemas and the error body."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo in a request never passes silently."""

    class Meta:
        unknown = RAISE


class ErrorSchema(Schema):
    error_code = fields.Integer(required=True, metadata={"description": "stable code, see docs/errors.md"})
    desc = fields.String(required=True, metadata={"description": "fixed description of the code"})
    detail = fields.String(required=True, metadata={"description": "what exactly went wrong"})
