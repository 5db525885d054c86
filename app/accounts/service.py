"""Accounts: creation, lookup, password checks."""
from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app import settings
from app.accounts.models import Account
from app.errors import APIError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def create_account(session: Session, *, login: str, password: str, account_type: str,
                   description: str = "", account_id: uuid.UUID | None = None) -> Account:
    login = login.strip().lower()
    if session.scalar(select(Account.account_id).where(Account.login == login)) is not None:
        raise APIError("login_exists", f"login {login} is taken")
    if account_id is not None and session.get(Account, account_id) is not None:
        raise APIError("account_id_exists", f"account_id {account_id} is taken")
    account = Account(account_id=account_id or uuid.uuid4(), login=login,
                      password_hash=hash_password(password), account_type=account_type,
                      description=description)
    session.add(account)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent request took the login between check and insert
        raise APIError("login_exists", f"login {login} is taken") from exc
    return account


def get_account(session: Session, account_id: uuid.UUID) -> Account:
    account = session.get(Account, account_id)
    if account is None:
        raise APIError("account_not_found", f"account {account_id} not found")
    return account


def update_account(session: Session, account: Account, changes: dict[str, Any]) -> Account:
    if "password" in changes:
        account.password_hash = hash_password(changes.pop("password"))
    for key, value in changes.items():
        setattr(account, key, value)
    session.flush()
    return account


class _VerifiedCache:
    """Remembers recently verified credentials so Basic auth costs one hash per ``auth_cache_s``.

    The key covers the stored hash, so a password change invalidates it at once.
    """

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._items: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(login: str, password: str, stored_hash: str) -> str:
        return hashlib.sha256("\0".join((login, password, stored_hash)).encode()).hexdigest()

    def hit(self, key: str) -> bool:
        with self._lock:
            until = self._items.get(key)
            if until is None or until < time.monotonic():
                self._items.pop(key, None)
                return False
            return True

    def add(self, key: str, ttl: float) -> None:
        with self._lock:
            self._items[key] = time.monotonic() + ttl
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


_verified = _VerifiedCache()


def authenticate(session: Session, login: str, password: str) -> Account:
    """The account for a login/password pair, or ``bad_credentials``."""
    account = session.scalar(select(Account).where(Account.login == login.strip().lower()))
    if account is None:
        _hasher.hash(password)  # spend the same time as a real check: logins are not enumerable
        raise APIError("bad_credentials")
    key = _VerifiedCache.key(account.login, password, account.password_hash)
    if _verified.hit(key):
        return account
    try:
        _hasher.verify(account.password_hash, password)
    except (VerificationError, InvalidHashError):
        raise APIError("bad_credentials") from None
    _verified.add(key, settings.current().auth_cache_s)
    return account
