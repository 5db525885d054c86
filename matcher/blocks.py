"""Descriptor pairs over a similarity threshold, tile by tile, and the components they connect.

All-pairs over N descriptors is N^2 scores: clustering never holds them. Scores are made one
tile of at most ``TILE_ENTRIES`` at a time (float64 distances from one matrix product), and only
the pairs over the threshold leave the tile, to feed a :class:`UnionFind`.

The scale is the platform's (``matcher.similarity``, one map per descriptor version): "similarity
over ``threshold``" is "L2 distance under ``distance_for_similarity(threshold, version)``",
because the map is strictly decreasing, so tiles compare squared distances and never evaluate
the map itself.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import math
from collections.abc import Callable, Hashable, Iterable, Iterator

import numpy as np

from matcher.index import _error_bound, _group_rank, _merge_best, exact_scores, l2_bias
from matcher.similarity import DESCRIPTOR_VERSION, distance_for_similarity

# 4M float64 scores: 32 MiB per tile, wide enough that the product runs at BLAS speed (K is 128).
TILE_ENTRIES = 1 << 22


def distance_bound(threshold: float, version: int = DESCRIPTOR_VERSION) -> float:
    """The L2 distance under which two descriptors of ``version`` are more similar than
    ``threshold``: infinite at 0 and below (every pair), 0 at 1 and above (no pair)."""
    if threshold <= 0.0:
        return math.inf
    if threshold >= 1.0:
        return 0.0
    return distance_for_similarity(threshold, version)


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


def linked_pairs(x: np.ndarray, y: np.ndarray, threshold: float, *, same: bool = False,
                 version: int = DESCRIPTOR_VERSION) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rows of ``x``, rows of ``y``) index arrays of the pairs whose similarity (``version``'s
    map) is over ``threshold``, a tile at a time. ``same``: ``y`` is ``x``, and each pair comes
    once (i < j)."""
    bound = distance_bound(threshold, version)
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


def components(x: np.ndarray, threshold: float, version: int = DESCRIPTOR_VERSION) -> list[list[int]]:
    """The connected components of rows of ``x`` (indices), joined where similarity (``version``'s
    map) is over ``threshold``."""
    sets = UnionFind(range(len(x)))
    for i, j in linked_pairs(x, x, threshold, same=True, version=version):
        for a, b in zip(*(v.tolist() for v in spanning_links(i, j, len(x)))):
            sets.union(a, b)
    return sets.components()


