"""Daily removal of expired objects from local storage, run by at most one worker at a time.

Every worker's beat schedule may fire the job; the lock in Redis (which every deployment has,
the embedded one included) makes all but one of them return at once.
"""
from __future__ import annotations

import secrets
import time
from abc import ABC, abstractmethod
from datetime import datetime

import redis

from app.image_store.backends.base import ObjectStore

DEFAULT_LOCK_KEY = "facegate:image-store:cleanup"


class LockLost(RuntimeError):
    """The lock expired while its holder was still cleaning (another worker may have started)."""


class CleanupLock(ABC):
    """Non-blocking mutual exclusion. Use one instance per would-be holder."""

    @abstractmethod
    def acquire(self) -> bool:
        """True if this instance now holds the lock; never waits."""

    @abstractmethod
    def release(self) -> None:
        """Give the lock up if this instance holds it; never frees someone else's."""

    @abstractmethod
    def refresh(self) -> None:
        """Called regularly during long work; raises :class:`LockLost` if the lock is gone."""


# Compare-and-act in one server-side step, so a holder whose lock already expired and was taken
# by another worker can neither delete nor extend the new holder's lock.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXTEND = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
           "return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0")


class RedisLock(CleanupLock):
    def __init__(self, client: redis.Redis, key: str = DEFAULT_LOCK_KEY, ttl_s: float = 600.0) -> None:
        """``ttl_s`` bounds how long a crashed holder blocks the others; a live holder keeps
        extending it through :meth:`refresh`."""
        self._client = client
        self._key = key
        self._ttl_ms = int(ttl_s * 1000)
        self._token: str | None = None
        self._refreshed = 0.0
        self._release = client.register_script(_RELEASE)
        self._extend = client.register_script(_EXTEND)

    @classmethod
    def from_url(cls, url: str, key: str = DEFAULT_LOCK_KEY, ttl_s: float = 600.0) -> RedisLock:
        return cls(redis.Redis.from_url(url), key, ttl_s)

    def acquire(self) -> bool:
        token = secrets.token_hex(16)
        if self._client.set(self._key, token, nx=True, px=self._ttl_ms):
            self._token = token
            self._refreshed = time.monotonic()
            return True
        return False

    def release(self) -> None:
        if self._token is not None:
            self._release(keys=[self._key], args=[self._token])
            self._token = None

    def refresh(self) -> None:
        if self._token is None:
            raise LockLost(f"lock {self._key!r} is not held")
        # Extending on every heartbeat would cost a round trip per directory; a third of the TTL
        # leaves ample margin.
        if (time.monotonic() - self._refreshed) * 1000 < self._ttl_ms / 3:
            return
        if not self._extend(keys=[self._key], args=[self._token, self._ttl_ms]):
            self._token = None
            raise LockLost(f"lock {self._key!r} expired while held")
        self._refreshed = time.monotonic()


def run_cleanup(store: ObjectStore, lock: CleanupLock, now: datetime | None = None) -> int | None:
    """Remove expired objects; ``None`` when another worker holds the lock."""
    if not lock.acquire():
        return None
    try:
        return store.cleanup_expired(now, heartbeat=lock.refresh)
    finally:
        lock.release()
