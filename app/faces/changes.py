"""The change feed the matcher's list cache follows.

Every change that matters to matching is written to ``change_log`` in the transaction that makes
it, so a change exists exactly when its data does. The matcher tails the table by ``seq`` from the
last one it applied; the Redis pub/sub message sent after commit only wakes it up, so a missed
message loses nothing.

Tailing by ``seq`` is only safe if ``seq`` order is commit order: otherwise a transaction that drew
seq 10 but commits after the one that drew seq 11 would be skipped by a reader already past 11. On
PostgreSQL, :func:`record` therefore takes a transaction-scoped advisory lock before drawing seqs,
and writers hold it until they commit (SQLite serialises writers anyway). Callers must make
:func:`record` the last statement of their transaction, so the lock is held only for the commit and
never while waiting on row locks another writer holds.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import redis
from sqlalchemy import event, func, insert, select, text
from sqlalchemy.orm import Session

from app.accounts.models import Account
from app.db import dialect_of, redis_channel, redis_client
from app.faces.models import ChangeLog, FaceDescriptor, FaceList, ListFace, utcnow
from app.scope import Scope, scoped
from matcher.cache import Chunk
from matcher.changes import (
    Change,
    DescriptorAdded,
    DescriptorRemoved,
    FaceAttached,
    FaceDeleted,
    FaceDetached,
    ListDeleted,
)

log = logging.getLogger(__name__)

def channel() -> str:
    """The pub/sub channel of change announcements."""
    return redis_channel("changes")

KINDS = ("descriptor_added", "descriptor_removed", "face_attached", "face_detached", "face_deleted",
         "list_deleted")
# Arbitrary but fixed: every process must agree on the advisory lock that orders the change log.
_ADVISORY_LOCK = 0x6661636567617465 & 0x7FFFFFFFFFFFFFFF
_NEEDS_DESCRIPTOR = {"descriptor_added", "descriptor_removed", "face_attached"}
_PENDING = "facegate.changes.pending_seq"
_HOOKED = "facegate.changes.hooked"


def record(session: Session, kind: str, account_id: uuid.UUID, *, face_ids: Sequence[uuid.UUID] | None = None,
           list_id: uuid.UUID | None = None, version: int | None = None) -> None:
    """Log one change per face in ``face_ids`` (or one change when None) in the caller's transaction."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    if face_ids is not None and not face_ids:
        return
    if dialect_of(session) == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
    now = utcnow()
    rows = [{"kind": kind, "account_id": account_id, "face_id": face_id, "list_id": list_id,
             "version": version, "time": now} for face_id in (face_ids if face_ids is not None else [None])]
    session.execute(insert(ChangeLog.__table__), rows)
    # No other writer can insert until this transaction ends (advisory lock; SQLite's write lock),
    # so the largest seq is ours: cheaper than RETURNING a seq per row.
    publish_after_commit(session, session.scalar(select(func.max(ChangeLog.seq))))


@event.listens_for(Session, "before_flush")
def _account_deleted(session: Session, _context: Any, _instances: Any) -> None:
    """Deleting an account cascades to its lists in the database, out of sight of the services:
    log their deletion here so matcher caches drop them too."""
    for obj in list(session.deleted):
        if isinstance(obj, Account):
            for list_id in session.scalars(scoped(FaceList, Scope.of(obj.account_id), FaceList.list_id)):
                record(session, "list_deleted", obj.account_id, list_id=list_id)


def publish_after_commit(session: Session, seq: int) -> None:
    """Announce ``seq`` on :func:`channel` once ``session`` commits; a rollback announces nothing."""
    session.info[_PENDING] = max(session.info.get(_PENDING, 0), seq)
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        event.listen(session, "after_commit", _publish)
        event.listen(session, "after_rollback", _forget)


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _publish(session: Session) -> None:
    seq = session.info.pop(_PENDING, None)
    if seq is None:
        return
    try:
        redis_client().publish(channel(), str(seq))
    except redis.RedisError as exc:
        # The change is committed and in the table; the matcher finds it on its next poll.
        log.warning("could not announce change %s: %s", seq, exc)


def _descriptors(session: Session, face_ids: set[uuid.UUID], version: int) -> dict[uuid.UUID, np.ndarray]:
    if not face_ids:
        return {}
    rows = session.execute(select(FaceDescriptor.face_id, FaceDescriptor.descriptor)
                           .where(FaceDescriptor.face_id.in_(face_ids), FaceDescriptor.version == version))
    return {face_id: np.frombuffer(data, dtype="<f4") for face_id, data in rows}


