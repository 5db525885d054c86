"""Schema conventions every service reuses: strict schemas and the error body."""
from __future__ import annotations

from marshmallow import RAISE, Schema, fields, validate

# Positive integers a request hands on to the database (page numbers, descriptor versions) stay
# inside 32 bits: past 64 bits a number would not even bind, and the answer must be a 400.
INT32 = validate.Range(min=1, max=2**31 - 1)


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo in a request never passes silently."""

    class Meta:
        unknown = RAISE


class ErrorSchema(Schema):
    error_code = fields.Integer(required=True, metadata={"description": "stable code, see docs/errors.md"})
    desc = fields.String(required=True, metadata={"description": "fixed description of the code"})
    detail = fields.String(required=True, metadata={"description": "what exactly went wrong"})
