"""Schema conventions every service reuses: strict schemas and the error body."""
from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from app import settings

# Positive integers a request hands on to the database (page numbers, descriptor versions) stay
# inside 32 bits: past 64 bits a number would not even bind, and the answer must be a 400.
INT32 = validate.Range(min=1, max=2**31 - 1)


class SettingMax:
    """From ``minimum`` up to the current value of an int setting (``page_size_max``, ...): checked on
    every request, and shown as ``maximum`` in the OpenAPI document, which apispec reads from any
    validator with ``min`` and ``max`` (the value when the document was built)."""

    def __init__(self, setting: str, minimum: int = 1) -> None:
        self.setting = setting
        self.min = minimum

    @property
    def max(self) -> int:
        return int(getattr(settings.current(), self.setting))

    def _size(self, value: Any) -> int:
        return value

    def __call__(self, value: Any) -> Any:
        size = self._size(value)
        if size < self.min:
            raise ValidationError(f"must be at least {self.min}")
        if size > self.max:
            raise ValidationError(f"must be at most {self.max} ({self.setting})")
        return value


class SettingMaxItems(SettingMax):
    """:class:`SettingMax` on the number of items of a list (``minItems``/``maxItems`` in the document:
    apispec takes a validator with ``equal`` for a length)."""

    equal = None

    def _size(self, value: Any) -> int:
        return len(value)


class StrictSchema(Schema):
    """Unknown fields are errors, so a typo in a request never passes silently."""

    class Meta:
        unknown = RAISE

    @classmethod
    def openapi_rules(cls) -> dict[str, Any]:
        """JSON-schema keywords for the rules between fields that ``@validates_schema`` methods
        check, added to the schema in the OpenAPI document (app.openapi)."""
        return {}


class ErrorSchema(StrictSchema):
    """Every error answer (app.errors); the OpenAPI document's ``Error`` component."""

    error_code = fields.Integer(required=True, metadata={"description": "stable code, see docs/errors.md"})
    desc = fields.String(required=True, metadata={"description": "fixed description of the code"})
    detail = fields.String(required=True, metadata={"description": "what exactly went wrong"})