def _list_ids(session: Session, face_ids: set[uuid.UUID]) -> dict[uuid.UUID, tuple[str, ...]]:
    """The lists each face belongs to now (ids as text), in one query."""
    out: dict[uuid.UUID, list[str]] = {}
    if face_ids:
        rows = session.execute(select(ListFace.face_id, ListFace.list_id).where(ListFace.face_id.in_(face_ids))
                               .order_by(ListFace.face_id, ListFace.list_id))
        for face_id, list_id in rows:
            out.setdefault(face_id, []).append(str(list_id))
    return {face_id: tuple(lists) for face_id, lists in out.items()}


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


def read_since(session: Session, seq: int, limit: int = 1000, *, version: int) -> list[Change]:
    """Changes after ``seq`` as the matcher's records, oldest first, for a cache of model ``version``.

    Exactly one record per logged change, so the last record's ``seq`` is where to read on from
    and a cache can reach the feed head. Descriptors are the faces' *current* ones: every record
    has set semantics, and any later change is itself in the feed, so the cache converges to the
    database's state. For the same reason a descriptor change of any version becomes "the face's
    ``version`` descriptor is now X, and the face is in lists L" (or "is gone").
    """
    rows = list(session.scalars(select(ChangeLog).where(ChangeLog.seq > seq).order_by(ChangeLog.seq).limit(limit)))
    wanted = {r.face_id for r in rows if r.kind in _NEEDS_DESCRIPTOR and r.face_id is not None}
    current = _descriptors(session, wanted, version)
    memberships = _list_ids(session, {r.face_id for r in rows if r.kind in ("descriptor_added", "descriptor_removed")
                                      and r.face_id in current})
    out: list[Change] = []
    for r in rows:
        # The matcher keys its indexes by str or int ids; UUIDs travel as their canonical text.
        face_id, list_id = _text(r.face_id), _text(r.list_id)
        if r.kind in ("descriptor_added", "descriptor_removed"):
            d = current.get(r.face_id)
            out.append(DescriptorAdded(r.seq, face_id, d, memberships.get(r.face_id, ()))
                       if d is not None else DescriptorRemoved(r.seq, face_id))
        elif r.kind == "face_attached":
            out.append(FaceAttached(r.seq, face_id, list_id, current.get(r.face_id)))
        elif r.kind == "face_detached":
            out.append(FaceDetached(r.seq, face_id, list_id))
        elif r.kind == "face_deleted":
            out.append(FaceDeleted(r.seq, face_id))
        else:
            out.append(ListDeleted(r.seq, list_id))
    return out


def snapshot(session: Session, *, version: int, chunk_size: int = 10000) -> Iterator[Chunk]:
    """Every list's faces that hold a ``version`` descriptor, as ``(list_id, face_ids, matrix)`` chunks
    (ids as text, like :func:`read_since`).

    A matcher reads :func:`last_seq` first, loads this, then tails from that seq: changes that
    land in between are replayed, which is harmless because every record has set semantics.
    """
    query = (select(ListFace.list_id, ListFace.face_id, FaceDescriptor.descriptor)
             .join(FaceDescriptor, (FaceDescriptor.face_id == ListFace.face_id) & (FaceDescriptor.version == version))
             .order_by(ListFace.list_id, ListFace.face_id)
             .execution_options(yield_per=chunk_size))
    current: str | None = None
    ids: list[str] = []
    vectors: list[bytes] = []
    for list_id, face_id, data in session.execute(query):
        if (str(list_id) != current or len(ids) >= chunk_size) and ids:
            yield current, ids, np.frombuffer(b"".join(vectors), dtype="<f4").reshape(len(ids), -1)
            ids, vectors = [], []
        current = str(list_id)
        ids.append(str(face_id))
        vectors.append(data)
    if ids:
        yield current, ids, np.frombuffer(b"".join(vectors), dtype="<f4").reshape(len(ids), -1)


def last_seq(session: Session) -> int:
    """The newest seq (0 when the log is empty): the feed head a matcher loads from or waits for."""
    return session.scalar(select(ChangeLog.seq).order_by(ChangeLog.seq.desc()).limit(1)) or 0
