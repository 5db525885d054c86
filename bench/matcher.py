"""Matcher speed: exact FlatIndex vs plain numpy, faiss IndexFlatIP and the memory-bandwidth bound.

Data: N random unit 128-d float32 descriptors in one list (N = 1,000,000 and 100,000) and 1,000
random unit queries, k = 10. The index is built as the list cache builds it (``coded=True``: the
batch path screens with int8 products, then re-scores in float64). Measured in the same run:
- single-query latency p50/p99 of FlatIndex.search and of the numpy baseline (X @ q + argpartition),
  the two interleaved query by query (ours, numpy, ours, numpy, ...), each query once untimed first;
- 1,000-query batch time of FlatIndex.search, faiss IndexFlatIP.search and the numpy baseline
  (Q @ X.T + argpartition, 100 queries at a time so the score matrix fits in memory): every
  contender gets one untimed warm-up and then the same number of timed runs (``BATCH_RUNS``),
  interleaved round by round (ours, faiss, numpy, ours, faiss, numpy, ...) so the shared host's
  drift hits all alike. For each contender the best (minimum, the run least disturbed by other
  processes) and the median of its runs are reported; ``batch_ratio_vs_*`` (the headline) is
  best over best, ``batch_ratio_vs_*_median`` median over median. ``*_qps`` are from the best;
- the bandwidth bound: descriptor bytes (N * 128 * 4) / copy bandwidth of a large np.copyto
  (bytes copied per second; a pure read scan can beat it, a copy also writes);
- the single/batch crossover of FlatIndex (CODED_SINGLE_QUERY_MAX for this coded index);
- exactness: FlatIndex ids equal a float64 brute force for a sample of queries;
- the list cache load of 1,000,000 descriptors from PostgreSQL (bench/matcher_cache_load.py);
- the device back-end (``matcher.device_index.DeviceIndex``), after every CPU figure so that
  importing torch cannot touch them: with CUDA at N = 1,000,000 (and one 10,000,000-row list: its
  build time, device memory and batch speed), without CUDA on torch CPU tensors at N = 100,000;
  batch q/s and single-query p50/p99 against FlatIndex's in the same run, and its results for all
  1,000 queries identical to FlatIndex's (ids and float64 scores; the bench exits non-zero otherwise).
The last line is one JSON object (figures for N = 1,000,000; ``device_*`` for the device rows).
``--batch-only [RUNS]`` times just the 1,000-query batch of FlatIndex and faiss at N = 1,000,000,
interleaved, RUNS timed runs each (default 9), one line per round, then one JSON line with best
and median of each.
"""
from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as ``python bench/matcher.py``: this file's folder comes first on sys.path and its name would
# shadow the ``matcher`` package, so put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import faiss  # noqa: E402
import numpy as np  # noqa: E402

import matcher.index as mi  # noqa: E402
from matcher.index import FlatIndex  # noqa: E402

K = 10
BATCH_RUNS = 3  # timed runs of the 1,000-query batch, the same for every contender


def unit(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 128), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def timed(fn: Callable[[], object], reps: int) -> np.ndarray:
    fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return np.array(out)


def interleaved(contenders: dict[str, Callable[[], object]], runs: int,
                on_round: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, np.ndarray]:
    """Seconds of ``runs`` timed calls of every contender, taken in turn round by round (a, b, c,
    a, b, c, ...) after one untimed warm-up call each, so drift of the host's speed hits all alike."""
    for fn in contenders.values():
        fn()
    out: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(runs):
        for name, fn in contenders.items():
            t = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - t)
        if on_round is not None:
            on_round(r, {name: v[-1] for name, v in out.items()})
    return {name: np.array(v) for name, v in out.items()}


def stats(seconds: np.ndarray) -> dict[str, float]:
    return {"best_s": round(float(seconds.min()), 4), "median_s": round(float(np.median(seconds)), 4)}


def copy_bandwidth() -> float:
    src = np.ones(64 << 20, dtype=np.float32)  # 256 MiB, far beyond the caches that matter
    dst = np.empty_like(src)
    return src.nbytes / timed(lambda: np.copyto(dst, src), 5).min()


