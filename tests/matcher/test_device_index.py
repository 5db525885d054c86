"""DeviceIndex (rows on a torch device) against FlatIndex (numpy): the same ids and bit-identical
scores, on torch CPU tensors; tests/matcher/test_device_index_cuda.py runs the comparison on CUDA."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import matcher.device_index as md
import matcher.index as mi
from matcher.cache import ListCache, resolve_device
from matcher.changes import FaceAttached, FaceDeleted, FaceDetached
from matcher.device_index import DeviceIndex
from matcher.index import DimensionError, FlatIndex, IdError, MatcherInputError, NonFiniteError
from tests.matcher.concurrency import churn_errors
from tests.matcher.reference import brute_force

DEVICE = "cpu"


def _random(n: int, seed: int, dim: int = 128) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x * np.float32(1.4 / np.sqrt(dim))


@pytest.fixture(params=["one_tile", "many_tiles"])
def layout(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Default sizes (one block, one tile), or small blocks and tiles with no topk margin, so a
    list spans several blocks, a block several tiles, and near-ties take the rescan path."""
    if request.param == "many_tiles":
        monkeypatch.setattr(md, "BLOCK_ROWS", 512)
        monkeypatch.setattr(md, "TILE_ENTRIES", 4096)
        monkeypatch.setattr(md, "MARGIN", 0)
        monkeypatch.setattr(md, "QUERY_BLOCK", 16)
    return request.param


def both(dim: int = 128, metric: str = "l2", device: str = DEVICE) -> tuple[FlatIndex, DeviceIndex]:
    return FlatIndex(dim, metric), DeviceIndex(dim, metric, device=device)


