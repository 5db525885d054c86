"""Exact in-memory descriptor index: one contiguous float32 matrix per list.

Exactness. BLAS float32 scores are only approximate (summation order differs between kernels), so
they are used to *select* a candidate set, never to rank it. Every float32 dot product of length
D is within ``gamma_D * |q| * |x|`` of the real value (classic floating-point bound, whatever the
summation order), so with ``E`` bounding that error, the set ``{j : s~_j >= T - 2E}`` (``T`` = the
k-th largest approximate score, or any lower bound of it) is guaranteed to contain the exact top
k. The candidates are re-scored in float64 and sorted by (score, id), which makes results
identical to a float64 brute force, ties included.

L2 from inner products. Ranking by ascending ``|q - x|^2 = |q|^2 - 2 (q.x - |x|^2/2)`` equals
ranking by descending ``q.x + bias`` with the per-row ``bias = -|x|^2/2`` precomputed, so L2 costs
one extra pass over the scores, not over the descriptors. (Folding the bias into a 129th column
was measured 40% slower for the single-query product: 516-byte rows straddle cache lines.)

Concurrency (many readers, one writer at a time). Writers never modify a row a published snapshot
can read: additions go to rows past every published ``n`` (or into a new, larger buffer), removals
only publish a new tombstone array, and compaction copies live rows into a *new* buffer. Each
change ends by publishing a new immutable ``_Snapshot`` with one attribute assignment (atomic under
the GIL), and a search reads ``self._snap`` once. Guarantee: a change whose ``add``/``remove``
returned before a search started is visible to that search; a search running concurrently with a
change sees it entirely or not at all, never half of it.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from matcher import int8

METRICS = ("l2", "ip")
# Query counts up to this run one matrix-vector product per query; above it the blocked
# matrix-matrix scan wins (measured crossover, see docs/matcher.md and bench/matcher.py). With
# int8 codes the batch path wins from three queries.
SINGLE_QUERY_MAX = 4
CODED_SINGLE_QUERY_MAX = 2
# Size of the (queries x rows) score tile of the batch scan: OpenBLAS only reaches full speed on
# wide products (K is only 128), and the comparison pass over the tile is cheap next to it.
_BLOCK_BYTES = 32 << 20
_BLOCK_ROWS_MAX = 1 << 16  # few queries: bounded buffers, and sgemm packs smaller panels
_QUERY_BLOCK = 1024
# Threshold samples: the k-th best score over every ``stride``-th row is a lower bound on the real
# k-th best score, which is all the candidate filter needs.
_SAMPLE_MIN = 16384
# The int8 path only needs a first limit: after its first chunks the k-th best found takes over.
_CODED_SAMPLE_MIN = 2048
_UNIT_ROUNDOFF = 2.0 ** -24
# Lists from this many rows on take the int8 screen in the batch path (``matcher.int8``); below
# it the codes' memory and first-search build time buy nothing measurable.
CODED_MIN_ROWS = 1 << 16


class MatcherInputError(ValueError):
    """Bad input to the matcher (descriptors, ids or parameters)."""


class DimensionError(MatcherInputError):
    """A descriptor or query has the wrong shape or length."""


class NonFiniteError(MatcherInputError):
    """A descriptor or query contains NaN or infinity."""


class IdError(MatcherInputError):
    """Ids are duplicated within one call, mixed in type, or not str/int."""


def as_descriptors(values: object, dim: int, what: str = "descriptors") -> np.ndarray:
    """Validate and convert to a C-contiguous float32 (n, dim) matrix (a 1-D vector becomes n=1)."""
    try:
        arr = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise MatcherInputError(f"{what} must be numeric arrays: {exc}") from None
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise DimensionError(f"{what} must have length {dim}, got shape {arr.shape}")
    # A float64 sum of float32 values cannot overflow, so it is finite iff every element is.
    if not np.isfinite(arr.sum(dtype=np.float64)):
        raise NonFiniteError(f"{what} contain NaN or infinite values")
    return np.ascontiguousarray(arr)


def l2_bias(x: np.ndarray) -> np.ndarray:
    """``-|x|^2/2`` per row (see module docstring), the norm taken in float64."""
    return (-0.5 * np.einsum("ij,ij->i", x, x, dtype=np.float64)).astype(np.float32)


def exact_scores(queries: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Float64 squared L2 distance (smaller is better) or inner product, per (query, row) pair.

    Computed element-wise per row, so identical rows always get bit-identical scores, which is what
    makes the (score, id) tie-break deterministic. ``matcher.device_index`` computes the same
    scores on a device in numpy's summation order (``numpy_order_sum``): change the two together.
    """
    q = queries.astype(np.float64)
    x = rows.astype(np.float64)
    if metric == "l2":
        diff = x - q
        return (diff * diff).sum(axis=1)
    return (x * q).sum(axis=1)


