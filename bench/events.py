"""Filtered event pages and statistics over 1,000,000 events in PostgreSQL, through the REST API;
``POST /handlers/{handler_id}/events`` throughput against the raw inference pipeline.

Runs the real server (``facegate api``: gunicorn, 2 workers) on loopback against a fresh PostgreSQL
database of its own. The events are synthetic rows generated inside PostgreSQL in one
``INSERT ... SELECT generate_series`` (90% for the bench account, 10% for another): 30 days of
``create_time`` in insertion order (events are written as they happen), 20 handlers, 50 sources, uniform ``top_similarity``, positions in a 1 x 1 degree
square, ``meta`` with a zone (100 values), a temperature and a unique badge, ``attributes`` with age
and gender. Then ``facegate db rebuild-event-stats`` (rows inserted by SQL bypass the saves that
keep the hourly event statistics) and ``VACUUM ANALYZE``, as autovacuum would have done by the
time anyone searches.

Timed, each query many times with random parameters, ``page_size=100``, sequential requests:
``GET /events`` by account + a 2-day time range, by handler, by source, by a narrow similarity range,
by a geo box, by ``meta.zone`` (a common value) and by ``meta.user_info.badge`` (a unique one); and
``POST /events/stats`` (count per source over a day, average similarity per handler and day over a
week, hourly counts of one handler over a day: answered from the hourly statistics; and counts per
``meta.zone`` over a day, which only the events can answer).

Baseline, same run: each page query once more through the same service code in this process, with
PostgreSQL's index scans switched off (``enable_indexscan``, ``enable_bitmapscan``: what the
indexes save), and a plain ``SELECT count(*)`` over the table. Target: p95 < 100 ms for indexed
filters.

Then ``POST /handlers/{handler_id}/events`` end to end, on the same database (its event table
holding the generated events): ``facegate api`` again and a worker as the Procfile's (``celery -A
tasks worker --pool threads --concurrency 8 --queues gpu,cpu,matcher``, ``inference_batch_max`` =
``--handler-batch``, 32), both on the bench's Redis (``FACEGATE_BENCH_REDIS``). A new account
enrolls the first photo of each shared LFW person (10) into a list through a handler with
``store_face`` and ``link_to_lists_policy`` (largest face), then a second handler extracts
descriptors and matches them against that list (``match_policy`` label ``staff``; default storage:
face samples and events kept, waits for saving). ``--handler-images`` (64) of the inference bench's images (``pipeline.bench_paths``: face photos
of every size from the shared MANIFEST, group photos included) go to
it as raw ``image/jpeg`` bodies, one per request, from 8 client threads of this process, each with
its own connection (``pipeline.Platform.throughput``), after 4 warm-up requests; the clock runs from
the first request to the last answer (``handler_images_per_s_one_worker``; latencies ``handler_p50_ms`` /
``handler_p95_ms``, the worker batcher's mean batch, the events answered with a face and with an
enrolled candidate, the events stored for the handler).

Baseline, same run: ``pipeline.ours`` (``inference.pipeline.process``: detection, landmarks,
descriptor, the raw pipeline) in this process on the same images, decoded beforehand, in batches of
``--handler-batch``; timed right before and right after the handler run (the worker idles), the
better of the two is ``handler_pipeline_images_per_s_one_worker``. ``handler_ratio_vs_pipeline`` =
``handler_images_per_s`` / ``handler_pipeline_images_per_s``, measured with the deployment's workers (docker/compose.yml: the gpu queue on a worker of
its own, threads 8; cpu and matcher on a second, threads 4), the raw pipeline timed around that
run; ``handler_ratio_vs_pipeline_one_worker`` is the same with one worker for every queue (the
Procfile's); target >= 0.8 (queues, DB and storage add at most 20%). Also with the split workers,
the same images 4 to a request as one multipart form (``handler_ratio_4_per_request``): what a
request costs apart from its images. Reported only:
``handler_sdk_images_per_s``, the same images through ``/sdk?extract_descriptor=1`` from 8 clients on
the same worker right after (one gpu task, no matcher or cpu step, no rows), which splits what the
handler adds from what every request through the API and a worker pays. The machine may be shared:
the load average is printed at the start and the end. Last line: one JSON object,
``{"bench": "events", "events": ..., "events_p95_ms": ..., "stats_p95_ms": ...,
"handler_ratio_vs_pipeline": ..., "handler_images_per_s": ..., "handler_pipeline_images_per_s": ..., ...}``.

    .venv/bin/python bench/events.py [--events 1000000] [--repeat 40] [--handler-images 64]
                                     [--handler-batch 32]

Quick check (small table, few repeats): ``--events 2000 --repeat 3 --handler-images 16``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import requests
from apiserver import FACEGATE, BenchDatabase, free_port

# before DB below copies the environment: pipeline sets OMP_WAIT_POLICY=PASSIVE for torch (see there)
from pipeline import Platform, load_load, ours, stop_process
from shared_faces import SHARED, bench_paths

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
    """Insert ``n`` events in one statement and rebuild the hourly statistics; returns the seconds
    it took (with VACUUM ANALYZE)."""
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
    # Rows inserted by SQL bypass the saves that keep the hourly statistics: an operator who loads
    # events this way runs the same command.
    subprocess.run([FACEGATE, "db", "rebuild-event-stats"], check=True, env=DB.env, cwd=ROOT, stdout=subprocess.DEVNULL)
    with _psql() as conn:
        conn.execute("VACUUM ANALYZE event_stats_hourly")
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
        # grouped by a meta field: beyond the hourly statistics, counted over the day's events
        "count_by_zone_day_events": lambda: {"filters": day(), "group_by": ["meta.zone"]},
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

# ---- POST /handlers/{handler_id}/events against the raw pipeline --------------------------------
LFW = SHARED / "faces" / "lfw"


class HandlerPlatform(Platform):
    """:class:`pipeline.Platform`'s client side (``throughput``, ``batching``, ``stop``) over this
    bench's PostgreSQL database: ``facegate api`` and a worker consuming ``gpu,cpu,matcher`` as the
    Procfile's does; :meth:`sdk`, which ``throughput`` calls once per image, posts the image to the
    events of ``handler_id`` instead of /sdk."""

    QUEUES = "gpu,cpu,matcher"
    SIDE = ("cpu,matcher", "4")  # with split=True: queues and threads of the second worker

    def start_worker(self, batch_max: int, split: bool = False) -> None:
        """One worker for every queue (the Procfile), or with ``split`` the deployment's shape
        (docker/compose.yml): the gpu queue on a worker of its own, cpu and matcher on another."""
        self.QUEUES = "gpu" if split else type(self).QUEUES
        super().start_worker(batch_max)
        if split:
            queues, threads = self.SIDE
            self.side = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool", "threads", "--concurrency", threads,
                 "--queues", queues, "--hostname", f"bench-events-side-{batch_max}@%h", "--loglevel", "WARNING"],
                cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_worker(self) -> None:
        super().stop_worker()
        side, self.side = getattr(self, "side", None), None
        if side is not None:
            stop_process(side)

    def __init__(self) -> None:  # not Platform's: no embedded Redis, no SQLite
        subprocess.run([FACEGATE, "buckets", "create"], env=DB.env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        port = free_port()
        self.env, self.url, self.worker = DB.env, f"http://127.0.0.1:{port}", None
        self.procs = [DB.start_api(port)]
        self.auth = (f"handler-{uuid.uuid4().hex[:8]}@example.com", "bench password")
        requests.post(f"{self.url}/accounts", json={"login": self.auth[0], "password": self.auth[1]},
                      timeout=30).raise_for_status()
        self.handler_id = ""
        self.events: list[dict[str, Any]] = []  # every answered event, in answer order
        self.latencies: list[float] = []

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        r = requests.post(f"{self.url}{path}", json=body, auth=self.auth, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"{path} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    def sdk(self, session: requests.Session, data: bytes | tuple[bytes, ...], **query: Any) -> float:
        """One raw JPEG (or a tuple of them, as one multipart form) to ``POST
        /handlers/{handler_id}/events``: seconds to the answer (201); with no ``handler_id``, to /sdk
        as :class:`Platform` sends it."""
        if not self.handler_id:
            return super().sdk(session, data, **query)
        start = time.perf_counter()
        if isinstance(data, tuple):
            body: dict[str, Any] = {"files": {f"image{n}": (f"{n}.jpg", d, "image/jpeg") for n, d in enumerate(data)}}
        else:
            body = {"data": data, "headers": {"Content-Type": "image/jpeg"}}
        r = session.post(f"{self.url}/handlers/{self.handler_id}/events", auth=self.auth, timeout=180, **body)
        elapsed = time.perf_counter() - start
        if r.status_code != 201:
            raise RuntimeError(f"/handlers/{{id}}/events answered {r.status_code}: {r.text[:300]}")
        self.events += r.json()["events"]
        self.latencies.append(elapsed)
        return elapsed


def handler_figures(images: int, batch: int) -> dict[str, Any]:
    """Enroll the first photo of each LFW person into a list through a storing handler, then time
    ``images`` of the inference bench's photos through a detect + extract + match handler from 8 client threads
    against ``ours`` (the raw pipeline, in this process) on the same decoded images in batches of
    ``batch``, the worker's ``inference_batch_max``."""
    from inference import registry
    from inference.images import decode_image

    people = sorted(d for d in LFW.iterdir() if d.is_dir())
    enroll = [sorted(d.glob("*.jpg"))[0] for d in people]
    timed = [p for p in bench_paths(images + len(enroll)) if p not in enroll][:images]  # the inference bench's images
    datas = [p.read_bytes() for p in timed]
    decoded = [decode_image(d) for d in datas]
    registry.configure(device=registry.default_device())
    ours(decoded[:8], 8)  # load the models in this process, warm the kernels
    ours(decoded[:batch], batch)

    DB.env["FACEGATE_WORKER_WAIT_TIMEOUT_S"] = "120"  # the first requests load the worker's models
    platform = HandlerPlatform()
    figures: dict[str, Any] = {"handler_images": len(datas), "handler_batch": batch}
    try:
        platform.start_worker(batch)
        list_id = platform.post("/lists", {})["list_id"]
        platform.handler_id = platform.post("/handlers", {"policies": {
            "detect_policy": {"multiface_policy": "largest"}, "extract_policy": {"extract_face_descriptor": True},
            "storage_policy": {"face_policy": {"store_face": True, "link_to_lists_policy": [{"list_id": list_id}]}},
        }})["handler_id"]
        with requests.Session() as session:
            for path in enroll:
                platform.sdk(session, path.read_bytes())
        enrolled = [e["face_id"] for e in platform.events if e["face_id"]]
        assert len(enrolled) == len(enroll), f"{len(enrolled)} faces enrolled of {len(enroll)}"
        figures["handler_enrolled"] = len(enrolled)
        platform.handler_id = platform.post("/handlers", {"policies": {
            "extract_policy": {"extract_face_descriptor": True},
            "match_policy": [{"label": "staff", "candidates": {"list_id": list_id}}],
        }})["handler_id"]
        with requests.Session() as session:  # warm: the match path, the matcher cache, connections
            for data in datas[:4]:
                platform.sdk(session, data)
        raw_before = ours(decoded, batch)[0]  # the worker idles meanwhile
        platform.events, platform.latencies = [], []
        before = platform.batching()
        figures["handler_images_per_s_one_worker"] = round(platform.throughput(datas, 8), 2)
        after = platform.batching()
        raw_after = ours(decoded, batch)[0]
        # the same images through /sdk (detect + extract, one gpu task, no DB) on the same worker:
        # what the handler's matcher and cpu steps and its rows cost on top of the shared request path
        handler_id, platform.handler_id = platform.handler_id, ""
        figures["handler_sdk_images_per_s"] = round(platform.throughput(datas, 8), 2)
        platform.handler_id = handler_id
        if after[0] < 100:  # the window of the last 100 batches still holds every batch of the run
            figures["handler_mean_batch_images"] = round((after[1] - before[1]) / max(1, after[0] - before[0]), 2)
        figures["handler_p50_ms"] = round(statistics.median(platform.latencies) * 1000, 1)
        figures["handler_p95_ms"] = round(float(np.percentile(platform.latencies, 95)) * 1000, 1)
        with_face = [e for e in platform.events if e["detections"]]
        figures["handler_events_with_face"] = len(with_face)
        similarities = [e["top_similarity"] for e in with_face if e["top_candidate_id"] in enrolled]
        figures["handler_events_matched"] = len(similarities)
        figures["handler_median_top_similarity"] = round(statistics.median(similarities), 3) if similarities else None
        figures["handler_worker_rss_mb"] = round(platform.worker_rss_mb(), 1)
        with _psql() as conn:
            figures["handler_events_stored"] = conn.execute(
                "SELECT count(*) FROM event WHERE handler_id = %s", (platform.handler_id,)).fetchone()[0]
        # the same run on the deployment's shape: the gpu queue's worker apart from the cpu and matcher queues'
        platform.start_worker(batch, split=True)
        with requests.Session() as session:
            for data in datas[:4]:
                platform.sdk(session, data)
        raw_split_before = ours(decoded, batch)[0]
        figures["handler_images_per_s"] = round(platform.throughput(datas, 8), 2)
        # the same images 4 to a request (a bulk client): what is paid per request rather than per image
        bundles = [tuple(datas[n:n + 4]) for n in range(0, len(datas), 4)]
        figures["handler_images_per_s_4_per_request"] = round(
            platform.throughput(bundles, 8) * len(datas) / len(bundles), 2)
        raw_split_after = ours(decoded, batch)[0]
    finally:
        platform.stop()
    figures["handler_pipeline_images_per_s_one_worker"] = round(max(raw_before, raw_after), 2)
    figures["handler_pipeline_images_per_s_one_worker_before_after"] = [round(raw_before, 2), round(raw_after, 2)]
    figures["handler_ratio_vs_pipeline_one_worker"] = round(
        figures["handler_images_per_s_one_worker"] / figures["handler_pipeline_images_per_s_one_worker"], 3)
    raw_split = max(raw_split_before, raw_split_after)
    figures["handler_pipeline_images_per_s"] = round(raw_split, 2)
    figures["handler_pipeline_images_per_s_before_after"] = [round(raw_split_before, 2), round(raw_split_after, 2)]
    figures["handler_ratio_vs_pipeline"] = round(figures["handler_images_per_s"] / raw_split, 3)
    figures["handler_ratio_4_per_request"] = round(figures["handler_images_per_s_4_per_request"] / raw_split, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=40, help="timed requests per query")
    parser.add_argument("--handler-images", type=int, default=64,
                        help="images sent through POST /handlers/{id}/events (and the raw pipeline)")
    parser.add_argument("--handler-batch", type=int, default=32,
                        help="the worker's inference_batch_max, and the raw pipeline's batch")
    args = parser.parse_args()
    print(f"{load_load()} at start", flush=True)

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
                # a quick check's few --events may leave a random day of one handler empty
                assert r.status_code == 200 and (r.json()["results"] or args.events < 100_000), r.text[:300]
            _timed(call, 3)
            stats[name] = _timed(call, args.repeat)
    finally:
        server.terminate()
        server.wait(30)

    baseline = _baselines(account_id, _page_queries(random.Random(11)))
    handler = handler_figures(args.handler_images, args.handler_batch)
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
    print(f"POST /handlers/{{id}}/events (detect + extract + match against {handler['handler_enrolled']} enrolled faces), "
          f"{handler['handler_images']} of the inference bench's images, 8 client threads, one raw JPEG per request, one worker "
          f"gpu,cpu,matcher (threads, 8), inference_batch_max {handler['handler_batch']}:")
    print(f"  handler: {handler['handler_images_per_s_one_worker']:.2f} images/s; latency p50 / p95 "
          f"{handler['handler_p50_ms']:.0f} / {handler['handler_p95_ms']:.0f} ms; mean batch "
          f"{handler.get('handler_mean_batch_images', 'n/a')}; {handler['handler_events_with_face']} events with a face, "
          f"{handler['handler_events_matched']} with an enrolled face as the best candidate (median similarity "
          f"{handler['handler_median_top_similarity']}); {handler['handler_events_stored']} events stored")
    print(f"  raw pipeline (ours, in this process, batch {handler['handler_batch']}, same decoded images): "
          f"{handler['handler_pipeline_images_per_s_one_worker']:.2f} images/s (best of before / after the handler "
          f"run: {handler['handler_pipeline_images_per_s_one_worker_before_after']})")
    print(f"  /sdk?extract_descriptor=1 on the same worker and images, 8 clients (reported only): "
          f"{handler['handler_sdk_images_per_s']:.2f} images/s")
    print(f"  handler / raw pipeline, one worker for every queue (the Procfile): "
          f"{handler['handler_ratio_vs_pipeline_one_worker']:.3f}")
    print(f"  handler with the gpu queue's worker apart from cpu and matcher's (docker/compose.yml): "
          f"{handler['handler_images_per_s']:.2f} images/s, raw pipeline around it "
          f"{handler['handler_pipeline_images_per_s_before_after']}")
    print(f"  handler / raw pipeline (split workers): {handler['handler_ratio_vs_pipeline']:.3f} (target >= 0.8)")
    print(f"  the same, 4 images to a request: {handler['handler_images_per_s_4_per_request']:.2f} "
          f"images/s = {handler['handler_ratio_4_per_request']:.3f} of the raw pipeline")
    print(f"{load_load()} at end (shared machine)")
    print(json.dumps({"bench": "events", "events": args.events, "events_p95_ms": round(events_p95, 1),
                      "stats_p95_ms": round(stats_p95, 1),
                      "handler_ratio_vs_pipeline": handler["handler_ratio_vs_pipeline"],
                      "handler_images_per_s": handler["handler_images_per_s"],
                      "handler_pipeline_images_per_s": handler["handler_pipeline_images_per_s"],
                      **{k: v for k, v in handler.items() if k not in (
                          "handler_ratio_vs_pipeline", "handler_images_per_s", "handler_pipeline_images_per_s")},
                      "load_average_1min": round(os.getloadavg()[0], 1),
                      "per_query_p95_ms": {k: round(float(np.percentile(v, 95)), 1) for k, v in {**pages, **stats}.items()},
                      "no_index_ms": {k: round(v) for k, v in baseline.items()}}))


if __name__ == "__main__":
    main()
