"""Exact descriptor index whose rows live on a torch device (a GPU in a matcher worker).

Same interface, same results as :class:`matcher.index.FlatIndex`, ties and order included: float32
products only *select* candidates (about k + a few per query); they are re-scored in float64 on the
device in exactly numpy's summation order (``numpy_order_sum``), so the scores equal FlatIndex's
bit for bit, sorted there by (query, score), and only (query, position, score) of the candidates
cross to the host, where ``matcher.index.place_sorted`` orders equal scores by id as FlatIndex does.

Selection. Per block of queries, one float32 product per tile of rows (``TILE_ENTRIES`` scores),
plus the L2 bias ``-|x|^2/2`` (see ``matcher.index``), tombstones forced to ``-inf``, and one
``topk`` of ``k + MARGIN`` per tile. The tiles' top lists hold every query's approximate top k, so
its k-th best ``t`` is exact among the approximate scores; every row whose exact score can reach
the exact k-th best has an approximate score ``>= t - 2E`` (``E``: the error bound below). Those
entries of the tiles' top lists are the candidates, unless a tile's *smallest* kept score is
itself ``>= t - 2E`` (near-ties, duplicates: the tile may hold more such rows than it kept); then
that tile is scored again for those queries and every entry ``>= t - 2E`` is taken (the rare path).

Bound. FlatIndex's float32 bound (``gamma_{D+2}`` with a 4x margin, any summation order, which
covers cuBLAS's kernels and split-K) plus the rounding of the product's *inputs* where torch's
float32 matmul precision lets it round them (TF32: 10-bit mantissa, bf16: 7):
``|q~.x~ - q.x| <= (2u + u^2) |q| |x|``, with ``u`` the truncation unit (so rounding is covered
too). The precision is read at every search, so a process that turns TF32 on stays exact.

Storage. Rows in float32 blocks of at most ``BLOCK_ROWS`` (512 MiB at 128 floats) on the device,
with their bias; a block grows by doubling up to ``BLOCK_ROWS``, then a new one starts, so a long
list never needs a second copy of itself to grow (at most one block is copied at a time) and
holds at most one partly empty block. Ids and positions stay on the host. Concurrency as in
FlatIndex: writers only write rows past every published count or into new tensors (growth,
compaction), and publish an immutable snapshot by one assignment.
"""
from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from matcher.index import (
    MatcherInputError,
    _error_bound,
    as_descriptors,
    check_space,
    checked_rows,
    id_kind,
    l2_bias,
    place_sorted,
)

BLOCK_ROWS = 1 << 20
# Scores per (queries x rows) tile: 1 GiB of float32, wide enough for full-speed products and a
# fraction of an H100's memory.
TILE_ENTRIES = 1 << 28
QUERY_BLOCK = 1024
# Entries each tile's topk keeps beyond k: rows within 2E of the k-th best then fit in the
# tile's top list except for near-tied runs, which the rare path rescans.
MARGIN = 32
_COMPACT_MIN = 1024
_INPUT_UNITS = {"none": 0.0, "ieee": 0.0, "tf32": 2.0 ** -10, "bf16": 2.0 ** -7}


def _input_unit(device: torch.device) -> float:
    """Relative error of the product's inputs under torch's current float32 matmul precision for
    ``device`` (cuBLAS on CUDA, oneDNN on the CPU): 0 in IEEE float32, else TF32's or bf16's
    truncation unit. Unreadable flags (torch refuses to answer when legacy and new flags were
    mixed) count as the coarsest."""
    backend = torch.backends.cuda.matmul if device.type == "cuda" else torch.backends.mkldnn.matmul
    try:
        precision = backend.fp32_precision
        if precision == "none":  # inherits the global setting
            precision = torch.backends.fp32_precision
    except (AttributeError, RuntimeError):
        return _INPUT_UNITS["bf16"]
    return _INPUT_UNITS.get(precision, _INPUT_UNITS["bf16"])


@dataclass(frozen=True, slots=True)
class _Snapshot:
    rows: tuple[torch.Tensor, ...]   # per block, (count, D) float32 views; all blocks but the last are full
    bias: tuple[torch.Tensor, ...]   # per block, (count,) float32 -|x|^2/2
    dead: tuple[np.ndarray, ...]     # per block, sorted int64 offsets of removed rows
    dead_t: tuple[torch.Tensor, ...]  # the same on the device
    ids: np.ndarray                  # (n,) object
    max_norm: float
    block_rows: int

    @property
    def n(self) -> int:
        return self.ids.shape[0]

    @property
    def live(self) -> int:
        return self.n - sum(d.size for d in self.dead)


