"""The list cache of a matcher worker process, kept in step with the database.

One :class:`CacheFollower` per process holds a :class:`matcher.cache.ListCache` of the current
descriptor version. It loads every cached list from the database in chunks (``changes.snapshot``,
from the feed position read just before), then tails ``change_log`` by ``seq`` on its own thread:
woken at once by a Redis pub/sub message on ``facegate:changes:<db>``, and
every ``matcher_cache_poll_s`` seconds anyway (a lost message only costs one poll interval).

Freshness. A request never relies on that background pace: the API reads the feed head when the
request starts and the worker calls :meth:`CacheFollower.sync` with it, which reads and applies the
missing changes itself before searching. So a face deleted or detached before the request started
is never returned; the background tail only keeps ``sync`` cheap. A worker whose cache is not
loaded yet, or cannot catch up within ``matcher_cache_wait_s``, answers from the database instead
(same results, see :mod:`app.matching.service`).
"""
from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import redis
from sqlalchemy.orm import Session

from app import settings
from app.db import dialect_of, session_scope
from app.errors import describe
from app.faces import changes
from inference import descriptor_format as fmt
from matcher.cache import Chunk, ListCache, resolve_device

log = logging.getLogger(__name__)

_FEED_BATCH = 1000
_RETRY_S = (0.5, 1.0, 2.0, 5.0)


def parse_list_ids(text: str, setting: str) -> frozenset[str]:
    """A comma-separated setting of list ids as the cache keys them (canonical UUID text)."""
    out = set()
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.add(str(uuid.UUID(part)))
        except ValueError:
            raise settings.SettingsError(f"setting {setting}: {part!r} is not a list id") from None
    return frozenset(out)


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


def _copy_row(dim: int) -> np.dtype:
    """One row of ``COPY (list_id, face_id, descriptor) TO STDOUT (FORMAT BINARY)``: a field count,
    then each field's big-endian length and bytes; every row has the same size when descriptors do."""
    return np.dtype({"names": ["fields", "len_list", "list_id", "len_face", "face_id", "len_desc", "desc"],
                     "formats": [">i2", ">i4", "V16", ">i4", "V16", ">i4", ("<f4", (dim,))],
                     "offsets": [0, 2, 6, 22, 26, 42, 46], "itemsize": 46 + 4 * dim})


def _uuid_texts(raw: np.ndarray) -> list[str]:
    """Canonical UUID text of 16-byte values, in bulk (uuid.UUID per row costs more than the copy)."""
    h = raw.tobytes().hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, len(h), 32)]


def _chunks_of(rows: np.ndarray, dim: int) -> Iterator[Chunk]:
    if not ((rows["fields"] == 3).all() and (rows["len_list"] == 16).all() and (rows["len_face"] == 16).all()
            and (rows["len_desc"] == 4 * dim).all()):
        raise ValueError(f"unexpected row layout in the descriptor snapshot (descriptors of {4 * dim} bytes expected)")
    lists = np.ascontiguousarray(rows["list_id"]).view(np.uint8).reshape(-1, 16)
    faces = np.ascontiguousarray(rows["face_id"]).view(np.uint8).reshape(-1, 16)
    starts = np.flatnonzero(np.r_[True, (lists[1:] != lists[:-1]).any(axis=1)])
    for a, b in zip(starts, np.r_[starts[1:], len(rows)]):
        yield (_uuid_texts(lists[a:a + 1])[0], _uuid_texts(faces[a:b]),
               np.ascontiguousarray(rows["desc"][a:b]))


def copy_snapshot(session: Session, version: int) -> Iterator[Chunk]:
    """The same snapshot as ``changes.snapshot`` (every list's faces holding a ``version`` descriptor,
    ids as text), read on PostgreSQL with one binary COPY and parsed with numpy.

    Measured on 1,000,000 descriptors it is several times faster than fetching rows through the
    driver (bench/matcher_cache_load.py): row objects and UUID parsing dominate that path.
    """
    dim = fmt.DESCRIPTOR_LENGTHS[version]
    row = _copy_row(dim)
    per_chunk = max(1, settings.current().matcher_chunk_size) * row.itemsize
    sql = ("COPY (SELECT lf.list_id, lf.face_id, fd.descriptor FROM list_face lf JOIN face_descriptor fd "
           f"ON fd.face_id = lf.face_id AND fd.version = {int(version)} ORDER BY lf.list_id, lf.face_id) "
           "TO STDOUT (FORMAT BINARY)")
    buf = bytearray()
    header_done = False
    with session.connection().connection.driver_connection.cursor() as cur, cur.copy(sql) as copy:
        for block in copy:
            buf += block
            if not header_done:
                if len(buf) < 19:
                    continue
                if bytes(buf[:11]) != _COPY_SIGNATURE:
                    raise ValueError("not a binary COPY stream")
                del buf[:19 + int.from_bytes(buf[15:19], "big")]
                header_done = True
            if len(buf) >= per_chunk:
                n = len(buf) // row.itemsize
                yield from _chunks_of(np.frombuffer(bytes(buf[:n * row.itemsize]), dtype=row), dim)
                del buf[:n * row.itemsize]
    if bytes(buf[-2:]) != b"\xff\xff" or (len(buf) - 2) % row.itemsize:
        raise ValueError("truncated binary COPY stream")
    if len(buf) > 2:
        yield from _chunks_of(np.frombuffer(bytes(buf[:-2]), dtype=row), dim)


