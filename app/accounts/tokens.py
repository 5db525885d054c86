"""Tokens: permissions, JWT signing and verification.

A JWT carries only the token id and account id. Permissions and expiry live in the database and
are read on every request, so a PATCH or DELETE of a token, or deleting its account, applies to
tokens already handed out. The signing algorithm is HS256 unless an ECDSA P-256 key is
configured (then ES256); verification accepts only the algorithm in force, so switching it
invalidates every earlier token, and ``alg: none`` is never accepted.
"""
from __future__ import annotations

import base64
import os
import secrets
import uuid
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from sqlalchemy.orm import Session

from app import settings
from app.accounts.models import Token
from app.errors import APIError
from app.pagination import paginate
from app.scope import Scope, get_or_404, scoped

# What a token may be allowed, per resource. "matching" exists only where matching applies.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "account": ("view",),
    "face": ("view", "creation", "modification", "deletion", "matching"),
    "list": ("view", "creation", "modification", "deletion"),
    "attribute": ("view", "creation", "modification", "deletion", "matching"),
    "event": ("view", "creation", "deletion", "matching"),
    "general_event": ("view", "creation"),
    "face_sample": ("view", "creation", "deletion"),
    "body_sample": ("view", "creation", "deletion"),
    "image": ("view", "creation", "deletion"),
    "object": ("view", "creation", "deletion"),
    "handler": ("view", "creation", "modification", "deletion"),
    "verifier": ("view", "creation", "modification", "deletion"),
    "task": ("view", "creation", "modification", "deletion"),
    "sdk": ("creation",),
}
VISIBILITY_AREAS = ("account", "all")


def validate_permissions(permissions: dict[str, list[str]]) -> dict[str, list[str]]:
    clean: dict[str, list[str]] = {}
    for resource, actions in permissions.items():
        allowed = PERMISSIONS.get(resource)
        if allowed is None:
            raise APIError("validation", f"permissions.{resource}: unknown resource; one of {sorted(PERMISSIONS)}")
        bad = sorted(set(actions) - set(allowed))
        if bad:
            raise APIError("validation", f"permissions.{resource}: {bad} not allowed; one of {list(allowed)}")
        clean[resource] = sorted(set(actions), key=allowed.index)
    return clean


class _Keys:
    def __init__(self, algorithm: str, signing: Any, verifying: Any) -> None:
        self.algorithm = algorithm
        self.signing = signing
        self.verifying = verifying


def _hs256_secret(s: settings.Settings) -> str:
    if s.jwt_secret:
        return s.jwt_secret
    path = Path(s.data_dir) / "jwt.secret"
    if not path.exists():
        settings.private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_urlsafe(48).encode())
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    return path.read_text().strip()


@lru_cache(maxsize=4)
def _keys_for(ecdsa_key: str, ecdsa_password: str, hs_secret: str) -> _Keys:
    if ecdsa_key:
        pem = base64.b64decode(ecdsa_key)
        key = load_pem_private_key(pem, password=ecdsa_password.encode() or None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("jwt_ecdsa_key must be an ECDSA P-256 private key")
        return _Keys("ES256", key, key.public_key())
    return _Keys("HS256", hs_secret, hs_secret)


def keys() -> _Keys:
    s = settings.current()
    return _keys_for(s.jwt_ecdsa_key, s.jwt_ecdsa_key_password, "" if s.jwt_ecdsa_key else _hs256_secret(s))


def encode(token: Token) -> str:
    k = keys()
    claims = {"token_id": str(token.token_id), "account_id": str(token.account_id),
              "iat": int(token.create_time.timestamp())}
    return jwt.encode(claims, k.signing, algorithm=k.algorithm)


def verify(session: Session, raw: str) -> Token:
    """The live token behind a JWT, or ``token_invalid`` / ``token_expired``."""
    k = keys()
    try:
        claims = jwt.decode(raw, k.verifying, algorithms=[k.algorithm],
                            options={"require": ["token_id", "account_id"]})
        ids = [claims["token_id"], claims["account_id"]]
        if not all(isinstance(i, str) for i in ids):  # a signed number, list or object is no id either
            raise ValueError("token_id and account_id must be UUID strings")
        token_id, account_id = (uuid.UUID(i) for i in ids)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise APIError("token_invalid", "token signature or format is not valid") from None
    # The JWT's own account is the scope: a token of a deleted account, or one whose claims were
    # mixed from two tokens, is absent.
    try:
        token = get_or_404(session, Token, token_id, Scope.of(account_id))
    except APIError:
        raise APIError("token_invalid", "token was revoked or its account deleted") from None
    expires = token.expiration_time
    if expires is not None and expires <= datetime.now(timezone.utc):
        raise APIError("token_expired", f"token expired at {expires.isoformat()}")
    return token


def create_token(session: Session, scope: Scope, *, permissions: dict[str, list[str]],
                 description: str = "", expiration_time: datetime | None = None,
                 visibility_area: str = "account") -> Token:
    token = Token(account_id=scope.owner, permissions=validate_permissions(permissions),
                  description=description, expiration_time=expiration_time,
                  visibility_area=visibility_area, create_time=datetime.now(timezone.utc))
    session.add(token)
    session.flush()
    return token


def list_tokens(session: Session, scope: Scope, page: int, page_size: int) -> list[Token]:
    return paginate(session, scoped(Token, scope).order_by(Token.create_time, Token.token_id), page, page_size)


def update_token(session: Session, token: Token, changes: dict[str, Any]) -> Token:
    if "permissions" in changes:
        changes["permissions"] = validate_permissions(changes["permissions"])
    for key, value in changes.items():
        setattr(token, key, value)
    session.flush()
    return token
