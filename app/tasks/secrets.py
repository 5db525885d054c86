"""Secrets inside task bodies and notification policies (source passwords, S3 keys, callback
tokens): encrypted at rest with Fernet when ``fernet_passphrase`` and ``salt`` are set, and never
shown back through the API.

A sealed value is the string ``fernet:<token>``; a value without that prefix is plain (stored
before encryption was turned on). ``facegate tasks reencrypt`` seals the plain ones (and re-seals
under new settings with ``--old-passphrase``/``--old-salt``).
"""
from __future__ import annotations

import base64
import copy
from functools import lru_cache
from typing import Any, Iterable, Mapping

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from app import settings

PREFIX = "fernet:"
HIDDEN = "***"
# The secret fields of a notification policy's callbacks.
POLICY_SECRETS = ("task_callbacks.*.authorization.password", "task_callbacks.*.authorization.token")


@lru_cache(maxsize=4)
def _fernet(passphrase: str, salt: str) -> Fernet:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt.encode(), iterations=390_000)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(passphrase.encode())))


def _current() -> Fernet | None:
    s = settings.current()
    return _fernet(s.fernet_passphrase, s.salt) if s.fernet_passphrase and s.salt else None


def seal(value: str, fernet: Fernet | None = None) -> str:
    """``value`` encrypted when encryption is on (or with ``fernet``), else as it is."""
    key = fernet or _current()
    if key is None or value.startswith(PREFIX):
        return value
    return PREFIX + key.encrypt(value.encode()).decode()


def unseal(value: str, fernet: Fernet | None = None) -> str:
    """The plain text of a stored secret; a sealed one needs the key it was sealed with."""
    if not value.startswith(PREFIX):
        return value
    key = fernet or _current()
    if key is None:
        raise ValueError("a stored secret is encrypted, but fernet_passphrase and salt are not set")
    try:
        return key.decrypt(value[len(PREFIX):].encode()).decode()
    except InvalidToken:
        raise ValueError("a stored secret does not decrypt with the configured fernet_passphrase and salt") from None


def _apply(value: Any, path: list[str], change: Any) -> None:
    if not path or value is None:
        return
    head, rest = path[0], path[1:]
    items = value if head == "*" and isinstance(value, list) else [value] if head == "*" else None
    if items is not None:
        for item in items:
            _apply(item, rest, change)
        return
    if not isinstance(value, dict) or head not in value:
        return
    if rest:
        _apply(value[head], rest, change)
    elif isinstance(value[head], str):
        value[head] = change(value[head])


def _each(value: Any, paths: Iterable[str], change: Any) -> Any:
    out = copy.deepcopy(value)
    for path in paths:
        _apply(out, path.split("."), change)
    return out


def sealed(content: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    return _each(dict(content), paths, seal)


def opened(content: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    return _each(dict(content), paths, unseal)


def hidden(content: Mapping[str, Any], paths: Iterable[str]) -> dict[str, Any]:
    return _each(dict(content), paths, lambda _: HIDDEN)


def resealed(content: Mapping[str, Any], paths: Iterable[str], old: Fernet | None) -> dict[str, Any]:
    """Secrets opened with ``old`` (None: they were plain or sealed with the current key) and
    sealed with the current key."""
    return _each(dict(content), paths, lambda v: seal(unseal(v, old)))


def sealed_policy(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if policy is None else sealed(policy, POLICY_SECRETS)


def opened_policy(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if policy is None else opened(policy, POLICY_SECRETS)


def hidden_policy(policy: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if policy is None else hidden(policy, POLICY_SECRETS)


def key_from(passphrase: str, salt: str) -> Fernet:
    """The key of another passphrase and salt (re-encrypting secrets sealed under old settings)."""
    return _fernet(passphrase, salt)