def numpy_topk(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    s = q @ x.T
    idx = np.argpartition(-s, K, axis=-1)[..., :K]
    return np.take_along_axis(idx, np.argsort(-np.take_along_axis(s, idx, -1), axis=-1), -1)


def brute_force_ids(x: np.ndarray, queries: np.ndarray) -> list[list[int]]:
    """Float64 L2 ranking, ties by id, in row blocks to bound memory."""
    out = []
    for q in queries.astype(np.float64):
        d = np.concatenate([((x[a:a + 131072].astype(np.float64) - q) ** 2).sum(1)
                            for a in range(0, len(x), 131072)])
        cand = np.argpartition(d, K)[:K + 1]
        out.append(sorted(cand.tolist(), key=lambda i: (d[i], i))[:K])
    return out


def measure_cache_load(n: int) -> float | None:
    """Seconds to load n descriptors from PostgreSQL into a ListCache with the production loader
    (bench/matcher_cache_load.py, which also times a plain fetch baseline); None without PostgreSQL."""
    from sqlalchemy.exc import OperationalError

    from bench.matcher_cache_load import measure

    try:
        result = measure(n)
    except OperationalError as exc:
        print(f"cache load not measured, PostgreSQL unreachable: {exc}", file=sys.stderr)
        return None
    print(json.dumps(result), file=sys.stderr)
    return result["cache_load_s"]


def crossover(index: FlatIndex, queries: np.ndarray) -> dict[str, list[float]]:
    """ms per search for small query counts through each path (the other path disabled)."""
    res: dict[str, list[float]] = {"nq": [], "single_ms": [], "batch_ms": []}
    saved = mi.SINGLE_QUERY_MAX, mi.CODED_SINGLE_QUERY_MAX
    try:
        for nq in (1, 2, 4, 8, 12, 16, 32):
            res["nq"].append(nq)
            for key, limit in (("single_ms", 1 << 30), ("batch_ms", 0)):
                mi.SINGLE_QUERY_MAX = mi.CODED_SINGLE_QUERY_MAX = limit
                res[key].append(round(float(timed(lambda: index.search(queries[:nq], K), 3).min()) * 1e3, 2))
    finally:
        mi.SINGLE_QUERY_MAX, mi.CODED_SINGLE_QUERY_MAX = saved
    return res


def run(n: int, singles: int) -> dict[str, object]:
    x, queries = unit(n, 1), unit(1000, 2)
    index = FlatIndex(128, "l2", capacity=n, coded=True)  # as the list cache builds them
    t = time.perf_counter()
    index.add(np.arange(n).tolist(), x)
    add_s = time.perf_counter() - t
    t = time.perf_counter()
    index.prepare()
    codes_s = time.perf_counter() - t

    # Single queries: ours and numpy in turn, query by query (each query once untimed first).
    singles_s = [interleaved({"ours": lambda q=q: index.search(q, K), "numpy": lambda q=q: numpy_topk(q, x)}, 1)
                 for q in queries[:singles]]
    ours_1 = np.array([t["ours"][0] for t in singles_s]) * 1e3
    numpy_1 = np.array([t["numpy"][0] for t in singles_s]) * 1e3

    flat = faiss.IndexFlatIP(128)
    flat.add(x)
    # The same number of timed runs for every contender, interleaved; best and median of each.
    batch = interleaved({
        "ours": lambda: index.search(queries, K),
        "faiss": lambda: flat.search(queries, K),
        "numpy": lambda: [numpy_topk(queries[a:a + 100], x) for a in range(0, 1000, 100)],
    }, BATCH_RUNS)
    ours_b, faiss_b, numpy_b = (float(batch[name].min()) for name in ("ours", "faiss", "numpy"))
    ours_m, faiss_m, numpy_m = (float(np.median(batch[name])) for name in ("ours", "faiss", "numpy"))

    sample = queries[:20]
    ids = index.search(sample, K)[1]
    exact = [list(r) for r in ids] == brute_force_ids(x, sample)
    faiss_ids = flat.search(sample, K)[1].tolist()
    numpy_ids = numpy_topk(sample, x).tolist()
    return {
        "n": n, "add_s": round(add_s, 2), "int8_codes_s": round(codes_s, 2),
        "single_p50_ms": round(float(np.percentile(ours_1, 50)), 2),
        "single_p99_ms": round(float(np.percentile(ours_1, 99)), 2),
        "numpy_single_p50_ms": round(float(np.percentile(numpy_1, 50)), 2),
        "numpy_single_p99_ms": round(float(np.percentile(numpy_1, 99)), 2),
        "batch_runs": BATCH_RUNS,
        "batch_ours": stats(batch["ours"]), "batch_faiss": stats(batch["faiss"]), "batch_numpy": stats(batch["numpy"]),
        "batch_qps": round(1000 / ours_b, 1), "faiss_qps": round(1000 / faiss_b, 1),
        "numpy_qps": round(1000 / numpy_b, 1),
        "batch_ratio_vs_faiss": round(faiss_b / ours_b, 3), "batch_ratio_vs_numpy": round(numpy_b / ours_b, 3),
        "batch_ratio_vs_faiss_median": round(faiss_m / ours_m, 3),
        "batch_ratio_vs_numpy_median": round(numpy_m / ours_m, 3),
        "exact_vs_float64": exact,
        "faiss_ids_agree": faiss_ids == [list(r) for r in ids],
        "numpy_ids_agree": numpy_ids == [list(r) for r in ids],
        "crossover": crossover(index, queries),
    }


def device_rows() -> dict[str, object]:
    """DeviceIndex against FlatIndex (coded, as the list cache builds it) on the same data: see the
    module docstring. With CUDA, also a 10,000,000-row list."""
    import torch

    from matcher.device_index import DeviceIndex

    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 1_000_000 if device == "cuda" else 100_000
    x, queries = unit(n, 1), unit(1000, 2)
    flat = FlatIndex(128, "l2", capacity=n, coded=True)
    flat.add(np.arange(n).tolist(), x)
    flat.prepare()
    t = time.perf_counter()
    index = DeviceIndex(128, "l2", capacity=n, device=device)
    index.add(np.arange(n).tolist(), x)
    build_s = time.perf_counter() - t
    singles = [interleaved({"device": lambda q=q: index.search(q, K)}, 1)["device"][0] for q in queries[:100]]
    batch = interleaved({"device": lambda: index.search(queries, K), "flat": lambda: flat.search(queries, K)},
                        BATCH_RUNS)
    (s_dev, i_dev), (s_flat, i_flat) = index.search(queries, K), flat.search(queries, K)
    out: dict[str, object] = {
        "device": device, "device_n": n, "device_build_s": round(build_s, 2),
        "device_single_p50_ms": round(float(np.percentile(singles, 50)) * 1e3, 3),
        "device_single_p99_ms": round(float(np.percentile(singles, 99)) * 1e3, 3),
        "device_batch_qps": round(1000 / float(batch["device"].min()), 1),
        "device_flat_batch_qps": round(1000 / float(batch["flat"].min()), 1),
        "device_same_as_flat": i_dev.tolist() == i_flat.tolist() and bool(np.array_equal(s_dev, s_flat)),
    }
    if device == "cuda":
        del index, flat, x
        big = 10_000_000
        x = np.empty((big, 128), dtype=np.float32)
        for a in range(0, big, n):
            x[a:a + n] = unit(n, 10 + a // n)
        torch.cuda.reset_peak_memory_stats()
        t = time.perf_counter()
        index = DeviceIndex(128, "l2", capacity=big, device=device)
        index.add(np.arange(big).tolist(), x)
        out["device_10m_build_s"] = round(time.perf_counter() - t, 2)
        out["device_10m_rows_gib"] = round(torch.cuda.memory_allocated() / 2 ** 30, 2)
        out["device_10m_batch_qps"] = round(1000 / float(timed(lambda: index.search(queries, K), 2).min()), 1)
        out["device_10m_single_ms"] = round(float(timed(lambda: index.search(queries[0], K), 5).min()) * 1e3, 3)
        out["device_10m_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    print(json.dumps(out), file=sys.stderr)
    return out


def batch_only(n: int, runs: int) -> None:
    """``--batch-only``: just the 1,000-query batch of FlatIndex against faiss IndexFlatIP, ``runs``
    timed runs each, interleaved (for iterating on the batch path; the full bench stays the
    reference). One line per round, then one JSON line with best and median of each."""
    x, queries = unit(n, 1), unit(1000, 2)
    index = FlatIndex(128, "l2", capacity=n, coded=True)
    index.add(np.arange(n).tolist(), x)
    index.prepare()
    flat = faiss.IndexFlatIP(128)
    flat.add(x)
    exact = [list(r) for r in index.search(queries[:20], K)[1]] == brute_force_ids(x, queries[:20])

    def report(r: int, last: dict[str, float]) -> None:
        print(json.dumps({"round": r + 1, "batch_s": round(last["ours"], 3), "faiss_s": round(last["faiss"], 3),
                          "ratio_vs_faiss": round(last["faiss"] / last["ours"], 3),
                          "load": os.getloadavg()[0]}), file=sys.stderr, flush=True)

    t = interleaved({"ours": lambda: index.search(queries, K), "faiss": lambda: flat.search(queries, K)},
                    runs, report)
    ours, faiss_s = t["ours"], t["faiss"]
    print(json.dumps({"bench": "matcher_batch", "n": n, "runs": runs,
                      "batch_best_s": round(float(ours.min()), 3), "batch_median_s": round(float(np.median(ours)), 3),
                      "faiss_best_s": round(float(faiss_s.min()), 3),
                      "faiss_median_s": round(float(np.median(faiss_s)), 3),
                      "batch_ratio_vs_faiss": round(float(faiss_s.min() / ours.min()), 3),
                      "batch_ratio_vs_faiss_median": round(float(np.median(faiss_s) / np.median(ours)), 3),
                      "exact_vs_float64": exact, "load": os.getloadavg()[0]}))


def main() -> None:
    if "--batch-only" in sys.argv:
        rest = sys.argv[sys.argv.index("--batch-only") + 1:]
        batch_only(1_000_000, int(rest[0]) if rest else 9)
        return
    # The best copy bandwidth seen, before and after the runs, gives the strictest bound.
    bandwidth = copy_bandwidth()
    results = {}
    for n, singles in ((100_000, 200), (1_000_000, 100)):
        results[n] = run(n, singles)
    best = max(bandwidth, copy_bandwidth())
    print(f"copy bandwidth {best / 1e9:.2f} GB/s, load average {os.getloadavg()}", file=sys.stderr)
    for r in results.values():
        bound_ms = r["n"] * 128 * 4 / best * 1e3
        r["bound_ms"] = round(bound_ms, 2)
        r["single_ratio_to_bound"] = round(r["single_p50_ms"] / bound_ms, 3)
        print(json.dumps(r), file=sys.stderr)
    big = results[1_000_000]
    if not (big["exact_vs_float64"] and results[100_000]["exact_vs_float64"]):
        raise SystemExit("FlatIndex results differ from the float64 brute force")
    cache_load_s = measure_cache_load(1_000_000)
    device = device_rows()
    if not device["device_same_as_flat"]:
        raise SystemExit("DeviceIndex results differ from FlatIndex's")
    print(json.dumps({"bench": "matcher", "single_p50_ms": big["single_p50_ms"],
                      "single_ratio_to_bound": big["single_ratio_to_bound"],
                      "batch_ratio_vs_faiss": big["batch_ratio_vs_faiss"],
                      "batch_ratio_vs_numpy": big["batch_ratio_vs_numpy"],
                      "batch_ratio_vs_faiss_median": big["batch_ratio_vs_faiss_median"],
                      "batch_ratio_vs_numpy_median": big["batch_ratio_vs_numpy_median"],
                      "batch_runs": BATCH_RUNS, "cache_load_s": cache_load_s, **device}))


if __name__ == "__main__":
    main()
