"""Memory of the API and the gpu worker under concurrent large images, with and without the decode budget.

The embedded platform is started as ``bench/pipeline.py`` starts it (its :class:`Platform`:
Redis, ``facegate api`` with its gunicorn worker processes, a threads-pool gpu worker of 8
threads). After a warm-up (every model the default /sdk call needs is loaded, one /images
upload), it sends two bursts of ``--clients`` (8) concurrent requests, first to ``POST /images``,
then to ``POST /sdk``; half of each burst carries a 6300x6300 RGB PNG of a few dozen KB
(39.7 MP, about 270 MiB to decode), the other half a 6000x4000 JPEG of a few MB (a valid
photo-sized file). The two bursts are sent ``--rounds`` (2) times. Resident sizes (VmRSS) are
read before the bursts, every 50 ms during them (the peak) and 2 s after each round's last answer
(``*_after_by_round``; ``*_after`` is the last: flat means it does not grow from round to round):

- ``api_rss_mb_*``: the largest of the API's gunicorn worker processes (each has its own budget);
- ``worker_rss_mb_*``: the Celery worker process;
- ``*_ratio_after``, ``*_ratio_peak``: after / before and peak / before.

Baseline, in the same run: the same bursts on a fresh platform whose budget does not bound
anything (``image_decode_budget_mb`` 100000), i.e. every request decodes at once, as before the
budget existed; its figures are under ``unbounded``. Goal: with the default budget (512 MiB),
flat and under 1 GB per process.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/image_memory.py [--clients 8] [--rounds 2] [--skip-baseline]

Last line: {"bench": "image_memory", "api_rss_mb_before": ..., "api_rss_mb_after": ...,
"worker_rss_mb_before": ..., "worker_rss_mb_after": ..., ..., "unbounded": {...}}
"""
from __future__ import annotations

import argparse
import io
import json
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image
from pipeline import PORTRAIT, Platform, load_load, rss_mb

UNBOUNDED_MB = 100_000


def big_png() -> bytes:
    """6300x6300 RGB with a gentle gradient: a small file, 39.7 MP to decode."""
    row = np.linspace(40, 220, 6300, dtype=np.uint8)
    pixels = np.broadcast_to(row[None, :, None], (6300, 6300, 3))
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGB").save(out, "PNG", optimize=True)
    return out.getvalue()


def big_jpeg() -> bytes:
    """A 6000x4000 photo-like JPEG (smooth noise scaled up), quality 85."""
    small = np.random.default_rng(0).integers(0, 256, (400, 600, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(small).resize((6000, 4000), Image.Resampling.BICUBIC).save(out, "JPEG", quality=85)
    return out.getvalue()


def api_pids(platform: Platform) -> list[int]:
    """The gunicorn worker processes: children of ``facegate api``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == platform.api.pid:
            pids.append(int(stat.parent.name))
    return sorted(pids)


class Sampler:
    """Largest RSS seen per process, read every 50 ms on a thread, while ``with`` lasts."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak = dict.fromkeys(pids, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for pid in self.pids:
                self.peak[pid] = max(self.peak[pid], rss_mb(pid))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def burst(platform: Platform, route: str, bodies: list[tuple[str, bytes]]) -> Counter:
    """Send every body at once, one thread and connection each: Counter of (route, status)."""
    statuses: Counter = Counter()
    lock = threading.Lock()

    def send(content_type: str, data: bytes) -> None:
        with requests.Session() as session:
            r = session.post(f"{platform.url}{route}", data=data, headers={"Content-Type": content_type},
                             auth=platform.auth, timeout=600)
        with lock:
            statuses[f"{route} {r.status_code}"] += 1
        if r.status_code >= 300:
            print(f"{route} answered {r.status_code}: {r.text[:200]}", flush=True)

    threads = [threading.Thread(target=send, args=body) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def measure(budget_mb: float, clients: int, rounds: int, png: bytes, jpeg: bytes) -> dict[str, Any]:
    platform = Platform({"image_decode_budget_mb": budget_mb})
    try:
        platform.start_worker(32)
        portrait = PORTRAIT.read_bytes()
        session = requests.Session()
        platform.sdk(session, portrait, extract_descriptor=1)  # loads the models /sdk needs
        session.post(f"{platform.url}/images", data=portrait, headers={"Content-Type": "image/jpeg"},
                     auth=platform.auth, timeout=60).raise_for_status()
        time.sleep(2)
        apis = api_pids(platform)
        worker = platform.worker.pid
        before = {pid: rss_mb(pid) for pid in [*apis, worker]}
        bodies = [("image/png", png) if i % 2 == 0 else ("image/jpeg", jpeg) for i in range(clients)]
        start = time.perf_counter()
        statuses: Counter = Counter()
        by_round = []
        with Sampler([*apis, worker]) as sampler:
            for _ in range(rounds):
                for route in ("/images", "/sdk"):
                    statuses += burst(platform, route, bodies)
                time.sleep(2)
                by_round.append({pid: rss_mb(pid) for pid in [*apis, worker]})
        seconds = time.perf_counter() - start - 2 * rounds
        after = by_round[-1]
    finally:
        platform.stop()

    def largest(values: dict[int, float]) -> float:
        return round(max(values[pid] for pid in apis), 1)

    figures = {"image_decode_budget_mb": budget_mb, "api_processes": len(apis),
               "api_rss_mb_before": largest(before), "api_rss_mb_peak": largest(sampler.peak),
               "api_rss_mb_after": largest(after),
               "worker_rss_mb_before": round(before[worker], 1), "worker_rss_mb_peak": round(sampler.peak[worker], 1),
               "worker_rss_mb_after": round(after[worker], 1),
               "api_rss_mb_after_by_round": [largest(r) for r in by_round],
               "worker_rss_mb_after_by_round": [round(r[worker], 1) for r in by_round], "seconds": round(seconds, 1),
               "answers": dict(sorted(statuses.items()))}
    for side in ("api", "worker"):
        for when in ("after", "peak"):
            figures[f"{side}_ratio_{when}"] = round(figures[f"{side}_rss_mb_{when}"] / figures[f"{side}_rss_mb_before"], 2)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent requests per burst")
    parser.add_argument("--rounds", type=int, default=2, help="times both bursts are sent")
    parser.add_argument("--skip-baseline", action="store_true", help="leave out the unbounded run")
    args = parser.parse_args()

    from app import settings

    png, jpeg = big_png(), big_jpeg()
    budget = next(s.default for s in settings.SETTINGS if s.name == "image_decode_budget_mb")
    print(f"PNG 6300x6300 {len(png) / 1024:.0f} KB, JPEG 6000x4000 {len(jpeg) / 2**20:.1f} MB; "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; {load_load()}", flush=True)
    figures = measure(budget, args.clients, args.rounds, png, jpeg)
    print(f"budget {budget:g} MiB: {figures}", flush=True)
    if not args.skip_baseline:
        figures["unbounded"] = measure(UNBOUNDED_MB, args.clients, args.rounds, png, jpeg)
        print(f"unbounded: {figures['unbounded']}", flush=True)
    print(f"{load_load()} at end", flush=True)
    print(json.dumps({"bench": "image_memory", "clients": args.clients, "rounds": args.rounds, **figures}))


if __name__ == "__main__":
    main()
