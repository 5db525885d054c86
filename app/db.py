"""Database engine and sessions, and the Redis client, shared by the API and the Celery tasks.

Nothing here needs a request: tasks open sessions with :func:`session_scope` exactly as
request handlers do, so domain services can be called from either side.
"""
from __future__ import annotations

import importlib
import math
import os
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterator

import redis
from sqlalchemy import DateTime, Engine, Table, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.dml import Insert
from sqlalchemy.types import TypeDecorator

from app import settings
from app.errors import unavailable_when

# A database that is down or refuses connections, whichever driver: the API answers 503
# ``database_unavailable`` (app.errors), a task sends the same code back (app.dispatch.reported).
# TimeoutError is the pool's: every connection busy for ``dependency_timeout_s``.
unavailable_when("database_unavailable", sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC, also on SQLite (which stores no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        return value.astimezone(timezone.utc) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime}


# The services that own tables; importing them puts every table on ``Base.metadata`` (alembic,
# and SQLAlchemy's resolution of relationships by class name, need them all).
MODEL_MODULES = ("app.accounts.models", "app.faces.models", "app.verifiers.models", "app.handlers.models",
                 "app.events.models", "app.notifications.models", "app.tasks.models")


def load_models() -> None:
    for name in MODEL_MODULES:
        importlib.import_module(name)


_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    # Foreign keys are off by default in SQLite; WAL lets the API read while the worker writes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _private_sqlite_file(path: str) -> None:
    """The database file readable by its owner only; SQLite gives its -wal and -shm files the same
    mode, and the umask would leave all three world-readable."""
    file = settings.private_dir(os.path.dirname(os.path.abspath(path))) / os.path.basename(path)
    os.close(os.open(file, os.O_WRONLY | os.O_CREAT, 0o600))
    if file.stat().st_mode & 0o077:
        file.chmod(0o600)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            _private_sqlite_file(path)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    s = settings.current()
    # A database that is down must cost a request seconds, not the OS's TCP timeout: connecting and
    # waiting for a pooled connection are bounded by dependency_timeout_s (libpq counts whole
    # seconds, 2 at least). The pre-ping replaces connections a restart killed, so the first
    # request after an outage works without restarting anything.
    postgres = url.startswith("postgresql")
    connect_args = {"connect_timeout": max(2, math.ceil(s.dependency_timeout_s))} if postgres else {}
    return create_engine(url, pool_size=s.database_pool_size, pool_pre_ping=True,
                         pool_timeout=s.dependency_timeout_s, connect_args=connect_args)


def engine() -> Engine:
    """The engine for the database URL now in force (a reload that changes it gets a new one)."""
    url = settings.current().effective_database_url
    eng = _engines.get(url)
    if eng is None:
        with _lock:
            eng = _engines.get(url)
            if eng is None:
                eng = _engines[url] = make_engine(url)
                _factories[url] = sessionmaker(bind=eng, expire_on_commit=False)
    return eng


def session_factory() -> sessionmaker[Session]:
    engine()
    return _factories[settings.current().effective_database_url]


def dialect_of(session: Session) -> str:
    """The session's database: ``postgresql`` or ``sqlite``."""
    return session.get_bind().dialect.name


def conflict_insert(session: Session, table: Table) -> Insert:
    """An INSERT into ``table`` that takes ``on_conflict_do_nothing``/``_do_update``, in the
    session's database's own dialect (PostgreSQL and SQLite spell them alike)."""
    return (postgresql if dialect_of(session) == "postgresql" else sqlite).insert(table)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session committed on success and rolled back on any error, so no half-written record stays."""
    session = session_factory()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@lru_cache(maxsize=8)
def _redis_for(url: str, timeout_s: float) -> redis.Redis:
    # Short timeouts: a Redis that is down must answer a request with a fast error, not stall it.
    return redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)


def redis_client() -> redis.Redis:
    """The pooled Redis client for ``redis_url`` (results, pub/sub, temporary attributes, locks)."""
    s = settings.current()
    return _redis_for(s.redis_url, s.dependency_timeout_s)


def redis_channel(name: str) -> str:
    """A pub/sub channel of this installation: ``facegate:<name>:<db>``. Redis channels are global
    to the server, not per database, so installations (and test runs) that share a server on
    separate database numbers would otherwise hear each other."""
    return f"facegate:{name}:{redis_client().connection_pool.connection_kwargs.get('db', 0)}"


def dispose_all() -> None:
    """Drop pooled connections; called after fork so children never share a parent's sockets."""
    with _lock:
        for eng in _engines.values():
            eng.dispose(close=False)