def assert_same(flat: FlatIndex, dev: DeviceIndex, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Identical ids and scores (==, not allclose) from the two back-ends."""
    ref_s, ref_i = flat.search(queries, k)
    got_s, got_i = dev.search(queries, k)
    assert got_s.shape == ref_s.shape and got_i.shape == ref_i.shape
    assert got_i.tolist() == ref_i.tolist()
    np.testing.assert_array_equal(got_s, ref_s)
    return got_s, got_i


def check_random_and_adversarial(device: str) -> None:
    """The comparison the CUDA module repeats on the GPU: duplicates, near-ties one float32 ulp
    apart, removals, k larger than the list, l2 and ip, single and batched queries."""
    for metric in ("l2", "ip"):
        for n in (3, 700, 3000):
            x = _random(n, n)
            x[n // 2: n // 2 + 3] = x[0]  # exact duplicates: ties ordered by id
            if n > 10:
                x[5:9] = np.nextafter(x[1], np.float32(np.inf))  # within the bound of row 1, not equal
                x[9] = x[1]
            ids = [f"face-{i:06d}" for i in range(n)][::-1]
            flat, dev = both(128, metric, device)
            for index in (flat, dev):
                index.add(ids, x)
                index.remove(ids[1::5])
            for nq in (1, 5, 40):
                queries = _random(nq, 7 + nq)
                queries[0] = x[0]
                queries[-1] = x[1]
                for k in (1, 10, n + 5):
                    assert_same(flat, dev, queries, k)
            live = [i for i in range(n) if i % 5 != 1]
            _, got = dev.search(x[:4], 10)
            _, ref = brute_force(x[live], [ids[i] for i in live], x[:4], 10, metric)
            assert got.tolist() == ref


def test_same_as_flat_index_random_and_adversarial(layout: str) -> None:
    check_random_and_adversarial(DEVICE)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_all_rows_tied(layout: str, metric: str) -> None:
    """Every row equal: every row is a candidate of every query (the rescan path with small
    tiles), and the order is by id alone."""
    x = np.repeat(_random(1, 3), 2000, axis=0)
    ids = list(range(2000))[::-1]
    flat, dev = both(128, metric)
    for index in (flat, dev):
        index.add(ids, x)
        index.remove(list(range(0, 2000, 7)))
    scores, got = assert_same(flat, dev, _random(3, 4), 25)
    assert got[0].tolist() == [i for i in range(2000) if i % 7][:25]


def test_real_descriptors(layout: str, real_descriptors: tuple[np.ndarray, list[str]]) -> None:
    x, _ = real_descriptors
    flat, dev = both()
    for index in (flat, dev):
        index.add(list(range(len(x))), x)
    for k in (1, 5, len(x)):
        assert_same(flat, dev, x, k)


def test_empty_and_fewer_live_than_k(layout: str) -> None:
    flat, dev = both(4)
    assert dev.search(np.ones(4), 3)[1].shape == (1, 0) and len(dev) == 0
    for index in (flat, dev):
        index.add(["a", "b", "c"], np.eye(3, 4))
        index.remove(["b"])
    scores, ids = assert_same(flat, dev, np.ones((2, 4)), 10)
    assert scores.shape == (2, 2) and set(ids[0]) == {"a", "c"}
    dev.remove(["a", "c"])
    assert dev.search(np.ones(4), 3)[1].shape == (1, 0)


def test_growth_upsert_get_and_compaction(layout: str) -> None:
    """Rows added in chunks (blocks grow and new ones start), replaced, removed past the compaction
    threshold; results stay identical to FlatIndex's throughout."""
    x = _random(5000, 1)
    flat, dev = both()
    for a in range(0, 5000, 700):
        for index in (flat, dev):
            index.add(list(range(a, min(a + 700, 5000))), x[a:a + 700])
    assert len(dev._rows) == (1 if layout == "one_tile" else 10)
    queries = _random(20, 2)
    assert_same(flat, dev, queries, 7)
    for index in (flat, dev):
        index.add([3], x[10])
    np.testing.assert_array_equal(dev.get(3), x[10])
    assert dev.get(99999) is None and 3 in dev and len(dev) == 5000
    assert_same(flat, dev, x[10:12], 7)
    for index in (flat, dev):
        assert index.remove(list(range(3000)) + [123456]) == 3000  # crosses the compaction threshold
    assert dev._snap.n == 2000 and len(dev) == 2000 and dev.remove(list(range(3000))) == 0
    np.testing.assert_array_equal(dev.get(4999), x[4999])
    assert_same(flat, dev, queries, 7)
    for index in (flat, dev):
        index.add(list(range(100)), x[:100])
    assert_same(flat, dev, np.vstack([queries, x[:3]]), 12)


def test_large_capacity_reserved_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Capacity reserved over several blocks, then filled past it: empty reserved blocks grow."""
    monkeypatch.setattr(md, "BLOCK_ROWS", 256)
    x = _random(1500, 5)
    flat, dev = FlatIndex(), DeviceIndex(capacity=600, device=DEVICE)
    assert [r.shape[0] for r in dev._rows] == [256, 256, 88]
    for index in (flat, dev):
        index.add(list(range(1500)), x)
    assert [r.shape[0] for r in dev._rows] == [256] * 5 + [220]
    assert_same(flat, dev, _random(9, 6), 15)


@pytest.mark.parametrize("dim", [3, 8, 64, 100, 128, 129, 300, 512])
def test_numpy_order_sum_equals_numpy_bit_for_bit(dim: int) -> None:
    """Device float64 scores equal numpy's only if the sum runs in numpy's order; magnitudes
    spread over 16 orders make any other order differ somewhere."""
    rng = np.random.default_rng(dim)
    t = rng.standard_normal((20000, dim)) * rng.choice([1e-8, 1.0, 1e8], size=(20000, dim))
    got = md.numpy_order_sum(torch.from_numpy(t)).numpy()
    np.testing.assert_array_equal(got, t.sum(axis=1))
    if dim >= 64:
        assert (torch.from_numpy(t).sum(dim=1).numpy() != t.sum(axis=1)).any()  # not vacuous


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_tf32_and_bf16_settings_widen_the_bound(device: str) -> None:
    """Where torch may round a float32 product's inputs, the candidate bound includes it (the
    flags are read without a GPU, so this runs everywhere)."""
    backend = torch.backends.cuda.matmul if device == "cuda" else torch.backends.mkldnn.matmul
    before = backend.fp32_precision
    dev = torch.device(device)
    try:
        assert md._input_unit(dev) == 0.0
        backend.fp32_precision = "tf32"
        assert md._input_unit(dev) == 2.0 ** -10
        backend.fp32_precision = "bf16" if device == "cpu" else "tf32"
        assert md._input_unit(dev) == (2.0 ** -7 if device == "cpu" else 2.0 ** -10)
    finally:
        backend.fp32_precision = before
    assert md._input_unit(dev) == 0.0


def test_bound_holds_for_rounded_inputs() -> None:
    """The bound's input term covers TF32 truncation: products of inputs cut to 10 mantissa bits
    stay within (2u + u^2) |q| |x| of the exact ones, on dominant-element and mixed-scale data."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 128)) * rng.choice([1e-3, 1.0, 30.0], size=(500, 1))
    x[:50, 0] = 100.0
    q = rng.standard_normal((20, 128))

    def truncated(a: np.ndarray) -> np.ndarray:
        bits = a.astype(np.float32).view(np.uint32) & np.uint32(0xFFFFE000)  # keep 10 mantissa bits
        return bits.view(np.float32).astype(np.float64)

    u = 2.0 ** -10
    err = np.abs(truncated(q) @ truncated(x).T - q.astype(np.float32).astype(np.float64) @
                 x.astype(np.float32).astype(np.float64).T)
    limit = (2 * u + u * u) * np.linalg.norm(q, axis=1)[:, None] * np.linalg.norm(x, axis=1)[None, :]
    assert (err <= limit).all() and (err > 0.1 * limit).any()  # holds, and is not vacuous


