"""Matcher list cache: loading N descriptors from PostgreSQL (target: 1,000,000 in under 20 s).

Set-up (not timed): a scratch database ``facegate_bench_cache_load`` migrated to head, then one
account, one list and N faces with a random unit descriptor each, all attached to the list,
written with binary COPY. The descriptors carry the version a matcher worker loads by default
(setting ``face_descriptor_version``, default ``inference.descriptor_format.DESCRIPTOR_VERSION``)
and that version's length, so the bench follows the default when it changes.

Timed, in the same run:
- ``cache_load_s``: what a matcher worker does at start, ``CacheFollower.load()`` (feed head, the
  chunked ``changes.snapshot`` join of list links and descriptors, building the list's index);
- ``baseline_fetch_s``: a plain ``SELECT face_id, descriptor`` of the same rows fetched with
  psycopg, no ORM and no index: what the bytes cost to move at all.
The loaded cache is checked: every face present, and a search returns the face itself first.
Last line: ``{"bench": "matcher_cache_load", "cache_load_s": ..., "baseline_fetch_s": ..., ...}``.
``PG_ADMIN_URL`` (default: the test suite's) names the server; the scratch database is dropped at the end.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script: import the repository's packages, not this folder's

import numpy as np  # noqa: E402

PG_ADMIN_URL = os.environ.get("PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DB_NAME = "facegate_bench_cache_load"
DB_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + DB_NAME


def _admin(sql: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


def _time_ordered_ids(n: int, rng: np.random.Generator) -> list[uuid.UUID]:
    """Sorted version-7-style UUIDs, like the platform's face ids, built in bulk."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    ms = int(time.time() * 1000)
    raw[:, :6] = np.frombuffer(ms.to_bytes(6, "big"), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x70
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return sorted(uuid.UUID(bytes=row.tobytes()) for row in raw)


def default_version() -> int:
    """The descriptor version ``CacheFollower()`` loads: the ``face_descriptor_version`` setting."""
    from app import settings

    return settings.current().face_descriptor_version


def populate(n: int, seed: int = 0, version: int | None = None) -> tuple[str, list[uuid.UUID], np.ndarray]:
    """Fill the scratch database with n faces in one list, each with one descriptor of ``version``
    (default: the version the matcher cache loads); returns (list id, face ids, descriptors)."""
    import psycopg

    from inference import descriptor_format

    version = int(version or default_version())
    dim = descriptor_format.DESCRIPTOR_LENGTHS[version]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype("<f4")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    face_ids = _time_ordered_ids(n, rng)
    account_id, list_id = uuid.uuid4(), uuid.uuid4()
    conninfo = DB_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        now = "now()"
        cur.execute(f"INSERT INTO account VALUES (%s, 'bench@example.com', '-', 'user', '', {now})", (account_id,))
        cur.execute(f"INSERT INTO face_list VALUES (%s, %s, '', {now}, {now})", (list_id, account_id))
        with cur.copy("COPY face (face_id, account_id, user_data, avatar, create_time) FROM STDIN") as copy:
            for face_id in face_ids:
                copy.write_row((face_id, account_id, "", "", "2026-01-01T00:00:00Z"))
        with cur.copy("COPY face_descriptor (face_id, version, descriptor) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "int4", "bytea"])
            for face_id, row in zip(face_ids, x):
                copy.write_row((face_id, version, row.tobytes()))
        with cur.copy("COPY list_face (list_id, face_id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid", "uuid"])
            for face_id in face_ids:
                copy.write_row((list_id, face_id))
        cur.execute("ANALYZE")
    return str(list_id), face_ids, x


def baseline_fetch() -> float:
    import psycopg

    conninfo = DB_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        cur.execute("SELECT face_id, descriptor FROM face_descriptor")
        rows = cur.fetchall()
        seconds = time.perf_counter() - started
    assert len(rows) > 0
    return seconds


def measure(n: int) -> dict[str, float | int]:
    """Set up, time the cache load and the baseline, check the cache, drop the database."""
    os.environ["FACEGATE_DATABASE_URL"] = DB_URL
    os.environ.setdefault("FACEGATE_DATA_DIR", tempfile.mkdtemp(prefix="facegate-bench-"))
    from alembic import command

    from app import settings
    from app.cli import _alembic_config

    settings.replace(settings.load())
    _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{DB_NAME}"')
    try:
        command.upgrade(_alembic_config(), "head")
        version = default_version()
        started = time.perf_counter()
        list_id, face_ids, x = populate(n, version=version)
        print(f"set-up: {n} faces (descriptor version {version}) copied in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)

        from app.matching.cache import CacheFollower

        fetch_s = baseline_fetch()
        follower = CacheFollower()  # the default version, as a matcher worker starts
        assert follower.version == version, (follower.version, version)
        load_s = follower.load()
        assert follower.cache.ready and follower.cache.size(list_id) == n, follower.status()
        probe = [0, n // 2, n - 1]
        _, ids = follower.cache.search([list_id], x[probe], 1)
        assert [row[0] for row in ids] == [str(face_ids[i]) for i in probe]
        from app import db

        db.dispose_all()
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    return {"n": n, "descriptor_version": version, "cache_load_s": round(load_s, 3), "baseline_fetch_s": round(fetch_s, 3),
            "ratio_to_baseline": round(load_s / fetch_s, 2)}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    result = measure(n)
    print(json.dumps({"bench": "matcher_cache_load", **result}))


if __name__ == "__main__":
    main()
