"""/accounts: registration and the caller's own account."""
from __future__ import annotations

import uuid
from typing import Any

from app.resources.blueprint import Blueprint

from app import settings
from app.auth import current_principal, public, require, require_basic_auth
from app.db import session_scope
from app.models.accounts import ACCOUNT_TYPES
from app.errors import APIError
from app.schemas.accounts import AccountCreatedSchema, AccountCreateSchema, AccountPatchSchema, AccountSchema
from app.services import accounts as service

blp = Blueprint("accounts", __name__, url_prefix="/accounts", description="Accounts")


def _own(account_id: uuid.UUID) -> None:
    # Another account's id answers 404, not 403, so ids cannot be probed.
    if current_principal().account_id != account_id:
        raise APIError("account_not_found", f"account {account_id} not found")


@blp.route("", methods=["POST"])
@blp.arguments(AccountCreateSchema)
@blp.response(201, AccountCreatedSchema)
@public
def create_account(body: dict[str, Any]) -> dict[str, Any]:
    """Create a user or advanced_user account (open when `open_registration` is on)."""
    if not settings.current().open_registration:
        raise APIError("registration_closed", "ask an administrator to create the account")
    with session_scope() as session:
        account = service.create_account(session, **body)
        return {"account_id": account.account_id}


@blp.route("/<uuid:account_id>", methods=["GET"])
@blp.response(200, AccountSchema)
@require("account", "view", account_types=ACCOUNT_TYPES)
def get_account(account_id: uuid.UUID) -> Any:
    """The caller's own account."""
    _own(account_id)
    with session_scope() as session:
        return service.get_account(session, account_id)


@blp.route("/<uuid:account_id>", methods=["PATCH"])
@blp.arguments(AccountPatchSchema)
@blp.response(200, AccountSchema)
def patch_account(body: dict[str, Any], account_id: uuid.UUID) -> Any:
    """Change the password or description (Basic auth only)."""
    require_basic_auth()
    _own(account_id)
    with session_scope() as session:
        return service.update_account(session, service.get_account(session, account_id), body)


@blp.route("/<uuid:account_id>", methods=["DELETE"])
@blp.response(204)
def delete_account(account_id: uuid.UUID) -> None:
    """Delete the account and revoke its tokens (Basic auth only)."""
    require_basic_auth()
    _own(account_id)
    with session_scope() as session:
        session.delete(service.get_account(session, account_id))