def _check_ids(ids: Sequence[Hashable]) -> list[Hashable]:
    out = list(ids)
    kinds = {str if isinstance(i, str) else int if isinstance(i, (int, np.integer)) and not isinstance(i, bool)
             else None for i in out}
    if None in kinds or len(kinds) > 1:
        raise IdError("ids must be all str or all int")
    if kinds == {int}:
        out = [int(i) for i in out]
    if len(set(out)) != len(out):
        raise IdError("duplicate ids in one call")
    return out


def checked_rows(ids: Sequence[Hashable], descriptors: object, dim: int) -> tuple[list[Hashable], np.ndarray]:
    """The ids and float32 (n, dim) descriptors of one ``add`` call, validated."""
    ids = _check_ids(ids)
    x = as_descriptors(descriptors, dim)
    if x.shape[0] != len(ids):
        raise DimensionError(f"{len(ids)} ids for {x.shape[0]} descriptors")
    return ids, x


def id_kind(held: type | None, ids: list[Hashable]) -> type:
    """The id type of an index holding ``held`` ids once ``ids`` (checked, not empty) are added:
    one index never mixes str and int ids."""
    kind = type(ids[0])
    if held not in (None, kind):
        raise IdError(f"this index holds {held.__name__} ids, got {kind.__name__}")
    return kind


@dataclass(frozen=True, slots=True)
class _Snapshot:
    rows: np.ndarray      # (n, D) float32 view; never written while published
    bias: np.ndarray      # (n,) float32 -|x|^2/2, parallel to rows
    ids: np.ndarray       # (n,) object view, parallel to rows
    dead: np.ndarray      # sorted int64 positions of removed rows (tombstones)
    max_norm: float       # upper bound of |x| over rows, for the rounding-error bound
    codes: int8.Codes | None  # int8 copy of the buffer's rows (coded indexes), shared by its snapshots

    @property
    def live(self) -> int:
        return self.rows.shape[0] - self.dead.size


def _error_bound(query_norms: np.ndarray, max_norm: float, dim: int) -> np.ndarray:
    """Upper bound of |float32 score - exact score| for each query (product, rounding of the norm
    term and of the sum), with a 4x safety factor on gamma_{D+2}."""
    gamma = 4.0 * (dim + 2) * _UNIT_ROUNDOFF
    return gamma * (query_norms * max_norm + max_norm * max_norm + 1e-30)


def _lower_threshold(scores: np.ndarray, k: int) -> np.ndarray:
    """k-th largest per row of a (Q, m) score matrix (m >= k)."""
    m = scores.shape[1]
    return np.partition(scores, m - k, axis=1)[:, m - k]


