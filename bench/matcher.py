"""Matcher speed: exact FlatIndex vs plain numpy, faiss IndexFlatIP and the memory-bandwidth bound.

Data: N random unit 128-d float32 descriptors in one list (N = 1,000,000 and 100,000) and 1,000
random unit queries, k = 10. The index is built as the list cache builds it (``coded=True``: the
batch path screens with int8 products, then re-scores in float64). Measured in the same run:
- single-query latency p50/p99 of FlatIndex.search and of the numpy baseline (X @ q + argpartition);
- 1,000-query batch throughput of FlatIndex.search, faiss IndexFlatIP.search and the numpy
  baseline (Q @ X.T + argpartition, 100 queries at a time so the score matrix fits in memory);
- the bandwidth bound: descriptor bytes (N * 128 * 4) / copy bandwidth of a large np.copyto
  (bytes copied per second; a pure read scan can beat it, a copy also writes);
- the single/batch crossover of FlatIndex (CODED_SINGLE_QUERY_MAX for this coded index);
- exactness: FlatIndex ids equal a float64 brute force for a sample of queries.
The last line is one JSON object (figures for N = 1,000,000). ``--batch-only`` times just the
1,000-query batch against faiss at N = 1,000,000, three times.
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

    ours_1 = np.array([timed(lambda q=q: index.search(q, K), 1)[0] for q in queries[:singles]]) * 1e3
    numpy_1 = np.array([timed(lambda q=q: numpy_topk(q, x), 1)[0] for q in queries[:singles]]) * 1e3

    flat = faiss.IndexFlatIP(128)
    flat.add(x)
    # Best of several runs: the machine is shared, and the minimum is the figure least disturbed
    # by other processes, for every contender alike.
    ours_b = timed(lambda: index.search(queries, K), 3).min()
    faiss_b = timed(lambda: flat.search(queries, K), 2).min()
    numpy_b = timed(lambda: [numpy_topk(queries[a:a + 100], x) for a in range(0, 1000, 100)], 2).min()

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
        "batch_qps": round(1000 / ours_b, 1), "faiss_qps": round(1000 / faiss_b, 1),
        "numpy_qps": round(1000 / numpy_b, 1),
        "batch_ratio_vs_faiss": round(faiss_b / ours_b, 3), "batch_ratio_vs_numpy": round(numpy_b / ours_b, 3),
        "exact_vs_float64": exact,
        "faiss_ids_agree": faiss_ids == [list(r) for r in ids],
        "numpy_ids_agree": numpy_ids == [list(r) for r in ids],
        "crossover": crossover(index, queries),
    }


def batch_only(n: int, runs: int) -> None:
    """``--batch-only``: just the 1,000-query batch of FlatIndex against faiss IndexFlatIP, ``runs``
    times in one process (for iterating on the batch path; the full bench stays the reference)."""
    x, queries = unit(n, 1), unit(1000, 2)
    index = FlatIndex(128, "l2", capacity=n, coded=True)
    index.add(np.arange(n).tolist(), x)
    index.prepare()
    flat = faiss.IndexFlatIP(128)
    flat.add(x)
    exact = [list(r) for r in index.search(queries[:20], K)[1]] == brute_force_ids(x, queries[:20])
    for _ in range(runs):
        ours_b = timed(lambda: index.search(queries, K), 3).min()
        faiss_b = timed(lambda: flat.search(queries, K), 2).min()
        print(json.dumps({"n": n, "batch_s": round(ours_b, 3), "faiss_s": round(faiss_b, 3),
                          "batch_ratio_vs_faiss": round(faiss_b / ours_b, 3), "exact_vs_float64": exact,
                          "load": os.getloadavg()[0]}))


def main() -> None:
    if "--batch-only" in sys.argv:
        batch_only(1_000_000, 3)
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
    print(json.dumps({"bench": "matcher", "single_p50_ms": big["single_p50_ms"],
                      "single_ratio_to_bound": big["single_ratio_to_bound"],
                      "batch_ratio_vs_faiss": big["batch_ratio_vs_faiss"],
                      "batch_ratio_vs_numpy": big["batch_ratio_vs_numpy"],
                      "cache_load_s": measure_cache_load(1_000_000)}))


if __name__ == "__main__":
    main()
