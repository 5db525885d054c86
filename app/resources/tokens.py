"""/tokens: JWTs of the calling account, each with its own permissions and expiry."""
from __future__ import annotations

import uuid
from typing import Any

from app.resources.blueprint import Blueprint

from app.auth import current_principal, require, require_basic_auth
from app.db import session_scope
from app.models.accounts import ACCOUNT_TYPES
from app.errors import APIError
from app.schemas.common import PaginationArgs
from app.schemas.tokens import TokenCreatedSchema, TokenCreateSchema, TokenListSchema, TokenPatchSchema, TokenSchema
from app.services import tokens as service

blp = Blueprint("tokens", __name__, url_prefix="/tokens", description="Tokens")


def _check_visibility(visibility_area: str | None, account_type: str) -> None:
    if visibility_area == "all" and account_type != "advanced_user":
        raise APIError("validation", "visibility_area: 'all' needs an advanced_user account")


@blp.route("", methods=["POST"])
@blp.arguments(TokenCreateSchema)
@blp.response(201, TokenCreatedSchema)
def create_token(body: dict[str, Any]) -> dict[str, Any]:
    """Issue a token (Basic auth only)."""
    principal = require_basic_auth()
    _check_visibility(body.get("visibility_area"), principal.account_type)
    with session_scope() as session:
        token = service.create_token(session, principal.account_id, **body)
        return {"token_id": token.token_id, "token": service.encode(token)}


@blp.route("", methods=["GET"])
@blp.arguments(PaginationArgs, location="query")
@blp.response(200, TokenListSchema)
@require("account", "view", account_types=ACCOUNT_TYPES)
def list_tokens(args: dict[str, Any]) -> dict[str, Any]:
    """The account's tokens, oldest first."""
    with session_scope() as session:
        tokens = service.list_tokens(session, current_principal().account_id, args["page"], args["page_size"])
        return {"tokens": tokens, **args}


@blp.route("/<uuid:token_id>", methods=["GET"])
@blp.response(200, TokenSchema)
@require("account", "view", account_types=ACCOUNT_TYPES)
def get_token(token_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return service.get_token(session, current_principal().account_id, token_id)


@blp.route("/<uuid:token_id>", methods=["PATCH"])
@blp.arguments(TokenPatchSchema)
@blp.response(200, TokenSchema)
def patch_token(body: dict[str, Any], token_id: uuid.UUID) -> Any:
    """Change permissions, description, expiry; applies to the issued JWT at once (Basic auth only)."""
    principal = require_basic_auth()
    _check_visibility(body.get("visibility_area"), principal.account_type)
    with session_scope() as session:
        return service.update_token(session, service.get_token(session, principal.account_id, token_id), body)


@blp.route("/<uuid:token_id>", methods=["DELETE"])
@blp.response(204)
def delete_token(token_id: uuid.UUID) -> None:
    """Revoke a token (Basic auth only)."""
    principal = require_basic_auth()
    with session_scope() as session:
        session.delete(service.get_token(session, principal.account_id, token_id))
