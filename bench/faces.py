"""Bulk faces through the REST API against PostgreSQL: create, link to a list, list pages.

Runs the real server (``facegate api``: gunicorn, gthread workers) on loopback against a fresh
PostgreSQL database of its own, and a client in this process that sends ``POST /faces/batch``
(1,000 faces with a descriptor each) and ``PATCH /lists/{id}/faces`` (attach the same 1,000),
sequentially. Payloads are encoded before the clock starts: the client's work is not the server's.

Baseline, same run, same machine: the same rows written with PostgreSQL ``COPY`` straight into
copies of the tables (no HTTP, JSON, validation, change log): the floor any API could approach.

Printed: faces/s through the API (create + link), the baseline and their ratio; DB bytes per face
(``pg_total_relation_size`` of the face, descriptor, link and change-log tables, indexes included,
divided by the face count); p95 latency of ``GET /faces?list_id=...&page_size=100`` at random pages
with every face stored. Targets: >= 2,000 faces/s, page p95 < 30 ms. Last line: one JSON object.

    .venv/bin/python bench/faces.py [--faces 100000] [--batch 1000] [--pages 300]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import requests
from apiserver import BenchDatabase, free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB = BenchDatabase("facegate_bench_faces", "redis://127.0.0.1:6379/15")
TABLES = ("face", "face_descriptor", "list_face", "change_log")


def _vectors(n: int, dim: int) -> np.ndarray:
    v = np.random.default_rng(7).standard_normal((n, dim)).astype("<f4")
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _baseline(vectors: np.ndarray, account_id: str, version: int) -> float:
    """Rows per second when COPY writes face, descriptor and link rows into copies of the tables."""
    import psycopg

    from app.faces.models import time_ordered_uuid

    n = len(vectors)
    list_id = uuid.uuid4()
    with psycopg.connect(DB.psycopg_url) as conn:
        for t in TABLES[:3]:
            conn.execute(f"CREATE TABLE baseline_{t} (LIKE {t} INCLUDING ALL)")
        conn.commit()
        start = time.perf_counter()
        ids = [time_ordered_uuid() for _ in range(n)]
        with conn.cursor() as cur:
            with cur.copy("COPY baseline_face (face_id, account_id, user_data, avatar, create_time) FROM STDIN") as cp:
                for face_id in ids:
                    cp.write_row((face_id, account_id, "", "", "now"))
            with cur.copy("COPY baseline_face_descriptor (face_id, version, descriptor) FROM STDIN") as cp:
                for face_id, vec in zip(ids, vectors):
                    cp.write_row((face_id, version, vec.tobytes()))
            with cur.copy("COPY baseline_list_face (list_id, face_id) FROM STDIN") as cp:
                for face_id in ids:
                    cp.write_row((list_id, face_id))
        conn.commit()
        elapsed = time.perf_counter() - start
        for t in TABLES[:3]:
            conn.execute(f"DROP TABLE baseline_{t}")
        conn.commit()
    return n / elapsed


def _sizes() -> dict[str, int]:
    import psycopg

    # What autovacuum would have done by the time anyone lists 100,000 faces.
    with psycopg.connect(DB.psycopg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        return {t: conn.execute(f"SELECT pg_total_relation_size('{t}')").fetchone()[0] for t in TABLES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--pages", type=int, default=300, help="list-page requests to time")
    args = parser.parse_args()

    from inference import descriptor_format as fmt

    version = fmt.DESCRIPTOR_VERSION
    vectors = _vectors(args.faces, fmt.DESCRIPTOR_LENGTHS[version])
    DB.fresh()
    port = free_port()
    server = DB.start_api(port)
    try:
        api = f"http://127.0.0.1:{port}"
        http = requests.Session()
        login = f"bench-{uuid.uuid4().hex[:8]}@example.com"
        account_id = http.post(f"{api}/accounts", json={"login": login, "password": "bench password"}).json()["account_id"]
        http.auth = (login, "bench password")
        list_id = http.post(f"{api}/lists", json={"user_data": "bench"}).json()["list_id"]

        bodies = []
        for lo in range(0, args.faces, args.batch):
            faces = [{"descriptors": [{"descriptor": base64.b64encode(fmt.pack(v, version)).decode()}],
                      "external_id": f"ext-{lo + i}"} for i, v in enumerate(vectors[lo:lo + args.batch])]
            bodies.append(json.dumps({"faces": faces}))

        create_s = link_s = 0.0
        headers = {"Content-Type": "application/json"}
        for body in bodies:
            t0 = time.perf_counter()
            r = http.post(f"{api}/faces/batch", data=body, headers=headers)
            t1 = time.perf_counter()
            assert r.status_code == 201, r.text[:300]
            ids = [f["face_id"] for f in r.json()["faces"]]
            t2 = time.perf_counter()
            r = http.patch(f"{api}/lists/{list_id}/faces", json={"action": "attach", "face_ids": ids})
            t3 = time.perf_counter()
            assert r.status_code == 200 and r.json()["changed"] == len(ids), r.text[:300]
            create_s += t1 - t0
            link_s += t3 - t2
        faces_per_s = args.faces / (create_s + link_s)

        sizes = _sizes()
        count = http.get(f"{api}/faces/count", params={"list_id": list_id}).json()["faces_count"]
        assert count == args.faces, count
        pages = args.faces // 100
        latencies = []
        rng = random.Random(3)
        for i in range(args.pages + 10):
            page = rng.randint(1, pages)
            t0 = time.perf_counter()
            r = http.get(f"{api}/faces", params={"list_id": list_id, "page": page, "page_size": 100})
            elapsed = time.perf_counter() - t0
            assert r.status_code == 200 and len(r.json()["faces"]) == 100
            if i >= 10:  # the first requests warm the server's caches and connections
                latencies.append(elapsed * 1000)
        # Walking the list by face_id__gte=<last id seen> costs the same at any depth.
        keyset, after = [], None
        for _ in range(args.pages):
            params = {"list_id": list_id, "page_size": 100}
            if after:
                params["face_id__gte"] = after
            t0 = time.perf_counter()
            r = http.get(f"{api}/faces", params=params)
            keyset.append((time.perf_counter() - t0) * 1000)
            after = r.json()["faces"][-1]["face_id"]
    finally:
        server.terminate()
        server.wait(30)

    baseline = _baseline(vectors, account_id, version)
    total_bytes = sum(sizes.values())
    p95 = float(np.percentile(latencies, 95))
    print(f"server: facegate api (gunicorn gthread, 2 workers) on loopback; PostgreSQL database {DB.name}")
    print(f"faces: {args.faces} in batches of {args.batch}; create {create_s:.1f} s "
          f"({args.faces / create_s:.0f} faces/s), link {link_s:.1f} s ({args.faces / link_s:.0f} faces/s)")
    print(f"API create + link: {faces_per_s:.0f} faces/s (target >= 2000)")
    print(f"baseline COPY of face + descriptor + link rows: {baseline:.0f} faces/s; API/baseline = "
          f"{faces_per_s / baseline:.3f}")
    print("DB bytes: " + ", ".join(f"{t} {b / args.faces:.0f}/face" for t, b in sizes.items())
          + f"; total {total_bytes / args.faces:.0f} bytes/face")
    print(f"GET /faces?list_id=..&page_size=100, random page of {pages}: p50 {np.percentile(latencies, 50):.1f} ms, "
          f"p95 {p95:.1f} ms (target < 30); walking by face_id__gte: p95 {np.percentile(keyset, 95):.1f} ms")
    print(f"load average during the run (shared machine): {os.getloadavg()[0]:.1f}")
    print(json.dumps({"bench": "faces", "faces_per_s": round(faces_per_s), "bytes_per_face": round(total_bytes / args.faces),
                      "list_page_p95_ms": round(p95, 2), "keyset_page_p95_ms": round(float(np.percentile(keyset, 95)), 2),
                      "baseline_copy_faces_per_s": round(baseline),
                      "api_to_baseline": round(faces_per_s / baseline, 3)}))


if __name__ == "__main__":
    main()
