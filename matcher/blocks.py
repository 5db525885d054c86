"""Descriptor pairs over a similarity threshold, tile by tile, and the components they connect.

All-pairs over N descriptors is N^2 scores: clustering never holds them. Scores are made one
tile of at most ``TILE_ENTRIES`` at a time (float64 distances from one matrix product), and only
the pairs over the threshold leave the tile, to feed a :class:`UnionFind`.

The scale is the platform's (``matcher.similarity``): "similarity over ``threshold``" is "L2
distance under ``distance_for_similarity(threshold)``", because the map is strictly decreasing,
so tiles compare squared distances and never evaluate the map itself.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Iterator

import numpy as np

from matcher.similarity import distance_for_similarity

# 4M float64 scores: 32 MiB per tile, wide enough that the product runs at BLAS speed (K is 128).
TILE_ENTRIES = 1 << 22


def distance_bound(threshold: float) -> float:
    """The L2 distance under which two descriptors are more similar than ``threshold``:
    infinite at 0 and below (every pair), 0 at 1 and above (no pair)."""
    if threshold <= 0.0:
        return math.inf
    if threshold >= 1.0:
        return 0.0
    return distance_for_similarity(threshold)


def tiles(x: np.ndarray, y: np.ndarray, *, same: bool = False,
          cols: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """(first row, first column, squared L2 distances) of each tile of ``x`` against ``y``, in
    float64. ``same``: ``y`` is ``x``, and tiles wholly below the diagonal are skipped. ``cols``:
    columns per tile (default: as many as keep the tile wide and within ``TILE_ENTRIES``)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return
    a_sq, b_sq = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    cols = max(1, min(len(b), cols or TILE_ENTRIES // 1024))
    rows = max(1, TILE_ENTRIES // cols)
    for r0 in range(0, len(a), rows):
        r1 = min(r0 + rows, len(a))
        for c0 in range(r0 // cols * cols if same else 0, len(b), cols):
            c1 = min(c0 + cols, len(b))
            squared = a_sq[r0:r1, None] + b_sq[None, c0:c1] - 2.0 * (a[r0:r1] @ b[c0:c1].T)
            yield r0, c0, np.maximum(squared, 0.0, out=squared)


def linked_pairs(x: np.ndarray, y: np.ndarray, threshold: float, *,
                 same: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows of ``x``, rows of ``y``) index arrays of the pairs whose similarity is over
    ``threshold``, a tile at a time. ``same``: ``y`` is ``x``, and each pair comes once (i < j)."""
    bound = distance_bound(threshold)
    if bound == 0.0:
        return
    for r0, c0, squared in tiles(x, y, same=same):
        linked = squared < bound * bound
        if same:
            linked &= np.arange(r0, r0 + len(squared))[:, None] < np.arange(c0, c0 + squared.shape[1])[None, :]
        i, j = np.nonzero(linked)
        if len(i):
            yield i + r0, j + c0


def spanning_links(i: np.ndarray, j: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The edges ``(i[k], j[k])`` over nodes ``0..n-1`` reduced to a forest with the same
    components: (node, its component's least node) for every linked node that is not the least.

    A tile can hold millions of pairs; unioning them one by one in Python would cost more than
    scoring them. Roots hook onto the least root they share an edge with, and pointer jumping
    flattens the trees, until every edge joins one root (a few rounds: each round halves the
    distance between the ends of the longest unresolved path or better)."""
    parent = np.arange(n)
    while True:
        pi, pj = parent[i], parent[j]
        apart = pi != pj
        if not apart.any():
            break
        np.minimum.at(parent, np.maximum(pi, pj)[apart], np.minimum(pi, pj)[apart])
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    nodes = np.unique(np.concatenate([i, j]))
    moved = parent[nodes] != nodes
    return nodes[moved], parent[nodes][moved]


class UnionFind:
    """Disjoint sets of hashable items (object ids), with path halving and union by size."""

    def __init__(self, items: Iterable[Hashable] = ()) -> None:
        self._parent: dict[Hashable, Hashable] = {}
        self._size: dict[Hashable, int] = {}
        for item in items:
            self.add(item)

    def add(self, item: Hashable) -> None:
        if item not in self._parent:
            self._parent[item] = item
            self._size[item] = 1

    def find(self, item: Hashable) -> Hashable:
        self.add(item)
        parent = self._parent
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] < self._size[rb]:
            ra, rb = rb, ra
        self._parent[rb] = ra
        self._size[ra] += self._size[rb]

    def links(self) -> list[tuple[Hashable, Hashable]]:
        """(item, its set's root) for every item that is not a root: a forest as small as the
        sets it describes, which unioned elsewhere rebuilds the same sets."""
        return [(item, root) for item in self._parent if (root := self.find(item)) != item]

    def components(self) -> list[list[Hashable]]:
        """Every set, its items in the order they were added; sets in the order of their first item."""
        groups: dict[Hashable, list[Hashable]] = {}
        for item in self._parent:
            groups.setdefault(self.find(item), []).append(item)
        return list(groups.values())


def components(x: np.ndarray, threshold: float) -> list[list[int]]:
    """The connected components of rows of ``x`` (indices), joined where similarity is over ``threshold``."""
    sets = UnionFind(range(len(x)))
    for i, j in linked_pairs(x, x, threshold, same=True):
        for a, b in zip(*(v.tolist() for v in spanning_links(i, j, len(x)))):
            sets.union(a, b)
    return sets.components()
