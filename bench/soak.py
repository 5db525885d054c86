"""Soak: concurrent clients on ``POST /sdk`` of a running platform for a fixed time.

Start the platform first (``make run``), then::

    .venv/bin/python bench/soak.py [--clients 8] [--seconds 600] [--url http://127.0.0.1:5000]

Each client thread sends shared face photos one per request (``?extract_descriptor=1``: detect,
landmarks, warp stored as a sample, descriptor, temporary attribute) for ``--seconds``, with its
own connection. Counted: answers by status, failures to connect or read, images/s, latency
percentiles, and the restarts of every supervised process over the run (from the supervisor's
status file in data_dir, ``run/supervisor.json``; absent when the platform runs elsewhere).
No baseline to compare with: the figures that matter are ``errors`` and ``worker_restarts``, which
must be 0. Last line: ``{"bench": "soak", "requests": ..., "errors": ..., "worker_restarts": ...}``.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", ROOT.parent / "shared"))
FACES = SHARED / "faces"


def images(count: int) -> list[bytes]:
    """Every k-th face image of the shared manifest (LFW crops, group photos, large photos)."""
    with open(FACES / "MANIFEST.csv") as fh:
        paths = sorted(r["path"] for r in csv.DictReader(fh) if not r["path"].startswith(("bodies/", "noface/")))
    step = max(1, len(paths) // count)
    return [(FACES / p).read_bytes() for p in paths[::step][:count]]


def restarts(status_file: Path) -> dict[str, int] | None:
    try:
        data = json.loads(status_file.read_text())
    except (OSError, ValueError):
        return None
    return {name: p["restarts"] for name, p in data.items() if isinstance(p, dict) and "restarts" in p}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("FACEGATE_URL", "http://127.0.0.1:5000"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--data-dir", default=os.environ.get("FACEGATE_DATA_DIR", str(ROOT / "var")))
    args = parser.parse_args()
    api = args.url.rstrip("/")
    status_file = Path(args.data_dir) / "run" / "supervisor.json"

    login, password = f"soak-{uuid.uuid4().hex[:8]}@example.com", "soak password"
    r = requests.post(f"{api}/accounts", json={"login": login, "password": password}, timeout=30)
    r.raise_for_status()
    datas = images(48)
    before = restarts(status_file)
    statuses: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    sent_images = 0
    lock = threading.Lock()
    deadline = time.monotonic() + args.seconds

    def client(n: int) -> None:
        nonlocal sent_images
        session = requests.Session()
        session.auth = (login, password)
        i = n
        while time.monotonic() < deadline:
            data = datas[i % len(datas)]
            i += args.clients
            started = time.perf_counter()
            try:
                response = session.post(f"{api}/sdk", params={"extract_descriptor": 1}, data=data,
                                        headers={"Content-Type": "image/jpeg"}, timeout=120)
                outcome = str(response.status_code)
                if response.status_code != 200:
                    print(f"client {n}: {response.status_code} {response.text[:200]}", file=sys.stderr, flush=True)
            except requests.RequestException as exc:
                outcome = type(exc).__name__
                print(f"client {n}: {outcome}: {exc}", file=sys.stderr, flush=True)
            with lock:
                statuses[outcome] += 1
                if outcome == "200":
                    latencies.append(time.perf_counter() - started)
                    sent_images += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(min(30.0, max(0.1, deadline - time.monotonic())))
        with lock:
            print(f"{time.monotonic() - started:6.0f} s: {dict(statuses)}", flush=True)
    elapsed = time.monotonic() - started
    after = restarts(status_file)
    restarted = None if before is None or after is None else {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(statuses.values())
    errors = total - statuses.get("200", 0)
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    print(json.dumps({"bench": "soak", "clients": args.clients, "seconds": round(elapsed, 1), "requests": total,
                      "errors": errors, "statuses": dict(statuses),
                      "images_per_s": round(sent_images / elapsed, 2),
                      "p50_ms": round(quantiles[49] * 1000, 1), "p99_ms": round(quantiles[98] * 1000, 1),
                      "worker_restarts": None if restarted is None else restarted.get("worker", 0),
                      "restarts": restarted}))


if __name__ == "__main__":
    main()
