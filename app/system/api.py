"""Service-level resources: version, health, effective configuration, worker round trip."""
from __future__ import annotations

from typing import Any

from marshmallow import fields

from app import __version__, dispatch, settings
from app.auth import current_principal, require
from app.blueprint import Blueprint
from app.errors import APIError
from app.schemas import StrictSchema
from app.system import health

blp = Blueprint("system", __name__, description="Version, health and configuration")


class VersionSchema(StrictSchema):
    service = fields.String()
    version = fields.String()
    api_version = fields.Integer()


class HealthSchema(StrictSchema):
    status = fields.String()
    checks = fields.Dict(keys=fields.String(), values=fields.String())


class PingSchema(StrictSchema):
    task_id = fields.String()
    result = fields.Dict()


@blp.route("/version", methods=["GET"])
@blp.response(200, VersionSchema)
def version() -> dict[str, Any]:
    return {"service": "facegate", "version": __version__, "api_version": 1}


@blp.route("/healthcheck", methods=["GET"])
@blp.response(200, HealthSchema)
def healthcheck() -> dict[str, Any]:
    """Database, broker, result backend and image store; 503 names each failing part."""
    report = health.run_checks()
    failing = {k: v for k, v in report.items() if v != "ok"}
    if failing:
        raise APIError("unhealthy", "; ".join(f"{k}: {v}" for k, v in failing.items()))
    return {"status": "ok", "checks": report}


@blp.route("/configs", methods=["GET"])
@blp.response(200)
def configs() -> dict[str, Any]:
    """Effective settings with secrets masked (admin accounts only)."""
    if current_principal().account_type != "admin":
        raise APIError("account_type_forbidden", "only admin accounts may read the configuration")
    return settings.current().as_dict(mask_secrets=True)


@blp.route("/system/ping", methods=["POST"])
@blp.response(200, PingSchema)
@require("task", "creation")
def ping() -> dict[str, Any]:
    """Send a trivial task through the `cpu` queue and wait for a worker's answer (503 if none)."""
    sent = dispatch.send(dispatch.task("system.ping"))
    return {"task_id": sent.id, "result": dispatch.wait(sent)}


BLUEPRINTS = [blp]
