"""Filtered event pages and statistics over 1,000,000 events in PostgreSQL, through the REST API.

Runs the real server (``facegate api``: gunicorn, 2 workers) on loopback against a fresh PostgreSQL
database of its own. The events are synthetic rows generated inside PostgreSQL in one
``INSERT ... SELECT generate_series`` (90% for the bench account, 10% for another): 30 days of
``create_time`` in insertion order (events are written as they happen), 20 handlers, 50 sources, uniform ``top_similarity``, positions in a 1 x 1 degree
square, ``meta`` with a zone (100 values), a temperature and a unique badge, ``attributes`` with age
and gender. Then ``VACUUM ANALYZE``, as autovacuum would have done by the time anyone searches.

Timed, each query many times with random parameters, ``page_size=100``, sequential requests:
``GET /events`` by account + a 2-day time range, by handler, by source, by a narrow similarity range,
by a geo box, by ``meta.zone`` (a common value) and by ``meta.user_info.badge`` (a unique one); and
``POST /events/stats`` (count per source over a day, average similarity per handler and day over a
week, hourly counts of one handler over a day).

Baseline, same run: each page query once more through the same service code in this process, with
PostgreSQL's index scans switched off (``enable_indexscan``, ``enable_bitmapscan``: what the
indexes save), and a plain ``SELECT count(*)`` over the table. Target: p95 < 100 ms for indexed
filters. Last line: one JSON object.

    .venv/bin/python bench/events.py [--events 1000000] [--repeat 40]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import requests
from apiserver import BenchDatabase, free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = BenchDatabase("facegate_bench_events", os.environ.get("FACEGATE_BENCH_REDIS", "redis://127.0.0.1:6379/15"))
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
DAYS = 30
HANDLERS = [uuid.UUID(int=0x1000 + n) for n in range(20)]


def _psql() -> Any:
    import psycopg

    return psycopg.connect(DB.psycopg_url, autocommit=True)


def _generate(n: int, account_id: str, other_id: str) -> float:
    """Insert ``n`` events in one statement; returns the seconds it took (with VACUUM ANALYZE)."""
    handlers = "ARRAY[" + ",".join(f"'{h}'::uuid" for h in HANDLERS) + "]"
    start = time.perf_counter()
    with _psql() as conn:
        conn.execute(f"""
            INSERT INTO event (event_id, account_id, handler_id, create_time, end_time, source, external_id,
                               track_id, top_similarity, longitude, latitude, city, meta, attributes)
            SELECT gen_random_uuid(),
                   CASE WHEN i % 10 = 0 THEN '{other_id}'::uuid ELSE '{account_id}'::uuid END,
                   ({handlers})[1 + (i / 10) % 20],
                   t, t + interval '2 seconds',
                   'cam-' || lpad(((i / 7) % 50)::text, 2, '0'),
                   'ext-' || i, 't-' || (i / 5),
                   random(), 24.0 + random(), 56.0 + random(), 'Riga',
                   jsonb_build_object('zone', 'z' || ((i / 3) % 100),
                                      'user_info', jsonb_build_object('temperature', round((35.5 + random() * 3)::numeric, 1),
                                                                      'badge', 'B-' || i)),
                   jsonb_build_object('age', 18 + (i % 60), 'gender', i % 2)
            FROM (SELECT i, timestamptz '{START.isoformat()}' + ((i + random()) / {n}) * interval '{DAYS} days' AS t
                  FROM generate_series(1::bigint, {n}) AS i) AS g""")
        conn.execute("VACUUM ANALYZE event")
    return time.perf_counter() - start


def _page_queries(rng: random.Random) -> dict[str, Any]:
    """Query name -> a function giving one random set of parameters."""
    def time_range() -> dict[str, Any]:
        lo = START + timedelta(days=rng.randint(0, DAYS - 2), hours=rng.randint(0, 23))
        return {"create_time__gte": lo.isoformat(), "create_time__lt": (lo + timedelta(days=2)).isoformat()}

    def similarity() -> dict[str, Any]:
        lo = round(rng.uniform(0, 0.99), 3)
        return {"top_similarity__gte": lo, "top_similarity__lte": round(lo + 0.01, 3)}

    return {
        "account_time": time_range,
        "handler": lambda: {"handler_ids": str(rng.choice(HANDLERS))},
        "source": lambda: {"sources": f"cam-{rng.randint(0, 49):02d}"},
        "similarity": similarity,
        "geo_box": lambda: {"origin_longitude": round(24.05 + rng.random() * 0.9, 4),
                            "origin_latitude": round(56.05 + rng.random() * 0.9, 4),
                            "longitude_delta": 0.02, "latitude_delta": 0.02},
        "meta_eq_common": lambda: {"meta.zone": f"z{rng.randint(0, 99)}"},
        "meta_eq_unique": lambda: {"meta.user_info.badge": f"B-{rng.randint(1, 10**6 - 1)}"},
    }


def _stats_queries(rng: random.Random) -> dict[str, Any]:
    def day() -> dict[str, Any]:
        lo = START + timedelta(days=rng.randint(0, DAYS - 1))
        return {"create_time__gte": lo.isoformat(), "create_time__lt": (lo + timedelta(days=1)).isoformat()}

    def week() -> dict[str, Any]:
        lo = START + timedelta(days=rng.randint(0, DAYS - 7))
        return {"create_time__gte": lo.isoformat(), "create_time__lt": (lo + timedelta(days=7)).isoformat()}

    return {
        "count_by_source_day": lambda: {"filters": day(), "group_by": ["source"]},
        "avg_similarity_by_handler_daily_week": lambda: {"filters": week(), "aggregator": "avg",
                                                         "target": "top_similarity", "group_by": ["handler_id"],
                                                         "frequency": "day"},
        "hourly_count_one_handler_day": lambda: {"filters": {**day(), "handler_ids": [str(rng.choice(HANDLERS))]},
                                                 "frequency": "hour"},
    }


def _timed(call: Any, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _baselines(account_id: str, queries: dict[str, Any]) -> dict[str, float]:
    """Each page query once through the service with index scans off (ms), and a plain count(*)."""
    os.environ.update(DB.env)
    from sqlalchemy import text

    from app.db import session_scope
    from app.events import service
    from app.scope import Scope

    out: dict[str, float] = {}
    for name, params in queries.items():
        with session_scope() as session:
            session.execute(text("SET LOCAL enable_indexscan = off"))
            session.execute(text("SET LOCAL enable_bitmapscan = off"))
            typed = _typed_filters(params())
            t0 = time.perf_counter()
            service.list_events(session, Scope.of(account_id), typed, 1, 100)
            out[name] = (time.perf_counter() - t0) * 1000
    with session_scope() as session:
        t0 = time.perf_counter()
        session.execute(text("SELECT count(*) FROM event")).scalar()
        out["count_star"] = (time.perf_counter() - t0) * 1000
    return out


def _typed_filters(params: dict[str, Any]) -> dict[str, Any]:
    """Query-string parameters as the API's schema would load them (the service takes typed values)."""
    from app.events.schemas import EventListArgs

    loaded = EventListArgs().load({k: str(v) for k, v in params.items()})
    loaded.pop("page"), loaded.pop("page_size")
    return {**loaded, **{k: v for k, v in params.items() if k.startswith("meta.")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="timed requests per query")
    args = parser.parse_args()

    DB.fresh()
    port = free_port()
    server = DB.start_api(port)
    rng = random.Random(11)
    pages: dict[str, list[float]] = {}
    stats: dict[str, list[float]] = {}
    try:
        api = f"http://127.0.0.1:{port}"
        http = requests.Session()
        ids, logins = [], []
        for name in ("bench", "other"):
            logins.append(f"{name}-{uuid.uuid4().hex[:8]}@example.com")
            ids.append(http.post(f"{api}/accounts", json={"login": logins[-1], "password": "bench password"})
                       .json()["account_id"])
        account_id, other_id = ids
        http.auth = (logins[0], "bench password")
        generate_s = _generate(args.events, account_id, other_id)

        for name, params in _page_queries(rng).items():
            def call(params: Any = params) -> None:
                r = http.get(f"{api}/events", params={**params(), "page_size": 100})
                assert r.status_code == 200, r.text[:300]
            _timed(call, 5)  # warm the server's connections and PostgreSQL's caches for this query
            pages[name] = _timed(call, args.repeat)
        for name, body in _stats_queries(rng).items():
            def call(body: Any = body) -> None:
                r = http.post(f"{api}/events/stats", json=body())
                assert r.status_code == 200 and r.json()["results"], r.text[:300]
            _timed(call, 3)
            stats[name] = _timed(call, args.repeat)
    finally:
        server.terminate()
        server.wait(30)

    baseline = _baselines(account_id, _page_queries(random.Random(11)))
    page_all = [t for v in pages.values() for t in v]
    stats_all = [t for v in stats.values() for t in v]
    events_p95 = float(np.percentile(page_all, 95))
    stats_p95 = float(np.percentile(stats_all, 95))
    print(f"server: facegate api (gunicorn, 2 workers) on loopback; PostgreSQL database {DB.name}")
    print(f"events: {args.events} generated in PostgreSQL in {generate_s:.1f} s (incl. VACUUM ANALYZE); "
          f"90% in the bench account")
    print(f"GET /events, page_size=100, {args.repeat} random requests each: p50 / p95 ms "
          "(baseline: the same query with index scans off, ms)")
    for name, times in pages.items():
        print(f"  {name:<40} {np.percentile(times, 50):7.1f} / {np.percentile(times, 95):7.1f}   "
              f"(no index: {baseline[name]:.0f})")
    print(f"  {'all page queries':<40} {np.percentile(page_all, 50):7.1f} / {events_p95:7.1f}   (target p95 < 100)")
    print("POST /events/stats: p50 / p95 ms")
    for name, times in stats.items():
        print(f"  {name:<40} {np.percentile(times, 50):7.1f} / {np.percentile(times, 95):7.1f}")
    print(f"  {'all stats queries':<40} {np.percentile(stats_all, 50):7.1f} / {stats_p95:7.1f}")
    print(f"baseline SELECT count(*) FROM event: {baseline['count_star']:.0f} ms")
    print(f"load average during the run (shared machine): {os.getloadavg()[0]:.1f}")
    print(json.dumps({"bench": "events", "events": args.events, "events_p95_ms": round(events_p95, 1),
                      "stats_p95_ms": round(stats_p95, 1),
                      "per_query_p95_ms": {k: round(float(np.percentile(v, 95)), 1) for k, v in {**pages, **stats}.items()},
                      "no_index_ms": {k: round(v) for k, v in baseline.items()}}))


if __name__ == "__main__":
    main()