def _search_single(queries: np.ndarray, bounds: np.ndarray, snap: _Snapshot, k: int, metric: str,
                   out: tuple[np.ndarray, np.ndarray]) -> None:
    n = snap.rows.shape[0]
    stride = max(1, n // max(_SAMPLE_MIN, 16 * k))
    for i in range(queries.shape[0]):
        s = snap.rows @ queries[i]
        if metric == "l2":
            s += snap.bias
        s[snap.dead] = -np.inf
        sample = s[::stride]
        thr = _lower_threshold(sample[None, :], k)[0] if sample.size >= k else -np.inf
        # float32 limit: a float64 one would make the comparison upcast all n scores
        cand = np.flatnonzero(s >= np.float32(thr - 2.0 * bounds[i]))
        _select_all(queries[i:i + 1], np.zeros(cand.size, np.int64), cand, s[cand], bounds[i:i + 1], snap, k,
                    metric, (out[0][i:i + 1], out[1][i:i + 1]))


def _sample_kth(queries: np.ndarray, snap: _Snapshot, k: int, metric: str, size: int) -> np.ndarray:
    """Each query's k-th best float32 score over a strided sample of the rows (-inf when the
    sample is too small): within the float32 bound of a lower bound of the real k-th best, so
    the scans can discard almost every row with one comparison. ``size``: rows to sample, at least."""
    n = snap.rows.shape[0]
    stride = max(1, n // max(size, 16 * k))
    sample_pos = np.arange(0, n, stride)
    if sample_pos.size < k:
        return np.full(queries.shape[0], -np.inf)
    sample = queries @ snap.rows[sample_pos].T
    if metric == "l2":
        sample += snap.bias[sample_pos]
    sample[:, np.isin(sample_pos, snap.dead)] = -np.inf
    return _lower_threshold(sample, k).astype(np.float64)


def _search_batch(queries: np.ndarray, bounds: np.ndarray, snap: _Snapshot, k: int, metric: str,
                  out: tuple[np.ndarray, np.ndarray]) -> None:
    n, nq = snap.rows.shape[0], queries.shape[0]
    limit = (_sample_kth(queries, snap, k, metric, _SAMPLE_MIN) - 2.0 * bounds).astype(np.float32)[:, None]
    width = min(_BLOCK_ROWS_MAX, max(256, _BLOCK_BYTES // (4 * nq)))
    tile = np.empty(nq * width, dtype=np.float32)
    mask = np.empty(nq * width, dtype=bool)
    # With many queries the bias rides along as a 129th column of a per-block copy (and a 1 in
    # the queries): copying a row (D + 1 floats) is cheaper than adding the bias to its nq scores
    # once nq > D + 1; with few queries the addition is the cheaper one.
    fold = metric == "l2" and nq > queries.shape[1] + 1
    if fold:
        lhs = np.hstack([queries, np.ones((nq, 1), np.float32)])
        block = np.empty((width, queries.shape[1] + 1), dtype=np.float32)
    found_q, found_pos, found_s = [], [], []
    for start in range(0, n, width):
        stop = min(n, start + width)
        w = stop - start
        s = tile[: nq * w].reshape(nq, w)
        if fold:
            block[:w, :-1] = snap.rows[start:stop]
            block[:w, -1] = snap.bias[start:stop]
            np.matmul(lhs, block[:w].T, out=s)
        else:
            np.matmul(queries, snap.rows[start:stop].T, out=s)
            if metric == "l2":
                s += snap.bias[start:stop]
        lo, hi = np.searchsorted(snap.dead, [start, stop])
        if hi > lo:
            s[:, snap.dead[lo:hi] - start] = -np.inf
        m = mask[: nq * w].reshape(nq, w)
        np.greater_equal(s, limit, out=m)
        hits = np.flatnonzero(m)
        if hits.size:
            found_q.append(hits // w)
            found_pos.append(hits % w + start)
            found_s.append(s.ravel()[hits])
    qi = np.concatenate(found_q) if found_q else np.empty(0, np.int64)
    pos = np.concatenate(found_pos) if found_pos else np.empty(0, np.int64)
    val = np.concatenate(found_s) if found_s else np.empty(0, np.float32)
    _select_all(queries, qi, pos, val, bounds, snap, k, metric, out)


def _group_rank(qi: np.ndarray) -> np.ndarray:
    """Position of each element within its run of equal values of the sorted array ``qi``."""
    return np.arange(qi.size) - np.searchsorted(qi, qi)


def _select_all(queries: np.ndarray, qi: np.ndarray, pos: np.ndarray, approx: np.ndarray, bounds: np.ndarray,
                snap: _Snapshot, k: int, metric: str, out: tuple[np.ndarray, np.ndarray]) -> None:
    """Exact top-k of every query from (query, position, approximate score) candidate triples
    whose approximate scores are within ``bounds`` (per query) of the real ones; fills ``out``.

    All queries at once: candidates more than two bounds below their query's k-th best
    approximate score go, the rest are scored in float64 and sorted by (query, score, id) (ids
    compared in Python only within runs of equal scores)."""
    nq = queries.shape[0]
    alive = approx > -np.inf  # tombstoned rows can only slip in when the threshold is -inf
    qi, pos, approx = qi[alive], pos[alive], approx[alive]
    order = np.lexsort((-approx, qi))
    qi, pos, approx = qi[order], pos[order], approx[order]
    kth = np.full(nq, -np.inf)
    at = _group_rank(qi) == k - 1
    kth[qi[at]] = approx[at]
    keep = approx >= kth[qi] - 2.0 * bounds[qi]
    qi, pos = qi[keep], pos[keep]
    exact = exact_scores(queries[qi], snap.rows[pos], metric)
    order = np.lexsort((exact if metric == "l2" else -exact, qi))
    place_sorted(qi[order], exact[order], snap.ids[pos[order]], metric, out)


def place_sorted(qi: np.ndarray, exact: np.ndarray, ids: np.ndarray, metric: str,
                 out: tuple[np.ndarray, np.ndarray]) -> None:
    """Fill ``out`` (scores, ids) from float64 candidate scores sorted by (query, score best
    first): runs of equal scores are ordered by id (compared in Python, only within such runs),
    then each query keeps its first ``out``-width entries. Shared by every back-end, so ties come
    out alike everywhere."""
    key = exact if metric == "l2" else -exact
    tied = np.flatnonzero((qi[1:] == qi[:-1]) & (key[1:] == key[:-1]))
    if tied.size:
        perm = np.arange(qi.size)
        for run in np.split(tied, np.flatnonzero(np.diff(tied) > 1) + 1):
            a, b = run[0], run[-1] + 2
            perm[a:b] = a + np.array(sorted(range(b - a), key=lambda j: ids[a + j]))
        qi, exact, ids = qi[perm], exact[perm], ids[perm]
    rank = _group_rank(qi)
    take = rank < out[0].shape[1]
    out[0][qi[take], rank[take]] = np.sqrt(exact[take]) if metric == "l2" else exact[take]
    out[1][qi[take], rank[take]] = ids[take]


def _merge_best(best: np.ndarray, qi: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Each query's k best scores (descending; -inf pads) of ``best`` (nq, k) and of the new
    (query, score) pairs: only the new pairs get sorted, not everything found so far."""
    nq, k = best.shape
    order = np.lexsort((-s, qi))
    qs, ss = qi[order], s[order]
    rank = _group_rank(qs)
    top = rank < k
    new = np.full((nq, k), -np.inf)
    new[qs[top], rank[top]] = ss[top]
    both = np.concatenate([best, new], axis=1)
    return -np.sort(-both, axis=1)[:, :k]


def _search_coded(queries: np.ndarray, bounds: np.ndarray, snap: _Snapshot, k: int, metric: str,
                  out: tuple[np.ndarray, np.ndarray], sess: object) -> None:
    """Batch path with the int8 screen (``matcher.int8``): chunk by chunk, the screen returns the
    rows that may reach each query's lower bound ``floor`` of its k-th best score; they are scored
    in float32 at once (within ``bounds`` of the real scores), which raises ``floor`` to the k-th
    best found so far less the bound (rows that cannot reach it are dropped) and so narrows the
    screen of the following chunks; ``_select_all`` then ranks the survivors in float64, as on
    the float32 path. One thread per core takes chunks in turn (the product and numpy passes
    release the GIL); they share ``floor`` under a lock."""
    n, nq = snap.rows.shape[0], queries.shape[0]
    coded = int8.code_queries(queries)
    lock = threading.Lock()
    state = {"floor": _sample_kth(queries, snap, k, metric, _CODED_SAMPLE_MIN) - bounds,
             "best": np.full((nq, k), -np.inf), "found": []}
    chunks = iter(range(-(-n // int8.CHUNK)))
    errors: list[BaseException] = []

    def scan() -> None:
        try:
            while True:
                with lock:
                    c = next(chunks, None)
                    floor = state["floor"]
                if c is None:
                    return
                hq, hp = int8.screen(sess, coded, snap.codes.chunk(snap.rows, c), floor)
                keep = hp < n
                if snap.dead.size:
                    at = np.minimum(np.searchsorted(snap.dead, hp), snap.dead.size - 1)
                    keep &= snap.dead[at] != hp
                hq, hp = hq[keep], hp[keep]
                if not hq.size:
                    continue
                s = np.einsum("ij,ij->i", snap.rows[hp], queries[hq])
                if metric == "l2":
                    s += snap.bias[hp]
                # the screen's margin lets through rows the floor already rules out
                above = s >= floor[hq] - bounds[hq]
                hq, hp, s = hq[above], hp[above], s[above]
                with lock:
                    state["best"] = _merge_best(state["best"], hq, s.astype(np.float64))
                    state["floor"] = np.maximum(state["floor"], state["best"][:, -1] - bounds)
                    state["found"].append((hq, hp, s))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    workers = [threading.Thread(target=scan, daemon=True) for _ in range(max(1, min(os.cpu_count() or 1, 8)) - 1)]
    for w in workers:
        w.start()
    scan()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]
    qi, pos, exact = (np.concatenate(parts) for parts in zip(*state["found"])) if state["found"] else \
        (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0))
    keep = exact >= state["floor"][qi] - bounds[qi]  # the final floor: rows below cannot be in the top k
    _select_all(queries, qi[keep], pos[keep], exact[keep], bounds, snap, k, metric, out)


def _search_snapshot(snap: _Snapshot, queries: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of validated float32 queries against one snapshot; see FlatIndex.search."""
    nq, dim = queries.shape
    kk = min(k, snap.live)
    scores = np.empty((nq, kk), dtype=np.float64)
    ids = np.empty((nq, kk), dtype=object)
    if kk == 0 or nq == 0:
        return scores, ids
    bounds = _error_bound(np.linalg.norm(queries.astype(np.float64), axis=1), snap.max_norm, dim)
    coded = snap.codes is not None and snap.rows.shape[0] >= CODED_MIN_ROWS
    single = nq <= (CODED_SINGLE_QUERY_MAX if coded else SINGLE_QUERY_MAX)
    for a in range(0, nq, _QUERY_BLOCK):
        b = min(nq, a + _QUERY_BLOCK)
        part = (queries[a:b], bounds[a:b], snap, kk, metric, (scores[a:b], ids[a:b]))
        if single:
            _search_single(*part)
        elif coded:
            _search_coded(*part, int8.session())
        else:
            _search_batch(*part)
    return scores, ids


def check_space(dim: int, metric: str) -> None:
    """Reject an unusable descriptor length or metric up front."""
    if metric not in METRICS:
        raise MatcherInputError(f"metric must be one of {METRICS}")
    if dim <= 0:
        raise DimensionError("dim must be positive")


class FlatIndex:
    """Exact top-k index over one list's descriptors (ids are str or int, unique per index).

    ``coded``: keep an int8 copy of the rows for the batch path's screen (``matcher.int8``; 1 byte
    per dimension more). Worth it for long-lived indexes such as the list cache's; building the
    codes costs about as much as scanning 1,500 queries saves, so one-shot indexes go without.
    """

    def __init__(self, dim: int = 128, metric: str = "l2", capacity: int = 1024, coded: bool = False) -> None:
        check_space(dim, metric)
        self.dim = dim
        self.metric = metric
        self._write = threading.Lock()
        self._buf = np.empty((max(1, capacity), dim), dtype=np.float32)
        self._bias = np.empty(self._buf.shape[0], dtype=np.float32)
        self._id_buf = np.empty(self._buf.shape[0], dtype=object)
        self._pos: dict[Hashable, int] = {}
        self._n = 0
        self._id_kind: type | None = None
        self._coded = coded and int8.session() is not None
        self._codes = int8.Codes(metric == "l2") if self._coded else None
        self._snap = _Snapshot(self._buf[:0], self._bias[:0], self._id_buf[:0], np.empty(0, np.int64), 0.0,
                               self._codes)

    def __len__(self) -> int:
        return self._snap.live

    def __contains__(self, face_id: object) -> bool:
        return face_id in self._pos

    def get(self, face_id: Hashable) -> np.ndarray | None:
        """The stored descriptor of ``face_id`` (a copy), or None."""
        with self._write:  # positions move on compaction; read them with the writer excluded
            pos = self._pos.get(face_id)
            return None if pos is None else self._buf[pos].copy()

    def add(self, ids: Sequence[Hashable], descriptors: object) -> None:
        """Insert or replace descriptors (replacing tombstones the old row)."""
        ids, x = checked_rows(ids, descriptors, self.dim)
        if not ids:
            return
        with self._write:
            self._id_kind = id_kind(self._id_kind, ids)
            snap = self._snap
            replaced = [self._pos[i] for i in ids if i in self._pos]
            dead = np.union1d(snap.dead, np.asarray(replaced, np.int64)) if replaced else snap.dead
            m, n = len(ids), self._n
            if n + m > self._buf.shape[0]:
                self._grow(n + m)
            self._buf[n:n + m] = x
            self._bias[n:n + m] = l2_bias(x)
            self._id_buf[n:n + m] = ids
            self._pos.update(zip(ids, range(n, n + m)))
            self._n = n + m
            max_norm = max(snap.max_norm, float(np.sqrt(-2.0 * self._bias[n:n + m].min())))
            self._publish(dead, max_norm)

    def remove(self, ids: Sequence[Hashable]) -> int:
        """Remove ids (unknown ids are ignored: removal is idempotent). Returns how many were removed."""
        with self._write:
            gone = [self._pos.pop(i) for i in ids if i in self._pos]
            if gone:
                self._publish(np.union1d(self._snap.dead, np.asarray(gone, np.int64)), self._snap.max_norm)
            return len(gone)

    def search(self, queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k: ``(scores, ids)`` of shape (Q, min(k, len(self))).

        Scores are L2 distances ascending (metric "l2") or inner products descending ("ip"),
        computed in float64; ties are ordered by id.
        """
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise MatcherInputError("k must be a positive integer")
        q = as_descriptors(queries, self.dim, "queries")
        return _search_snapshot(self._snap, q, int(k), self.metric)

    def prepare(self) -> None:
        """Build the int8 codes now (coded indexes of CODED_MIN_ROWS rows or more) instead of in
        the first batch search; chunks that rows are added to later are rebuilt on demand."""
        snap = self._snap
        if snap.codes is not None and snap.rows.shape[0] >= CODED_MIN_ROWS:
            for c in range(-(-snap.rows.shape[0] // int8.CHUNK)):
                snap.codes.chunk(snap.rows, c)

    def _grow(self, need: int) -> None:
        cap = max(need, 2 * self._buf.shape[0])
        buf = np.empty((cap, self.dim), dtype=np.float32)
        buf[: self._n] = self._buf[: self._n]
        bias = np.empty(cap, dtype=np.float32)
        bias[: self._n] = self._bias[: self._n]
        id_buf = np.empty(cap, dtype=object)
        id_buf[: self._n] = self._id_buf[: self._n]
        self._buf, self._bias, self._id_buf = buf, bias, id_buf

    def _publish(self, dead: np.ndarray, max_norm: float) -> None:
        n = self._n
        if dead.size > max(1024, n // 4):
            self._compact(dead)
            return
        self._snap = _Snapshot(self._buf[:n], self._bias[:n], self._id_buf[:n], dead, max_norm, self._codes)

    def _compact(self, dead: np.ndarray) -> None:
        """Move live rows into new buffers (old snapshots keep the old ones) and reset positions."""
        keep = np.ones(self._n, dtype=bool)
        keep[dead] = False
        self._buf, self._bias, self._id_buf = (a[: self._n][keep] for a in (self._buf, self._bias, self._id_buf))
        self._n = self._buf.shape[0]
        self._pos = dict(zip(self._id_buf.tolist(), range(self._n)))
        max_norm = float(np.sqrt(-2.0 * self._bias.min())) if self._n else 0.0
        if self._coded:  # positions moved: the old codes describe old rows
            self._codes = int8.Codes(self.metric == "l2")
        self._snap = _Snapshot(self._buf, self._bias, self._id_buf, np.empty(0, np.int64), max_norm, self._codes)
