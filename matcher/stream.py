"""Exact top-k over descriptors streamed in chunks (matching against the database).

Used when the list cache cannot answer (no list filter, or filters only SQL can evaluate): the
database layer filters in SQL and yields ``(ids, descriptors)`` chunks; each chunk is searched with
the same exact machinery as the in-memory index and merged into a running top-k, so memory stays
bounded by one chunk and the result equals a brute force over everything streamed.
"""
from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from matcher.index import FlatIndex, MatcherInputError, as_descriptors


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Merge exact per-part top-k results into the exact top-k, keeping one entry per id.

    Every part ranks with the same float64 scores and (score, id) order, so the merge is exact.
    """
    nq = parts[0][0].shape[0] if parts else 0
    rows_s, rows_i = [], []
    for qi in range(nq):
        best: dict[Hashable, float] = {}
        for scores, ids in parts:
            for s, i in zip(scores[qi].tolist(), ids[qi].tolist()):
                if i not in best or (s < best[i] if metric == "l2" else s > best[i]):
                    best[i] = s
        ranked = sorted(best.items(), key=lambda kv: (kv[1] if metric == "l2" else -kv[1], kv[0]))[:k]
        rows_s.append([s for _, s in ranked])
        rows_i.append([i for i, _ in ranked])
    width = min((len(r) for r in rows_s), default=0)
    scores = np.array([r[:width] for r in rows_s], dtype=np.float64).reshape(nq, width)
    ids = np.empty((nq, width), dtype=object)
    for qi, r in enumerate(rows_i):
        ids[qi, :] = r[:width]
    return scores, ids


def topk_stream(queries: object, chunks: Iterable[tuple[Sequence[Hashable], np.ndarray]], k: int,
                dim: int = 128, metric: str = "l2") -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of ``queries`` over all streamed chunks; same convention as FlatIndex.search."""
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise MatcherInputError("k must be a positive integer")
    q = as_descriptors(queries, dim, "queries")
    best = (np.empty((q.shape[0], 0)), np.empty((q.shape[0], 0), dtype=object))
    for ids, descriptors in chunks:
        index = FlatIndex(dim, metric, capacity=len(ids))
        index.add(ids, descriptors)
        best = merge_topk([best, index.search(q, k)], k, metric)
    return best