def test_bad_input_raises_clear_errors() -> None:
    index = DeviceIndex(128, device=DEVICE)
    with pytest.raises(DimensionError):
        index.add([1], np.zeros(127))
    with pytest.raises(DimensionError):
        index.add([1, 2], np.zeros((3, 128)))
    bad = np.zeros(128)
    bad[5] = np.nan
    with pytest.raises(NonFiniteError):
        index.add([1], bad)
    with pytest.raises(IdError):
        index.add([1, 1], np.zeros((2, 128)))
    index.add([1], np.zeros(128))
    with pytest.raises(IdError):
        index.add(["y"], np.zeros(128))
    with pytest.raises(MatcherInputError):
        index.search(np.zeros(128), 0)
    with pytest.raises(MatcherInputError):
        DeviceIndex(128, "cosine", device=DEVICE)
    assert len(index) == 1


def test_concurrent_remove_never_visible_after_return() -> None:
    """Searches that start after remove() returned never see the removed ids, nor half a batch."""
    base = _random(3000, 3)
    index = DeviceIndex(device=DEVICE)
    index.add([f"base-{i}" for i in range(len(base))], base)
    query = _random(6, 4)
    errors = churn_errors(index, query, 150, (1, 6))
    assert not errors, errors[:3]
    _, ids = index.search(query, 12)
    assert not any(i.startswith("hot-") for row in ids for i in row)


def test_list_cache_on_a_device_answers_like_the_numpy_cache() -> None:
    x = _random(400, 8)
    caches = [ListCache(128), ListCache(128, device=DEVICE)]
    chunks = [("a", list(range(200)), x[:200]), ("b", list(range(150, 400)), x[150:])]
    for cache in caches:
        cache.load(chunks, seq=1)
        cache.apply(FaceDetached(seq=2, face_id=3, list_id="a"))
        cache.apply(FaceDeleted(seq=3, face_id=160))
        cache.apply(FaceAttached(seq=4, face_id=1000, list_id="b", descriptor=x[5]))
    assert isinstance(caches[1]._indexes["a"], DeviceIndex) and isinstance(caches[0]._indexes["a"], FlatIndex)
    queries = x[:7]
    for lists in (["a"], ["b"], ["a", "b"]):
        (s0, i0), (s1, i1) = (cache.search(lists, queries, 9) for cache in caches)
        assert i0.tolist() == i1.tolist()
        np.testing.assert_array_equal(s0, s1)


def test_resolve_device() -> None:
    assert resolve_device("cpu") is None
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else None)
    with pytest.raises(ValueError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            resolve_device("cuda")


def test_auto_does_not_import_torch_without_a_gpu_driver() -> None:
    code = ("import sys; from matcher.cache import ListCache, resolve_device; "
            "c = ListCache(128, device=resolve_device('auto')); c.load([('a', [1], [[0.0] * 128])]); "
            "c.search(['a'], [[0.0] * 128], 1); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(mi.__file__).rsplit("/matcher/", 1)[0]).stdout.strip()
    assert out == str(os.path.exists("/proc/driver/nvidia/version"))
