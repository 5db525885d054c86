"""/accounts (registration and the caller's own account) and /tokens (JWTs with their own permissions)."""
from __future__ import annotations

import uuid
from typing import Any

from flask import g

from app import settings
from app.accounts import service, tokens
from app.accounts.models import ACCOUNT_TYPES, Token
from app.accounts.schemas import (
    AccountCreatedSchema,
    AccountCreateSchema,
    AccountPatchSchema,
    AccountSchema,
    TokenCreatedSchema,
    TokenCreateSchema,
    TokenListSchema,
    TokenPatchSchema,
    TokenSchema,
)
from app.auth import current_principal, public, require, require_basic_auth
from app.blueprint import Blueprint
from app.db import session_scope
from app.errors import APIError
from app.openapi import BASIC_ONLY
from app.pagination import PaginationArgs, page_answer
from app.scope import get_or_404

accounts_blp = Blueprint("accounts", __name__, url_prefix="/accounts", description="Accounts")


def _own(account_id: uuid.UUID) -> None:
    # Another account's id answers 404, not 403, so ids cannot be probed.
    if current_principal().account_id != account_id:
        raise APIError("account_not_found", f"account {account_id} not found")


@accounts_blp.route("", methods=["POST"])
@accounts_blp.arguments(AccountCreateSchema)
@accounts_blp.response(201, AccountCreatedSchema)
@public
def create_account(body: dict[str, Any]) -> dict[str, Any]:
    """Create an account. Anyone may register a `user` account while `open_registration` is on;
    `advanced_user` (reads across accounts) and `admin` accounts, and any account while
    registration is closed, are created by an admin (Basic auth of an admin account)."""
    caller = g.principal
    by_admin = caller is not None and caller.account_type == "admin" and caller.permissions is None
    if body["account_type"] != "user" and not by_admin:
        raise APIError("account_type_forbidden", f"{body['account_type']} accounts are created by an admin")
    if not settings.current().open_registration and not by_admin:
        raise APIError("registration_closed", "ask an administrator to create the account")
    with session_scope() as session:
        account = service.create_account(session, **body)
        return {"account_id": account.account_id}


@accounts_blp.route("/<uuid:account_id>", methods=["GET"])
@accounts_blp.response(200, AccountSchema)
@require("account", "view", account_types=ACCOUNT_TYPES)
def get_account(account_id: uuid.UUID) -> Any:
    """The caller's own account."""
    _own(account_id)
    with session_scope() as session:
        return service.get_account(session, account_id)


@accounts_blp.route("/<uuid:account_id>", methods=["PATCH"])
@accounts_blp.arguments(AccountPatchSchema)
@accounts_blp.response(200, AccountSchema)
@accounts_blp.doc(security=BASIC_ONLY)
def patch_account(body: dict[str, Any], account_id: uuid.UUID) -> Any:
    """Change the password or description (Basic auth only)."""
    require_basic_auth()
    _own(account_id)
    with session_scope() as session:
        return service.update_account(session, service.get_account(session, account_id), body)


@accounts_blp.route("/<uuid:account_id>", methods=["DELETE"])
@accounts_blp.response(204)
@accounts_blp.doc(security=BASIC_ONLY)
def delete_account(account_id: uuid.UUID) -> None:
    """Delete the account and revoke its tokens (Basic auth only)."""
    require_basic_auth()
    _own(account_id)
    with session_scope() as session:
        session.delete(service.get_account(session, account_id))


# ---- tokens ------------------------------------------------------------
tokens_blp = Blueprint("tokens", __name__, url_prefix="/tokens", description="Tokens")


def _check_visibility(visibility_area: str | None, account_type: str) -> None:
    if visibility_area == "all" and account_type != "advanced_user":
        # The value is valid; this account may not hold it (as with the account types of POST /accounts).
        raise APIError("account_type_forbidden", "visibility_area 'all' needs an advanced_user account")


@tokens_blp.route("", methods=["POST"])
@tokens_blp.arguments(TokenCreateSchema)
@tokens_blp.response(201, TokenCreatedSchema)
@tokens_blp.doc(security=BASIC_ONLY)
def create_token(body: dict[str, Any]) -> dict[str, Any]:
    """Issue a token (Basic auth only)."""
    principal = require_basic_auth()
    _check_visibility(body.get("visibility_area"), principal.account_type)
    with session_scope() as session:
        token = tokens.create_token(session, principal.scope, **body)
        return {"token_id": token.token_id, "token": tokens.encode(token)}


@tokens_blp.route("", methods=["GET"])
@tokens_blp.arguments(PaginationArgs, location="query")
@tokens_blp.response(200, TokenListSchema)
@require("account", "view", account_types=ACCOUNT_TYPES)
def list_tokens(args: dict[str, Any]) -> dict[str, Any]:
    """The account's tokens, oldest first."""
    with session_scope() as session:
        found = tokens.list_tokens(session, current_principal().scope, args["page"], args["page_size"])
        return page_answer("tokens", found, args["page"], args["page_size"])


@tokens_blp.route("/<uuid:token_id>", methods=["GET"])
@tokens_blp.response(200, TokenSchema)
@require("account", "view", account_types=ACCOUNT_TYPES)
def get_token(token_id: uuid.UUID) -> Any:
    with session_scope() as session:
        return get_or_404(session, Token, token_id, current_principal().scope)


@tokens_blp.route("/<uuid:token_id>", methods=["PATCH"])
@tokens_blp.arguments(TokenPatchSchema)
@tokens_blp.response(200, TokenSchema)
@tokens_blp.doc(security=BASIC_ONLY)
def patch_token(body: dict[str, Any], token_id: uuid.UUID) -> Any:
    """Change permissions, description, expiry; applies to the issued JWT at once (Basic auth only)."""
    principal = require_basic_auth()
    _check_visibility(body.get("visibility_area"), principal.account_type)
    with session_scope() as session:
        return tokens.update_token(session, get_or_404(session, Token, token_id, principal.scope), body)


@tokens_blp.route("/<uuid:token_id>", methods=["DELETE"])
@tokens_blp.response(204)
@tokens_blp.doc(security=BASIC_ONLY)
def delete_token(token_id: uuid.UUID) -> None:
    """Revoke a token (Basic auth only)."""
    principal = require_basic_auth()
    with session_scope() as session:
        session.delete(get_or_404(session, Token, token_id, principal.scope))


BLUEPRINTS = [accounts_blp, tokens_blp]
