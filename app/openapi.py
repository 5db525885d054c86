"""What the OpenAPI document says beyond what the blueprints declare: security schemes and the
error body (tests/api/test_openapi.py checks the document against the API with schemathesis).

Security per operation: the document's default is Basic or Bearer; public operations declare
none (:class:`app.blueprint.Blueprint` does it from what ``app.auth`` treats as public) and those
that take the password only declare :data:`BASIC_ONLY` (``@blp.doc(security=BASIC_ONLY)``).
"""
from __future__ import annotations

from typing import Any

from flask_smorest import Api

from app.schemas import ErrorSchema

BASIC_ONLY: list[dict[str, list[str]]] = [{"basic": []}]
PUBLIC: list[dict[str, list[str]]] = []


def spec_kwargs() -> dict[str, Any]:
    return {
        "components": {"securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"basic": []}, {"bearer": []}],
    }


def document(api: Api) -> None:
    """Called once every blueprint is registered.

    flask-smorest documents every error response (each operation's ``default``, and the 400 of its
    arguments) with its own ``Error`` component (code/status/message/errors); the API answers
    :class:`app.schemas.ErrorSchema` instead, so that component becomes ours.
    """
    api.spec.components.schemas["Error"] = api.ma_plugin.converter.schema2jsonschema(ErrorSchema)
