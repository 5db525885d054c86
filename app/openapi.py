"""What the OpenAPI document says beyond what the blueprints declare: security schemes and the
operation-level corrections that keep the document true to the API (checked by schemathesis)."""
from __future__ import annotations

from typing import Any

from flask_smorest import Api


def spec_kwargs() -> dict[str, Any]:
    return {
        "components": {"securitySchemes": {
            "basic": {"type": "http", "scheme": "basic"},
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
        "security": [{"basic": []}, {"bearer": []}],
    }


def document(api: Api) -> None:
    """Called once every blueprint is registered."""
