"""Integer screening for the batch scan: int8 products shortlist, float64 decides.

Why. A 1,000-query batch against a large list is one big (queries x rows x 128) product; in
float32 it is compute-bound, and an 8-bit product runs about twice as fast on AVX2 CPUs without
changing what is returned: the 8-bit scores only choose candidates, with a proven error bound,
and every candidate is re-scored in float64 as on the float32 path (``matcher.index``). The product
runs in onnxruntime's MLAS ``MatMulInteger`` kernel (the only int8 GEMM available from PyPI that
was faster than OpenBLAS's sgemm here; figures in docs/matcher.md). Without onnxruntime the index
uses the float32 scan.

Codes. Rows are stored a second time as int8 codes, in column chunks of ``CHUNK`` rows (each the
(128, CHUNK) right-hand side of one product) with one scale per chunk: ``x~ = scale * code``,
|code| <= 127. Queries are coded per query as ``q~ = s_q * c`` with |c| <= 63, passed as uint8 with
zero point 64: AVX2's byte multiply-add saturates at 2 * 127 * 127 only when the unsigned side
stays below 128, so the kernel's integer sums are exact.

Bound. For true score ``s = q.x + b(x)`` (b = -|x|^2/2 for L2, 0 for inner product) and screen
score ``s~ = s_q * scale * (c . code)`` (an exact integer product, scaled in float64):
``|q.x - q~.x~| <= |q - q~| |x| + |q~| |x - x~|``. Per sub-block of ``SUB`` rows the chunk keeps
max |x|, max |x - x~| and max b(x), so ``s >= T`` implies ``s~ >= T - max b - E`` with
``E = |q - q~| max|x| + |q~| max|x - x~|``: comparing the integer products against that limit
(rounded down, one unit of slack) never drops a row whose true score reaches ``T``. ``T`` is a
lower bound of each query's k-th best true score, tightened as the scan finds candidates.

Codes are built per chunk by ``FlatIndex.prepare`` (the list cache calls it at load) or on the
first batch search after rows were added to the chunk, and only ever describe rows that a
snapshot already published (rows are never written in place), so a
search on any snapshot can use them; a chunk with fewer rows than the snapshot is rebuilt.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

# Rows per product: a (1,024 x 4,096) int32 result (16 MB) stays in cache for the passes after
# it (16,384-row chunks measured 30% slower). At most 65,536: the column order is uint16.
CHUNK = 4096
SUB = 256       # rows per bound block: narrow enough that b(x) varies little within one
_Q_LEVELS = 63
_X_LEVELS = 127


def _session() -> object | None:
    """A MatMulInteger(uint8 A, int8 B) -> int32 session, or None without onnxruntime."""
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    zero_point = numpy_helper.from_array(np.array(64, np.uint8), "a_zero_point")
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b", "a_zero_point"], ["y"])], "screen",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [None, None]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [None, None])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [None, None])], initializer=[zero_point])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    options = ort.SessionOptions()
    # One thread per product: the search runs one product per core from its own threads, each
    # followed by its numpy passes (which a multi-threaded product would leave single-threaded).
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


_SESSION_LOCK = threading.Lock()
_SESSION: list[object | None] = []


def session() -> object | None:
    """The process-wide screening session (created once, on first use)."""
    if not _SESSION:
        with _SESSION_LOCK:
            if not _SESSION:
                _SESSION.append(_session())
    return _SESSION[0]


@dataclass(frozen=True, slots=True)
class Chunk:
    start: int            # position of the chunk's first row
    count: int            # rows coded (positions start .. start + count - 1)
    order: np.ndarray     # (width,) uint16: code column j holds row start + order[j]
    codes: np.ndarray     # (D, width) int8, width = count rounded up to SUB (zero columns after)
    scale: float
    bias_max: np.ndarray  # (width / SUB,) float64, max b(x) per sub-block
    norm_max: np.ndarray  # (width / SUB,) float64, max |x|
    err_max: np.ndarray   # (width / SUB,) float64, max |x - x~|


def code_rows(rows: np.ndarray, start: int, l2: bool) -> Chunk:
    """Quantize up to CHUNK float32 rows (all from one chunk) into a Chunk.

    For L2 the columns are sorted by b(x), so each sub-block's max b(x) is close to every b(x) in
    it: in input order one row of a large norm would loosen the limit of its whole sub-block
    (dlib descriptors' norms spread over about 1.3..1.5, b over about 0.85..1.1)."""
    count, dim = rows.shape
    width = -(-count // SUB) * SUB
    x = rows.astype(np.float64)
    sq_norm = np.einsum("ij,ij->i", x, x)
    order = np.argsort(sq_norm, kind="stable") if l2 else np.arange(count)
    x = x[order]
    peak = float(np.abs(x).max()) if count else 0.0
    scale = peak / _X_LEVELS if peak > 0 else 1.0
    codes = np.zeros((width, dim), dtype=np.int8)
    codes[:count] = np.clip(np.rint(x / scale), -_X_LEVELS, _X_LEVELS)
    diff = x - codes[:count] * scale
    # Padding columns have zero codes, so they add nothing to the products; they are kept out of
    # the maxima (a missing row must not loosen the bound) with -inf for b and 0 for the norms.
    err, norm, bias = np.zeros(width), np.zeros(width), np.full(width, -np.inf)
    err[:count] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    norm[:count] = np.sqrt(sq_norm[order])
    bias[:count] = -0.5 * sq_norm[order] if l2 else 0.0
    blocks = (width // SUB, SUB)
    slack = 1.0 + 1e-12  # float64 rounding of the norms above
    columns = np.concatenate([order, np.arange(count, width)]).astype(np.uint16)  # padding: past every row
    return Chunk(start, count, columns, np.ascontiguousarray(codes.T), scale,
                 bias.reshape(blocks).max(1), norm.reshape(blocks).max(1) * slack, err.reshape(blocks).max(1) * slack)


class Codes:
    """The int8 chunks of one row buffer, built on demand and shared by its snapshots."""

    def __init__(self, l2: bool) -> None:
        self.l2 = l2
        self._chunks: dict[int, Chunk] = {}
        self._lock = threading.Lock()

    def chunk(self, rows: np.ndarray, index: int) -> Chunk:
        """Chunk ``index`` covering every row of ``rows`` (a snapshot's rows) in its range."""
        start = index * CHUNK
        count = min(CHUNK, rows.shape[0] - start)
        found = self._chunks.get(index)
        if found is not None and found.count >= count:
            return found
        with self._lock:
            found = self._chunks.get(index)
            if found is None or found.count < count:
                found = self._chunks[index] = code_rows(rows[start:start + count], start, self.l2)
            return found


@dataclass(frozen=True, slots=True)
class CodedQueries:
    a: np.ndarray         # (nq, D) uint8 codes + 64
    scale: np.ndarray     # (nq,) float64
    err: np.ndarray       # (nq,) |q - q~|
    norm: np.ndarray      # (nq,) |q~|


def code_queries(queries: np.ndarray) -> CodedQueries:
    q = queries.astype(np.float64)
    peak = np.abs(q).max(axis=1)
    scale = np.where(peak > 0, peak / _Q_LEVELS, 1.0)
    codes = np.clip(np.rint(q / scale[:, None]), -_Q_LEVELS, _Q_LEVELS)
    coded = codes * scale[:, None]
    slack = 1.0 + 1e-12
    return CodedQueries((codes + 64).astype(np.uint8), scale, np.linalg.norm(q - coded, axis=1) * slack,
                        np.linalg.norm(coded, axis=1) * slack)


def screen(sess: object, coded: CodedQueries, chunk: Chunk, limit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query index, row position) pairs of ``chunk`` whose true score may reach ``limit`` (nq,),
    a superset of those that do (see the module docstring)."""
    y = sess.run(None, {"a": coded.a, "b": chunk.codes})[0]
    nq, width = y.shape
    nsub = width // SUB
    unit = coded.scale[:, None] * chunk.scale
    bound = coded.err[:, None] * chunk.norm_max[None, :] + coded.norm[:, None] * chunk.err_max[None, :]
    need = (limit[:, None] - chunk.bias_max[None, :] - bound) / unit
    # One unit below the floor covers the float64 rounding of ``need``; -inf (no limit yet, or
    # an empty sub-block) passes everything, which the clip keeps representable.
    theta = np.clip(np.floor(need) - 1, -(2 ** 31) + 1, 2 ** 31 - 1).astype(np.int32)
    blocks = y.reshape(nq, nsub, SUB)
    qi, sb = np.nonzero(blocks.max(axis=2) >= theta)
    if qi.size == 0:
        return qi, qi
    hit = np.flatnonzero(blocks[qi, sb] >= theta[qi, sb][:, None])  # 1-D: 4x faster than 2-D nonzero
    p = hit // SUB
    return qi[p], chunk.start + chunk.order[sb[p] * SUB + hit % SUB].astype(np.int64)
