"""Who is calling, and what they may do.

Authentication runs before every request except the public endpoints. Basic auth (login and
password) acts with the account's full rights; a Bearer JWT acts with its token's permissions.
Handlers declare what they need with :func:`require` and hand services the caller's scope:
:attr:`Principal.scope` (the caller's own account: every write, and reads of things only the owner
may see) or :meth:`Principal.read_scope` (reads, across accounts for advanced users), so one
account never sees another's data.
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from functools import wraps
from typing import Any, Callable, TypeVar

from flask import g, request
from werkzeug.routing import WebsocketMismatch

from app.accounts import service as accounts_service
from app.accounts import tokens as tokens_service
from app.db import session_scope
from app.errors import APIError
from app.scope import ALL_ACCOUNTS, Scope

F = TypeVar("F", bound=Callable[..., Any])

PUBLIC_ENDPOINTS = {"system.version", "system.healthcheck", "api-docs.openapi_json", "api-docs.openapi_swagger_ui",
                    "swagger_static", "static"}


@dataclass(frozen=True)
class Principal:
    account_id: uuid.UUID
    account_type: str
    # None: Basic auth, every permission of the account; otherwise the token's grant.
    permissions: dict[str, list[str]] | None
    token_id: uuid.UUID | None = None
    visibility_area: str = "account"

    def allowed(self, resource: str, action: str) -> bool:
        if self.permissions is None:
            return True
        return action in self.permissions.get(resource, [])

    @property
    def reads_all_accounts(self) -> bool:
        return self.account_type == "advanced_user" and (self.permissions is None or self.visibility_area == "all")

    @property
    def scope(self) -> Scope:
        """The caller's own account."""
        return Scope.of(self.account_id)

    def read_scope(self, requested: uuid.UUID | None = None) -> Scope:
        """Whose data a read covers: an advanced user reads any one account, or all of them when
        none is asked for; everyone else only their own."""
        if self.reads_all_accounts:
            return ALL_ACCOUNTS if requested is None else Scope.of(requested)
        if requested is not None and requested != self.account_id:
            raise APIError("forbidden", "this account may only read its own data")
        return self.scope


def _authenticate() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    with session_scope() as session:
        if scheme == "basic":
            try:
                login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
            except ValueError:  # bad base64 (binascii.Error), non-ASCII header text, bytes not UTF-8
                raise APIError("bad_credentials", "malformed Basic credentials") from None
            if not sep:
                raise APIError("bad_credentials", "malformed Basic credentials")
            account = accounts_service.authenticate(session, login, password)
            return Principal(account.account_id, account.account_type, None)
        if scheme == "bearer" and value:
            token = tokens_service.verify(session, value.strip())
            return Principal(token.account_id, token.account.account_type, token.permissions,
                             token.token_id, token.visibility_area)
    raise APIError("auth_required", "send Authorization: Basic <login:password> or Bearer <token>")


def is_public(endpoint: str, view: Callable[..., Any] | None) -> bool:
    """Whether anonymous callers reach the endpoint (its OpenAPI operation declares no security)."""
    return endpoint in PUBLIC_ENDPOINTS or getattr(view, "_public", False)


def authenticate_request() -> None:
    """``before_request`` hook: sets ``g.principal`` on every non-public endpoint, and on a public
    one when credentials are sent (an admin registering an advanced user)."""
    g.principal = None
    if isinstance(request.routing_exception, WebsocketMismatch):
        g.principal = _authenticate()  # who is asking comes before how: 401 first, then the 400
        return
    if request.endpoint is None or request.endpoint in PUBLIC_ENDPOINTS:
        return
    if is_public(request.endpoint, _view()) and "Authorization" not in request.headers:
        return
    g.principal = _authenticate()


def _view() -> Callable[..., Any] | None:
    from flask import current_app

    return current_app.view_functions.get(request.endpoint or "")


def current_principal() -> Principal:
    principal = g.get("principal")
    if principal is None:
        raise APIError("auth_required")
    return principal


def public(func: F) -> F:
    """Mark a view as open to anonymous callers (e.g. open account registration)."""
    func._public = True  # type: ignore[attr-defined]
    return func


def require(resource: str, action: str, account_types: tuple[str, ...] = ("user", "advanced_user")) -> Callable[[F], F]:
    """Allow the view only to these account types holding ``action`` on ``resource``.

    Admin accounts act through the admin resources, so ordinary resources refuse them.
    """
    if action not in tokens_service.PERMISSIONS.get(resource, ()):
        raise ValueError(f"{resource}:{action} is not a known permission")

    def decorate(func: F) -> F:
        @wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal.account_type not in account_types:
                raise APIError("account_type_forbidden",
                               f"account type {principal.account_type} cannot use this resource")
            if not principal.allowed(resource, action):
                raise APIError("forbidden", f"token lacks '{action}' permission on '{resource}'")
            return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def require_basic_auth() -> Principal:
    """Token management needs the password: a token must not mint itself wider rights."""
    principal = current_principal()
    if principal.permissions is not None:
        raise APIError("forbidden", "tokens are managed with Basic auth (login and password)")
    return principal