class DeviceIndex:
    """Exact top-k index over one list's descriptors with rows on ``device`` (e.g. "cuda").

    Interface and results of :class:`matcher.index.FlatIndex` (``add``, ``remove``, ``get``,
    ``search``, ``len``, ``in``, ``prepare``). ``capacity``: rows to reserve at once.
    """

    def __init__(self, dim: int = 128, metric: str = "l2", capacity: int = 1024,
                 device: str | torch.device = "cuda") -> None:
        check_space(dim, metric)
        self.dim = dim
        self.metric = metric
        self.device = torch.device(device)
        self._block_rows = BLOCK_ROWS
        self._write = threading.Lock()
        self._rows: list[torch.Tensor] = []
        self._bias: list[torch.Tensor] = []
        self._id_buf = np.empty(0, dtype=object)
        self._pos: dict[Hashable, int] = {}
        self._n = 0
        self._id_kind: type | None = None
        self._reserve(max(1, capacity))
        self._snap = _Snapshot((), (), (), (), self._id_buf[:0], 0.0, self._block_rows)

    def __len__(self) -> int:
        return self._snap.live

    def __contains__(self, face_id: object) -> bool:
        return face_id in self._pos

    def get(self, face_id: Hashable) -> np.ndarray | None:
        """The stored descriptor of ``face_id`` (a host copy), or None."""
        with self._write:
            pos = self._pos.get(face_id)
            if pos is None:
                return None
            block, offset = divmod(pos, self._block_rows)
            return self._rows[block][offset].cpu().numpy().copy()

    def add(self, ids: Sequence[Hashable], descriptors: object) -> None:
        """Insert or replace descriptors (replacing tombstones the old row)."""
        ids, x = checked_rows(ids, descriptors, self.dim)
        if not ids:
            return
        with self._write:
            self._id_kind = id_kind(self._id_kind, ids)
            snap = self._snap
            replaced = [self._pos[i] for i in ids if i in self._pos]
            bias = l2_bias(x)
            n = self._n
            self._append(torch.from_numpy(x), torch.from_numpy(bias), ids)
            max_norm = max(snap.max_norm, float(np.sqrt(-2.0 * bias.min())))
            dead = _dead_positions(snap)
            if replaced:
                dead = np.union1d(dead, np.asarray(replaced, np.int64))
            self._pos.update(zip(ids, range(n, n + len(ids))))
            self._publish(dead, max_norm)

    def remove(self, ids: Sequence[Hashable]) -> int:
        """Remove ids (unknown ids are ignored: removal is idempotent). Returns how many were removed."""
        with self._write:
            gone = [self._pos.pop(i) for i in ids if i in self._pos]
            if gone:
                snap = self._snap
                self._publish(np.union1d(_dead_positions(snap), np.asarray(gone, np.int64)), snap.max_norm)
            return len(gone)

    def search(self, queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k: ``(scores, ids)`` of shape (Q, min(k, len(self))), as ``FlatIndex.search``."""
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise MatcherInputError("k must be a positive integer")
        q = as_descriptors(queries, self.dim, "queries")
        return _search_snapshot(self._snap, q, int(k), self.metric, self.device)

    def prepare(self) -> None:
        """Nothing to build ahead (FlatIndex builds int8 codes here): rows are searchable once added."""

    # -- storage ---------------------------------------------------------------------------------

    def _reserve(self, need: int) -> None:
        """Room for ``need`` rows in all: the last block doubles (at most ``block_rows``), then new blocks."""
        b = self._block_rows
        while sum(r.shape[0] for r in self._rows) < need:
            start = (len(self._rows) - 1) * b
            if self._rows and self._rows[-1].shape[0] < b:
                old_rows, old_bias = self._rows[-1], self._bias[-1]
                cap = min(b, max(2 * old_rows.shape[0], need - start))
                used = max(0, self._n - start)  # blocks reserved ahead of the rows can be empty
                rows = torch.empty((cap, self.dim), dtype=torch.float32, device=self.device)
                bias = torch.empty(cap, dtype=torch.float32, device=self.device)
                rows[:used] = old_rows[:used]
                bias[:used] = old_bias[:used]
                self._rows[-1], self._bias[-1] = rows, bias  # published snapshots keep the old ones
            else:
                cap = min(b, need - len(self._rows) * b)
                self._rows.append(torch.empty((cap, self.dim), dtype=torch.float32, device=self.device))
                self._bias.append(torch.empty(cap, dtype=torch.float32, device=self.device))

    def _append(self, rows: torch.Tensor, bias: torch.Tensor, ids: Sequence[Hashable]) -> None:
        """Write rows (any device) past every published row, with their bias and ids."""
        n, m, b = self._n, rows.shape[0], self._block_rows
        self._reserve(n + m)
        at = 0
        while at < m:
            block, offset = divmod(n + at, b)
            take = min(m - at, b - offset)
            self._rows[block][offset:offset + take] = rows[at:at + take]
            self._bias[block][offset:offset + take] = bias[at:at + take]
            at += take
        if n + m > self._id_buf.shape[0]:
            grown = np.empty(max(n + m, 2 * self._id_buf.shape[0]), dtype=object)
            grown[:n] = self._id_buf[:n]
            self._id_buf = grown
        self._id_buf[n:n + m] = ids
        self._n = n + m

    def _publish(self, dead: np.ndarray, max_norm: float) -> None:
        n, b = self._n, self._block_rows
        if dead.size > max(_COMPACT_MIN, n // 4):
            self._compact(dead)
            return
        count = -(-n // b)
        old = self._snap
        per_block, on_device = [], []
        for j in range(count):  # a block's offsets unchanged since the last snapshot are not uploaded again
            lo, hi = np.searchsorted(dead, [j * b, (j + 1) * b])
            offsets = dead[lo:hi] - j * b
            same = j < len(old.dead) and np.array_equal(old.dead[j], offsets)
            per_block.append(old.dead[j] if same else offsets)
            on_device.append(old.dead_t[j] if same else torch.from_numpy(offsets).to(self.device))
        self._snap = _Snapshot(tuple(self._rows[j][:min(b, n - j * b)] for j in range(count)),
                               tuple(self._bias[j][:min(b, n - j * b)] for j in range(count)),
                               tuple(per_block), tuple(on_device), self._id_buf[:n], max_norm, b)

    def _compact(self, dead: np.ndarray) -> None:
        """Copy live rows into new blocks, one old block at a time (old snapshots keep the old ones)."""
        old_rows, old_bias, old_ids, n, b = self._rows, self._bias, self._id_buf, self._n, self._block_rows
        self._rows, self._bias, self._id_buf, self._n = [], [], np.empty(0, dtype=object), 0
        keep = np.ones(n, dtype=bool)
        keep[dead] = False
        self._reserve(max(1, int(keep.sum())))
        for j in range(-(-n // b)):
            offsets = np.flatnonzero(keep[j * b:(j + 1) * b])
            if offsets.size:
                at = torch.from_numpy(offsets).to(self.device)
                self._append(old_rows[j].index_select(0, at), old_bias[j].index_select(0, at),
                             old_ids[j * b + offsets].tolist())
        self._pos = dict(zip(self._id_buf[:self._n].tolist(), range(self._n)))
        bias_min = min((float(t[:min(b, self._n - j * b)].min()) for j, t in enumerate(self._bias)
                        if self._n > j * b), default=0.0)
        self._publish(np.empty(0, np.int64), float(np.sqrt(-2.0 * bias_min)))


def _dead_positions(snap: _Snapshot) -> np.ndarray:
    """Sorted positions of every tombstone of the snapshot."""
    parts = [d + j * snap.block_rows for j, d in enumerate(snap.dead)]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _tiles(snap: _Snapshot, width: int) -> list[tuple[int, int, int]]:
    """(block, first offset, last offset + 1) of every row tile of at most ``width`` rows."""
    return [(j, c0, min(c0 + width, rows.shape[0])) for j, rows in enumerate(snap.rows)
            for c0 in range(0, rows.shape[0], width)]


def _scores(snap: _Snapshot, queries: torch.Tensor, tile: tuple[int, int, int], metric: str) -> torch.Tensor:
    """Float32 scores (queries x tile rows), tombstones at -inf."""
    j, c0, c1 = tile
    s = queries @ snap.rows[j][c0:c1].T
    if metric == "l2":
        s += snap.bias[j][c0:c1]
    lo, hi = np.searchsorted(snap.dead[j], [c0, c1])
    if hi > lo:
        s.index_fill_(1, snap.dead_t[j][lo:hi] - c0, -np.inf)
    return s


def _candidates(snap: _Snapshot, qd: torch.Tensor, bounds: np.ndarray, k: int,
                metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(query, position) on the device of every row of a query block whose float32 score is within
    ``2 * bounds`` of its query's k-th best float32 score; see the module docstring."""
    nq, b = qd.shape[0], snap.block_rows
    tiles = _tiles(snap, max(1, TILE_ENTRIES // nq))
    kept = [min(k + MARGIN, c1 - c0) for _, c0, c1 in tiles]
    # uploads wait for the device's queue: both go before the products are queued
    twice_bounds = torch.from_numpy(2.0 * bounds).to(qd.device)
    tile_of = torch.from_numpy(np.repeat(np.arange(len(tiles)), kept)).to(qd.device)
    vals, cols, floors = [], [], []
    for (j, c0, c1), width in zip(tiles, kept):
        s = _scores(snap, qd, (j, c0, c1), metric)
        v, i = torch.topk(s, width, dim=1, sorted=False)
        vals.append(v)
        cols.append(i + (j * b + c0))
        # a tile whose every row made its top list cannot hide more candidates
        floors.append(v.amin(dim=1) if v.shape[1] < c1 - c0 else torch.full_like(v[:, 0], -np.inf))
    v, pos = torch.cat(vals, dim=1), torch.cat(cols, dim=1)
    limit = torch.topk(v, k, dim=1).values[:, -1].double() - twice_bounds
    # float32 scores against the float64 limit compare in float64: no rounding of the limit
    rescan = torch.stack(floors, dim=1) >= limit[:, None]
    qi, at = ((v >= limit[:, None]) & ~rescan[:, tile_of]).nonzero(as_tuple=True)
    found_q, found_pos = [qi], [pos[qi, at]]
    rescan_host = rescan.cpu().numpy()
    for t in np.flatnonzero(rescan_host.any(axis=0)):
        j, c0, c1 = tiles[t]
        which = torch.from_numpy(np.flatnonzero(rescan_host[:, t])).to(qd.device)
        r, c = (_scores(snap, qd[which], tiles[t], metric) >= limit[which].unsqueeze(1)).nonzero(as_tuple=True)
        found_q.append(which[r])
        found_pos.append(c + (j * b + c0))
    return torch.cat(found_q), torch.cat(found_pos)


def _gather(snap: _Snapshot, pos: torch.Tensor) -> torch.Tensor:
    """The rows at positions ``pos`` (device), across blocks without a host round trip."""
    if len(snap.rows) == 1:
        return snap.rows[0].index_select(0, pos)
    b = snap.block_rows
    out = torch.empty((pos.shape[0], snap.rows[0].shape[1]), dtype=torch.float32, device=pos.device)
    block = pos // b
    for j, rows in enumerate(snap.rows):
        part = rows.index_select(0, (pos - j * b).clamp_(0, rows.shape[0] - 1))
        out = torch.where((block == j)[:, None], part, out)
    return out


def numpy_order_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the last axis of a (m, n) tensor in exactly numpy's order (``pairwise_sum``: eight
    interleaved accumulators per block of at most 128, halves above), so that float64 scores
    computed on the device equal ``matcher.index.exact_scores`` bit for bit, on any device."""
    n = t.shape[1]
    if n > 128:
        half = n // 2 - (n // 2) % 8
        return numpy_order_sum(t[:, :half]) + numpy_order_sum(t[:, half:])
    if n < 8:
        out = torch.zeros_like(t[:, 0])
        for i in range(n):
            out = out + t[:, i]
        return out
    r = t[:, :8]
    for i in range(8, n - n % 8, 8):
        r = r + t[:, i:i + 8]
    out = ((r[:, 0] + r[:, 1]) + (r[:, 2] + r[:, 3])) + ((r[:, 4] + r[:, 5]) + (r[:, 6] + r[:, 7]))
    for i in range(n - n % 8, n):
        out = out + t[:, i]
    return out


def _exact_sorted(snap: _Snapshot, qd: torch.Tensor, qi: torch.Tensor, pos: torch.Tensor,
                  metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidates' float64 scores, computed as ``exact_scores`` computes them, and (query, score
    best first) order, on the device; returned to the host as (query, position, score)."""
    x = _gather(snap, pos).double()
    q = qd.index_select(0, qi).double()
    if metric == "l2":
        diff = x - q
        exact = numpy_order_sum(diff * diff)
    else:
        exact = numpy_order_sum(x * q)
    order = torch.sort(exact if metric == "l2" else -exact, stable=True).indices
    order = order[torch.sort(qi[order], stable=True).indices]
    return qi[order].cpu().numpy(), pos[order].cpu().numpy(), exact[order].cpu().numpy()


def _search_snapshot(snap: _Snapshot, queries: np.ndarray, k: int, metric: str,
                     device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    nq, dim = queries.shape
    kk = min(k, snap.live)
    scores = np.empty((nq, kk), dtype=np.float64)
    ids = np.empty((nq, kk), dtype=object)
    if kk == 0 or nq == 0:
        return scores, ids
    norms = np.linalg.norm(queries.astype(np.float64), axis=1)
    bounds = _error_bound(norms, snap.max_norm, dim) + (2.5 * _input_unit(device)) * norms * snap.max_norm
    qd_all = torch.from_numpy(queries).to(device)
    for a in range(0, nq, QUERY_BLOCK):
        z = min(nq, a + QUERY_BLOCK)
        qd = qd_all[a:z]
        qi, pos = _candidates(snap, qd, bounds[a:z], kk, metric)
        qi, pos, exact = _exact_sorted(snap, qd, qi, pos, metric)
        place_sorted(qi, exact, snap.ids[pos], metric, (scores[a:z], ids[a:z]))
    return scores, ids
