"""The cleanup lock: of two concurrent cleaners exactly one cleans, with Redis and with a file."""
from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import redis

from app.storage import LocalStore
from app.storage.cleanup import CleanupLock, FileLock, LockLost, RedisLock, run_cleanup


@pytest.fixture(params=["redis", "file"])
def make_lock(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], CleanupLock]:
    """Each call is a separate would-be holder (its own connection / its own open file)."""
    if request.param == "redis":
        client = request.getfixturevalue("redis_client")
        key = request.getfixturevalue("redis_key")
        return lambda: RedisLock(redis.Redis(connection_pool=client.connection_pool), key, ttl_s=30)
    path = tmp_path / "cleanup.lock"
    return lambda: FileLock(path)


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


def _hold_file_lock(path: str, held: multiprocessing.synchronize.Event) -> None:
    lock = FileLock(path)
    assert lock.acquire()
    held.set()
    time.sleep(60)  # killed by the test long before


def test_file_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "cleanup.lock")
    ctx = multiprocessing.get_context("fork")
    held = ctx.Event()
    holder = ctx.Process(target=_hold_file_lock, args=(path, held))
    holder.start()
    try:
        assert held.wait(10)
        assert not FileLock(path).acquire()
    finally:
        holder.kill()
        holder.join(10)
    lock = FileLock(path)  # the kernel dropped the dead holder's lock
    assert lock.acquire()
    lock.release()


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
