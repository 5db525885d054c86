"""What the OpenAPI document says beyond what the blueprints declare: security schemes and the
error body (tests/api/test_openapi.py checks the document against the API with schemathesis).

Security per operation: the document's default is Basic or Bearer; public operations declare
none (:class:`app.blueprint.Blueprint` does it from what ``app.auth`` treats as public) and those
that take the password only declare :data:`BASIC_ONLY` (``@blp.doc(security=BASIC_ONLY)``).
"""
from __future__ import annotations

from typing import Any

from apispec.ext.marshmallow import MarshmallowPlugin, OpenAPIConverter
from flask_smorest import Api
from marshmallow import Schema, fields

from app.observability import REQUEST_ID_HEADER, REQUEST_ID_RE
from app.schemas import ErrorSchema

BASIC_ONLY: list[dict[str, list[str]]] = [{"basic": []}]
PUBLIC: list[dict[str, list[str]]] = []


class _Converter(OpenAPIConverter):
    """apispec's marshmallow converter, plus what a schema's ``openapi_rules()`` says (anyOf/oneOf/
    not: the rules between fields its ``@validates_schema`` methods check), and nullable nested
    objects that take null only."""

    def field2nullable(self, field: fields.Field, ret: dict[str, Any]) -> dict[str, Any]:
        # apispec writes a nullable nested schema as anyOf [{"type": "object", "nullable": true}, {$ref}],
        # whose first branch takes any object at all; the branch is meant for null only.
        attributes = super().field2nullable(field, ret)
        for branch in attributes.get("anyOf", ()):
            if branch.get("nullable"):
                branch["enum"] = [None]
        return attributes

    def schema2jsonschema(self, schema: Schema) -> dict[str, Any]:
        jsonschema = super().schema2jsonschema(schema)
        rules = getattr(schema, "openapi_rules", None)  # StrictSchema's; not flask-smorest's own schemas
        return {**jsonschema, **(rules() if rules else {})}


# Every answer carries the request's id (the API's own, or the caller's valid one): a caller quotes
# it to an operator, who finds the request's log lines and tasks by it.
_REQUEST_ID_HEADER = {
    "description": "id of the request in the logs and in its tasks; the caller's own when it sent a valid one",
    "schema": {"type": "string", "pattern": REQUEST_ID_RE.pattern},
}
_REQUEST_ID_REF = {"$ref": "#/components/headers/LunaRequestId"}


def _stamp(response: Any) -> None:
    if isinstance(response, dict) and "$ref" not in response:
        response.setdefault("headers", {})[REQUEST_ID_HEADER] = _REQUEST_ID_REF


class _Plugin(MarshmallowPlugin):
    Converter = _Converter

    def operation_helper(self, path: str | None = None, operations: dict[str, Any] | None = None,
                         **kwargs: Any) -> None:
        super().operation_helper(path=path, operations=operations, **kwargs)
        for operation in (operations or {}).values():
            for response in operation.get("responses", {}).values():
                _stamp(response)


def spec_kwargs() -> dict[str, Any]:
    return {
        "marshmallow_plugin": _Plugin(),
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
    api.spec.components.header("LunaRequestId", _REQUEST_ID_HEADER)
    for response in api.spec.components.responses.values():
        _stamp(response)
