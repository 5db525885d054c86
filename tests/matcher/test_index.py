from __future__ import annotations

import time

import numpy as np
import pytest

import matcher.index as mi
import matcher.int8 as m8
from matcher.index import DimensionError, FlatIndex, IdError, MatcherInputError, NonFiniteError
from matcher.similarity import DEFAULT_DISTANCE_THRESHOLD, DEFAULT_SIMILARITY_THRESHOLD, similarity
from tests.matcher.concurrency import churn_errors
from tests.matcher.reference import brute_force


def _random(n: int, seed: int, dim: int = 128) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x * np.float32(1.4 / np.sqrt(dim))  # dlib-like norms around 1.4


@pytest.fixture(params=["default", "tiny_blocks", "int8"])
def blocks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run the batch path with one tile, with many tiles and a small threshold sample, and with
    the int8 screen over many small chunks (its value: whether indexes should be coded)."""
    if request.param == "tiny_blocks":
        monkeypatch.setattr(mi, "_BLOCK_BYTES", 1 << 14)
        monkeypatch.setattr(mi, "_SAMPLE_MIN", 64)
    if request.param == "int8":
        monkeypatch.setattr(mi, "CODED_MIN_ROWS", 0)
        monkeypatch.setattr(m8, "CHUNK", 1024)
        monkeypatch.setattr(m8, "SUB", 64)
        monkeypatch.setattr(mi, "_SAMPLE_MIN", 64)
        screened = []
        screen = m8.screen
        monkeypatch.setattr(m8, "screen", lambda *a: screened.append(1) or screen(*a))
        yield True
        assert screened, "the int8 path was not taken"
        return
    yield False


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("n", [3, 700, 20000])
def test_exact_topk_random(blocks: bool, metric: str, n: int) -> None:
    x = _random(n, n)
    x[n // 2: n // 2 + 3] = x[0]  # exact duplicates: ties must be ordered by id
    ids = [f"face-{i:06d}" for i in range(n)][::-1]
    index = FlatIndex(128, metric, coded=blocks)
    index.add(ids, x)
    removed = set(ids[1::5])
    index.remove(list(removed))
    live = [i for i in range(n) if ids[i] not in removed]
    for nq in (1, mi.SINGLE_QUERY_MAX + 1, 40):
        queries = _random(nq, 7 + nq)
        queries[0] = x[0]
        scores, got = index.search(queries, 10)
        ref_s, ref_i = brute_force(x[live], [ids[i] for i in live], queries, 10, metric)
        assert [list(r) for r in got] == ref_i
        np.testing.assert_allclose(scores, ref_s, rtol=1e-12, atol=1e-12)


def test_exact_topk_real_descriptors(blocks: bool, real_descriptors: tuple[np.ndarray, list[str]]) -> None:
    x, who = real_descriptors
    norms = np.linalg.norm(x, axis=1)
    assert 0.5 < norms.min() and norms.max() < 2.0  # real dlib output, not unit-norm
    ids = list(range(len(x)))
    index = FlatIndex(128, "l2", coded=blocks)
    index.add(ids, x)
    for k in (1, 5, len(x)):
        scores, got = index.search(x, k)
        ref_s, ref_i = brute_force(x, ids, x, k, "l2")
        assert [list(r) for r in got] == ref_i
        np.testing.assert_allclose(scores, ref_s, rtol=1e-12, atol=1e-12)
    # Descriptors of one person cluster: the nearest other face is mostly the same person, and
    # the similarity of matcher distances keeps the ranking and the model's decision threshold.
    dist, nn = index.search(x, 2)
    same = np.array([who[int(row[1])] == who[i] for i, row in enumerate(nn)])
    assert same.mean() > 0.8
    sim = similarity(index.search(x, len(x))[0])
    assert (np.diff(sim, axis=1) <= 0).all() and (0 <= sim).all() and (sim <= 1).all()
    assert ((similarity(dist[:, 1]) >= DEFAULT_SIMILARITY_THRESHOLD) == (dist[:, 1] < DEFAULT_DISTANCE_THRESHOLD)).all()


def test_upsert_get_len_and_compaction(blocks: bool) -> None:
    x = _random(5000, 1)
    ids = list(range(5000))
    index = FlatIndex(coded=blocks)
    index.add(ids, x)
    index.prepare()
    index.add([3], x[10])  # replace
    np.testing.assert_array_equal(index.get(3), x[10])
    assert len(index) == 5000 and index.get(99999) is None
    removed = ids[:3000]
    assert index.remove(removed + [123456]) == 3000  # crosses the compaction threshold
    assert index._snap.dead.size == 0 and len(index) == 2000
    assert index.remove(removed) == 0
    queries = _random(20, 2)
    _, got = index.search(queries, 7)
    _, ref = brute_force(x[3000:], ids[3000:], queries, 7, "l2")
    assert [list(r) for r in got] == ref


def test_fewer_live_than_k() -> None:
    index = FlatIndex(4)
    index.add(["a", "b", "c"], np.eye(3, 4))
    index.remove(["b"])
    scores, ids = index.search(np.ones((2, 4)), 10)
    assert scores.shape == (2, 2) and set(ids[0]) == {"a", "c"}
    index.remove(["a", "c"])
    assert index.search(np.ones(4), 3)[1].shape == (1, 0)


def test_bad_input_raises_clear_errors() -> None:
    index = FlatIndex(128)
    with pytest.raises(DimensionError):
        index.add([1], np.zeros(127))
    with pytest.raises(DimensionError):
        index.add([1, 2], np.zeros((3, 128)))
    bad = np.zeros(128)
    bad[5] = np.nan
    with pytest.raises(NonFiniteError):
        index.add([1], bad)
    bad[5] = np.inf
    with pytest.raises(NonFiniteError):
        index.search(bad, 1)
    with pytest.raises(DimensionError):
        index.search(np.zeros((2, 64)), 1)
    with pytest.raises(IdError):
        index.add([1, 1], np.zeros((2, 128)))
    with pytest.raises(IdError):
        index.add([1, "x"], np.zeros((2, 128)))
    index.add([1], np.zeros(128))
    with pytest.raises(IdError):
        index.add(["y"], np.zeros(128))
    with pytest.raises(MatcherInputError):
        index.search(np.zeros(128), 0)
    with pytest.raises(MatcherInputError):
        index.add([2], [["not", "numbers"] * 64])
    assert issubclass(MatcherInputError, ValueError)
    assert len(index) == 1  # failed calls changed nothing


@pytest.mark.parametrize("coded", [False, True])
def test_concurrent_remove_never_visible_after_return(coded: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer keeps adding faces right at the query and removing them; searches started after a
    remove() returned must never see those ids, and never see a half-applied change (through the
    single-query path, the float32 batch path, and the int8 screen whose codes the writer's
    additions keep invalidating)."""
    if coded:
        monkeypatch.setattr(m8, "CHUNK", 4096)
    base = _random(30000, 3)
    index = FlatIndex(coded=coded)
    index.add([f"base-{i}" for i in range(len(base))], base)
    monkeypatch.setattr(mi, "CODED_MIN_ROWS", 0)
    query = _random(mi.SINGLE_QUERY_MAX + 1, 4)
    t0 = time.monotonic()
    errors = churn_errors(index, query, 300, (1, mi.SINGLE_QUERY_MAX + 1))
    assert not errors, errors[:3]
    assert time.monotonic() - t0 < 120
    _, ids = index.search(query, 12)
    assert not any(i.startswith("hot-") for row in ids for i in row)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_int8_screen_never_drops_a_row_that_reaches_the_limit(metric: str) -> None:
    """The screen's promise, on data built to stress the quantization: rows and queries with one
    dominant element (coarse codes for everything else), mixed magnitudes within a chunk, zero
    rows, near-duplicates. Every row whose float64 score reaches the limit must come back."""
    rng = np.random.default_rng(11)
    n, dim = 3000, 128
    x = rng.standard_normal((n, dim)) * rng.choice([0.01, 0.1, 1.0, 5.0], size=(n, 1))
    x[::7, rng.integers(dim)] += 40.0
    x[::13] = 0.0
    x[1::17] = x[0] + 1e-6
    x = x.astype(np.float32)
    queries = (rng.standard_normal((24, dim)) * rng.choice([0.01, 1.0, 30.0], size=(24, 1))).astype(np.float32)
    queries[::5, 3] = 60.0
    q64, x64 = queries.astype(np.float64), x.astype(np.float64)
    true = q64 @ x64.T - (0.5 * (x64 * x64).sum(1) if metric == "l2" else 0.0)
    coded = m8.code_queries(queries)
    for start in range(0, n, 1024):
        chunk = m8.code_rows(x[start:start + 1024], start, metric == "l2")
        span = true[:, start:start + 1024]
        for quantile in (0.5, 0.9, 0.99, 1.0):
            limit = np.quantile(span, quantile, axis=1)
            qi, pos = m8.screen(m8.session(), coded, chunk, limit)
            got = set(zip(qi.tolist(), pos.tolist()))
            need = {(i, start + j) for i, j in zip(*np.nonzero(span >= limit[:, None]))}
            assert need <= got
            assert len(got) < span.size  # and it does screen: not everything comes back