class CacheFollower:
    """A ListCache of descriptor ``version`` loaded from the database and following its change feed."""

    def __init__(self, version: int | None = None) -> None:
        s = settings.current()
        include = parse_list_ids(s.matcher_cache_include, "matcher_cache_include")
        self.version = version or s.face_descriptor_version
        self.cache = ListCache(fmt.DESCRIPTOR_LENGTHS[self.version], "l2", include=include or None,
                               exclude=parse_list_ids(s.matcher_cache_exclude, "matcher_cache_exclude"),
                               device=resolve_device(s.matcher_device))
        self.load_seconds: float | None = None
        self.last_error: str | None = None
        self._tail_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Load and follow on background threads (returns at once; ``cache.ready`` says when done)."""
        if self._threads:
            return
        self._threads = [threading.Thread(target=self._follow, name="matcher-cache", daemon=True),
                         threading.Thread(target=self._listen, name="matcher-cache-pubsub", daemon=True)]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def load(self) -> float:
        """Install a snapshot of every cached list; returns the seconds it took."""
        started = time.perf_counter()
        with session_scope() as session:
            seq = changes.last_seq(session)
        # The snapshot is read after the head: changes in between are replayed by the tail, which
        # is harmless (every change record has set semantics).
        with session_scope() as session:
            if dialect_of(session) == "postgresql":
                self.cache.load(copy_snapshot(session, self.version), seq)
            else:
                self.cache.load(changes.snapshot(session, version=self.version,
                                                 chunk_size=settings.current().matcher_chunk_size), seq)
        self.load_seconds = time.perf_counter() - started
        return self.load_seconds

    def _follow(self) -> None:
        attempt = 0
        while not self._stop.is_set() and not self.cache.ready:
            try:
                seconds = self.load()
                log.info("matcher cache loaded: %d lists, %d descriptors in %.2f s (feed seq %d)",
                         len(self.cache.list_ids()), self.descriptor_count(), seconds, self.cache.version)
            except Exception as exc:  # the database may come up after the worker; keep trying
                # /matcher/status shows last_error to callers: the type only, the log has the text.
                self.last_error = type(exc).__name__
                log.warning("matcher cache load failed, retrying: %s", describe(exc))
                self._stop.wait(_RETRY_S[min(attempt, len(_RETRY_S) - 1)])
                attempt += 1
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.catch_up()
                self.last_error = None
            except Exception as exc:  # a failed poll is retried at the next one
                self.last_error = type(exc).__name__
                log.warning("matcher cache poll failed: %s", describe(exc))
            self._wake.wait(settings.current().matcher_cache_poll_s)

    def _listen(self) -> None:
        """Turn pub/sub announcements into wake-ups; while Redis is away the poll alone runs."""
        while not self._stop.is_set():
            s = settings.current()
            url = s.redis_url
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=s.dependency_timeout_s)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(changes.channel())
                self._wake.set()  # anything announced before the subscription is caught by this poll
                while not self._stop.is_set() and settings.current().redis_url == url:
                    if pubsub.get_message(timeout=1.0) is not None:
                        self._wake.set()
                pubsub.close()
            except redis.RedisError as exc:
                log.warning("matcher cache: pub/sub failed (%s); polling meanwhile", exc)
                self._stop.wait(2.0)

    # -- feed ------------------------------------------------------------------------------------

    def catch_up(self) -> int:
        """Apply every change committed so far; returns the cache's feed position."""
        with self._tail_lock:
            return self._read_feed()

    def _read_feed(self) -> int:
        while True:
            with session_scope() as session:
                batch = changes.read_since(session, self.cache.version, _FEED_BATCH, version=self.version)
            for change in batch:
                self.cache.apply(change)
            if len(batch) < _FEED_BATCH:
                return self.cache.version

    def sync(self, seq: int, timeout: float | None = None) -> bool:
        """Make every change up to ``seq`` visible to searches; False when not ready or not in time."""
        cache = self.cache
        if not cache.ready:
            return False
        if cache.version >= seq:
            return True
        timeout = settings.current().matcher_cache_wait_s if timeout is None else timeout
        # The caller reads the feed itself rather than waiting for the background poll: at most
        # one database round trip after a change, whatever the poll interval.
        if self._tail_lock.acquire(timeout=timeout):
            try:
                if cache.version < seq:  # another request may have read it meanwhile
                    self._read_feed()
            finally:
                self._tail_lock.release()
        return cache.version >= seq

    # -- reporting -------------------------------------------------------------------------------

    def descriptor_count(self) -> int:
        return sum(self.cache.size(list_id) for list_id in self.cache.list_ids())

    def status(self) -> dict[str, Any]:
        return {"ready": self.cache.ready, "descriptor_version": self.version, "feed_seq": self.cache.version,
                "lists": len(self.cache.list_ids()), "descriptors": self.descriptor_count(),
                "load_seconds": self.load_seconds, "last_error": self.last_error, "device": self.cache.device or "cpu"}


_follower: CacheFollower | None = None
_lock = threading.Lock()


def follower(start: bool = False) -> CacheFollower | None:
    """This process's cache follower (created and started when ``start``; else None if none yet)."""
    global _follower
    if _follower is None and start:
        with _lock:
            if _follower is None:
                _follower = CacheFollower()
                _follower.start()
    return _follower


def reset() -> None:
    """Drop this process's cache (after a fork, or in tests that change the cache settings)."""
    global _follower
    with _lock:
        if _follower is not None:
            _follower.stop()
        _follower = None