@functools.cache
def _openblas_threads_local() -> Callable[[int], int] | None:
    """OpenBLAS's ``openblas_set_num_threads_local`` (0.3.27 on: this thread's count, returns the
    previous one) from the library numpy loaded, found in this process's memory map (numpy has no
    call for it); None where there is none (another BLAS, another OS)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths, key=lambda p: ("numpy" not in p, p)):  # numpy's before another package's
        try:
            function = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
        return function
    return None


@contextlib.contextmanager
def blas_threads(count: int) -> Iterator[None]:
    """numpy's products on ``count`` BLAS threads in this thread while the block runs.

    For a prefork worker, whose processes (one per core) are the parallelism: each product on
    every core from each process oversubscribes the cores, and OpenBLAS's spinning threads then
    make a part several times slower (measured 3x with two parts on two cores)."""
    local = _openblas_threads_local()
    previous = local(count) if local else None
    try:
        yield
    finally:
        if local and previous is not None:
            local(previous)


def _sparse_nonzero(mask: np.ndarray, size: int) -> np.ndarray:
    """``np.flatnonzero(mask[:size])`` for a mask with few True values, about 8 times faster: the
    bytes are searched 8 at a time as words, and only the nonzero words are looked into.
    ``mask`` must hold at least ``size`` rounded up to a multiple of 8 entries."""
    padded = -(-size // 8) * 8
    mask[size:padded] = False
    words = np.flatnonzero(mask[:padded].view(np.uint64))
    at = (words[:, None] * 8 + np.arange(8)).ravel()
    return at[mask[at]]


class NearestRows:
    """Exact ``k`` nearest rows (L2) of each query over rows fed a block at a time, for queries x
    rows too many to score at once (a cross-match part: thousands of references, any number of
    candidates streamed from the database).

    Tiles of ``QUERY_TILE`` x ``ROW_TILE`` float32 scores ``q.x - |x|^2/2`` (one product: the
    bias rides as a 129th column, see ``matcher.index``) only *select*: each query keeps its
    ``k`` best approximate scores seen so far, and a tile entry is kept only if it reaches that
    k-th best less twice the float32 error bound (the bound argument of ``matcher.index``), so
    after the first tiles almost nothing passes one comparison. A query block's first tile (no
    k-th best yet) takes one from its first ``FIRST_COLUMNS`` columns by a partition. Kept entries
    are scored in float64 at once; :meth:`result` ranks them by (exact distance, row), which
    equals a float64 brute force, ties included, when rows arrive in id order."""

    # 4 MiB tiles: wide enough for BLAS speed, small enough that the comparison pass reads them
    # from cache (measured: 1024 x 1024 to 512 x 2048 best on a 128-float descriptor)
    QUERY_TILE = 1024
    ROW_TILE = 1024
    FIRST_COLUMNS = 1024

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.q = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        nq, dim = self.q.shape
        self._lhs = np.hstack([self.q, np.ones((nq, 1), np.float32)])
        self._q_norms = np.linalg.norm(self.q.astype(np.float64), axis=1)
        self._best = np.full((nq, k), -np.inf)  # k best approximate scores per query, descending
        self._max_norm = 0.0
        self._rows = 0
        self._found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (query, row, exact squared distance)

    def add(self, rows: np.ndarray) -> None:
        """Score the next block of rows (row numbers continue from the previous blocks)."""
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        first, n = self._rows, len(rows)
        self._rows += n
        if n == 0 or len(self.q) == 0:
            return
        self._max_norm = max(self._max_norm, float(np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64).max())))
        bounds = 2.0 * _error_bound(self._q_norms, self._max_norm, rows.shape[1])
        rhs = np.hstack([rows, l2_bias(rows)[:, None]])
        tile = np.empty(self.QUERY_TILE * self.ROW_TILE, dtype=np.float32)
        mask = np.zeros(tile.size + 8, dtype=bool)  # room to round a tile's size up to whole words
        for q0 in range(0, len(self.q), self.QUERY_TILE):
            q1 = min(q0 + self.QUERY_TILE, len(self.q))
            best = self._best[q0:q1]
            for r0 in range(0, n, self.ROW_TILE):
                r1 = min(r0 + self.ROW_TILE, n)
                s = tile[: (q1 - q0) * (r1 - r0)].reshape(q1 - q0, r1 - r0)
                np.matmul(self._lhs[q0:q1], rhs[r0:r1].T, out=s)
                # A first tile (fewer than k scores so far) brings the top k of its first columns
                # into ``best`` (a partition of the whole tile would cost more than the hits it
                # saves); the hits of those columns are then in ``best`` already.
                merged = 0
                if best[0, -1] == -np.inf and s.shape[1] > self.k:
                    head = s[:, :max(self.k + 1, self.FIRST_COLUMNS)]
                    top = np.partition(head, head.shape[1] - self.k, axis=1)[:, -self.k:]
                    best = -np.sort(-np.concatenate([best, top], axis=1), axis=1)[:, :self.k]
                    merged = head.shape[1]
                np.greater_equal(s, (best[:, -1] - bounds[q0:q1]).astype(np.float32)[:, None],
                                 out=mask[: s.size].reshape(s.shape))
                hits = _sparse_nonzero(mask, s.size)
                if hits.size:
                    qi, col = np.divmod(hits, s.shape[1])
                    new = col >= merged
                    best = _merge_best(best, qi[new], s.ravel()[hits[new]].astype(np.float64))
                    pos = col + r0
                    self._found.append((qi + q0, pos + first, exact_scores(self.q[qi + q0], rows[pos], "l2")))
            self._best[q0:q1] = best

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(L2 distances ascending, row numbers) of shape (queries, min(k, rows)), in float64."""
        nq, width = len(self.q), min(self.k, self._rows)
        if self._found:
            qi, pos, exact = (np.concatenate(column) for column in zip(*self._found))
        else:
            qi, pos, exact = np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0)
        order = np.lexsort((pos, exact, qi))
        qi, pos, exact = qi[order], pos[order], exact[order]
        rank = _group_rank(qi)
        take = rank < width
        distances, found = np.full((nq, width), np.inf), np.full((nq, width), -1, dtype=np.int64)
        distances[qi[take], rank[take]] = np.sqrt(exact[take])
        found[qi[take], rank[take]] = pos[take]
        return distances, found
