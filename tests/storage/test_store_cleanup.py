"""The cleanup lock in Redis: of two concurrent cleaners exactly one cleans."""
from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from app.image_store.backends import LocalStore
from app.image_store.backends.cleanup import CleanupLock, LockLost, RedisLock, run_cleanup


@pytest.fixture()
def make_lock(redis_client: redis.Redis, redis_key: str) -> Callable[[], CleanupLock]:
    """Each call is a separate would-be holder (its own connection)."""
    return lambda: RedisLock(redis.Redis(connection_pool=redis_client.connection_pool), redis_key, ttl_s=30)


class SlowCleanup(LocalStore):
    """A real local store whose cleanup pauses until the test lets it finish, so the two cleaners
    are guaranteed to overlap."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.entered = threading.Event()
        self.may_finish = threading.Event()
        self.runs = 0

    def cleanup_expired(self, now: datetime | None = None,
                        heartbeat: Callable[[], None] | None = None) -> int:
        self.runs += 1
        self.entered.set()
        assert self.may_finish.wait(10)
        return super().cleanup_expired(now, heartbeat)


def test_exactly_one_of_two_concurrent_cleaners_runs(make_lock: Callable[[], CleanupLock],
                                                     tmp_path: Path) -> None:
    store = SlowCleanup(tmp_path / "store")
    store.create_bucket("samples")
    for _ in range(3):
        store.put("samples", str(uuid.uuid4()), b"x", account_id="a", ttl_days=1)
    later = store._clock() + timedelta(days=2)
    start = threading.Barrier(2)
    results: list[int | None] = []

    def cleaner() -> None:
        lock = make_lock()
        start.wait()
        results.append(run_cleanup(store, lock, later))

    threads = [threading.Thread(target=cleaner) for _ in range(2)]
    for t in threads:
        t.start()
    assert store.entered.wait(10)
    deadline = time.monotonic() + 10
    while not results and time.monotonic() < deadline:  # the loser returns while the winner cleans
        time.sleep(0.01)
    store.may_finish.set()
    for t in threads:
        t.join(10)

    assert sorted(results, key=str) == [3, None]
    assert store.runs == 1
    # Released afterwards: the next run gets the lock (and finds nothing left to do).
    assert run_cleanup(store, make_lock(), later) == 0


def test_redis_lock_expires_and_never_frees_a_successor(redis_client: redis.Redis, redis_key: str) -> None:
    crashed = RedisLock(redis_client, redis_key, ttl_s=0.2)
    assert crashed.acquire()
    successor = RedisLock(redis_client, redis_key, ttl_s=30)
    assert not successor.acquire()
    time.sleep(0.3)  # the holder "crashed": its lock times out
    assert successor.acquire()
    token = redis_client.get(redis_key)

    time.sleep(0.1)
    with pytest.raises(LockLost):
        crashed.refresh()
    crashed.release()  # must be a no-op: the key is the successor's now
    assert redis_client.get(redis_key) == token
    successor.release()
    assert redis_client.get(redis_key) is None


def test_redis_lock_refresh_extends_a_live_holder(redis_client: redis.Redis, redis_key: str) -> None:
    lock = RedisLock(redis_client, redis_key, ttl_s=0.6)
    assert lock.acquire()
    for _ in range(4):  # 0.8 s in all: longer than the TTL
        time.sleep(0.2)
        lock.refresh()
    assert redis_client.pttl(redis_key) > 300
    assert not RedisLock(redis_client, redis_key).acquire()
    lock.release()


def test_lost_lock_aborts_the_cleanup(redis_client: redis.Redis, redis_key: str, tmp_path: Path) -> None:
    class StallingStore(LocalStore):
        """Stalls past the lock's TTL before its first directory; meanwhile another worker takes
        the expired lock."""

        def cleanup_expired(self, now: datetime | None = None,
                            heartbeat: Callable[[], None] | None = None) -> int:
            time.sleep(0.3)
            assert redis_client.set(redis_key, "another-worker", nx=True)
            return super().cleanup_expired(now, heartbeat)

    store = StallingStore(tmp_path / "store")
    store.create_bucket("samples")
    ids = [str(uuid.uuid4()) for _ in range(2)]
    for object_id in ids:
        store.put("samples", object_id, b"x", account_id="a", ttl_days=1)

    with pytest.raises(LockLost):
        run_cleanup(store, RedisLock(redis_client, redis_key, ttl_s=0.2), store._clock() + timedelta(days=2))
    assert redis_client.get(redis_key) == b"another-worker"  # its lock was left alone
    assert [store.head("samples", object_id, None).id for object_id in ids] == ids  # nothing cleaned
