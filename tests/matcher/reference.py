"""Brute-force float64 reference the matcher must reproduce exactly."""
from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def brute_force(x: np.ndarray, ids: Sequence[Hashable], queries: np.ndarray, k: int,
                metric: str) -> tuple[np.ndarray, list[list[Hashable]]]:
    """Float64 scores of every pair, ordered by (distance ascending | product descending, id)."""
    x64 = x.astype(np.float64)
    out_s, out_i = [], []
    for q in queries.astype(np.float64):
        if metric == "l2":
            diff = x64 - q
            key = (diff * diff).sum(axis=1)
        else:
            key = -(x64 * q).sum(axis=1)
        order = sorted(range(len(ids)), key=lambda i: (key[i], ids[i]))[:k]
        out_s.append(np.sqrt(key[order]) if metric == "l2" else -key[order])
        out_i.append([ids[i] for i in order])
    return np.array(out_s), out_i
