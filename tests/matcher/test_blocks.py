"""Blocked pairs and components against a brute force over the same random descriptors."""
from __future__ import annotations

import numpy as np
import pytest

from matcher import blocks
from matcher.similarity import DEFAULT_DISTANCE_THRESHOLDS, DESCRIPTOR_VERSION, similarity
from tests.matcher.reference import brute_force


def _clustered(rng: np.random.Generator, n: int, centres: int) -> np.ndarray:
    """Descriptors around a few centres, so some pairs fall on each side of a middling threshold."""
    middle = rng.standard_normal((centres, 128)) * 0.06
    return (middle[rng.integers(0, centres, n)] + rng.standard_normal((n, 128)) * 0.03).astype(np.float32)


def _brute_similarity(x: np.ndarray, y: np.ndarray, version: int = DESCRIPTOR_VERSION) -> np.ndarray:
    diff = x.astype(np.float64)[:, None, :] - y.astype(np.float64)[None, :, :]
    return similarity(np.sqrt((diff * diff).sum(axis=2)), version)


def _brute_components(x: np.ndarray, threshold: float, version: int) -> set[frozenset[int]]:
    linked = _brute_similarity(x, x, version) > threshold
    seen: set[int] = set()
    out = set()
    for start in range(len(x)):
        if start in seen:
            continue
        group, todo = {start}, [start]
        while todo:
            for j in np.nonzero(linked[todo.pop()])[0].tolist():
                if j not in group:
                    group.add(j)
                    todo.append(j)
        seen |= group
        out.add(frozenset(group))
    return out


@pytest.mark.parametrize("version", sorted(DEFAULT_DISTANCE_THRESHOLDS))
@pytest.mark.parametrize("tile", [7, 1 << 22])
def test_pairs_equal_brute_force(monkeypatch: pytest.MonkeyPatch, tile: int, version: int) -> None:
    monkeypatch.setattr(blocks, "TILE_ENTRIES", tile)  # tiny tiles: many tiles, ragged edges
    rng = np.random.default_rng(1)
    x, y = _clustered(rng, 150, 6), _clustered(rng, 90, 6)
    sims = _brute_similarity(x, y, version)
    threshold = float(np.median(sims))
    found = {(i, j) for a, b in blocks.linked_pairs(x, y, threshold, version=version)
             for i, j in zip(a.tolist(), b.tolist())}
    assert found == set(zip(*np.nonzero(sims > threshold)))
    assert 0 < len(found) < sims.size
    within = {(i, j) for a, b in blocks.linked_pairs(x, x, threshold, same=True, version=version)
              for i, j in zip(a.tolist(), b.tolist())}
    expected = {(i, j) for i, j in zip(*np.nonzero(_brute_similarity(x, x, version) > threshold)) if i < j}
    assert within == expected


def test_bound_is_the_versions_threshold_at_one_half() -> None:
    for version, threshold in DEFAULT_DISTANCE_THRESHOLDS.items():
        assert blocks.distance_bound(0.5, version) == threshold
    assert blocks.distance_bound(0.5) == DEFAULT_DISTANCE_THRESHOLDS[DESCRIPTOR_VERSION]


def test_threshold_edges() -> None:
    x = np.random.default_rng(2).standard_normal((5, 128)).astype(np.float32)
    assert sum(len(i) for i, _ in blocks.linked_pairs(x, x, 0.0, same=True)) == 10
    assert list(blocks.linked_pairs(x, x, 1.0, same=True)) == []
    assert blocks.components(x, 1.0) == [[0], [1], [2], [3], [4]]
    assert blocks.components(x, 0.0) == [[0, 1, 2, 3, 4]]


@pytest.mark.parametrize("version", sorted(DEFAULT_DISTANCE_THRESHOLDS))
@pytest.mark.parametrize("tile", [5, 1 << 22])
def test_components_equal_brute_force(monkeypatch: pytest.MonkeyPatch, tile: int, version: int) -> None:
    monkeypatch.setattr(blocks, "TILE_ENTRIES", tile)
    rng = np.random.default_rng(3)
    x = _clustered(rng, 200, 12)
    threshold = float(np.quantile(_brute_similarity(x, x, version), 0.9))
    got = blocks.components(x, threshold, version)
    assert {frozenset(c) for c in got} == _brute_components(x, threshold, version)
    assert 1 < len(got) < len(x)
    assert sorted(i for c in got for i in c) == list(range(len(x)))


def test_union_find_links_rebuild_the_sets() -> None:
    sets = blocks.UnionFind("abcdefg")
    for a, b in [("a", "c"), ("c", "e"), ("b", "d"), ("e", "a")]:
        sets.union(a, b)
    assert sorted(map(sorted, sets.components())) == [["a", "c", "e"], ["b", "d"], ["f"], ["g"]]
    rebuilt = blocks.UnionFind("fg")
    for a, b in sets.links():
        rebuilt.union(a, b)
    assert sorted(map(sorted, rebuilt.components())) == [["a", "c", "e"], ["b", "d"], ["f"], ["g"]]
    assert len(sets.links()) == 3


def test_spanning_links_keep_the_components() -> None:
    rng = np.random.default_rng(4)
    n = 300
    i, j = rng.integers(0, n, 400), rng.integers(0, n, 400)
    chain = np.arange(0, n - 2, 2)  # a long path 0-2-4-...: the slowest shape for hooking
    i, j = np.r_[i, chain], np.r_[j, chain + 2]
    nodes, roots = blocks.spanning_links(i, j, n)
    assert len(nodes) < n and (roots < nodes).all()
    direct, reduced = blocks.UnionFind(range(n)), blocks.UnionFind(range(n))
    for a, b in zip(i.tolist(), j.tolist()):
        direct.union(a, b)
    for a, b in zip(nodes.tolist(), roots.tolist()):
        reduced.union(a, b)
    assert sorted(map(sorted, direct.components())) == sorted(map(sorted, reduced.components()))


@pytest.mark.parametrize("query_tile,row_tile", [(7, 13), (512, 4096)])
def test_nearest_rows_equal_brute_force(monkeypatch: pytest.MonkeyPatch, query_tile: int, row_tile: int) -> None:
    """Rows fed in uneven blocks (one smaller than k, one empty), tiles with ragged edges, exact
    duplicate rows (ties go by row number) and near copies: the brute force's rows and distances."""
    monkeypatch.setattr(blocks.NearestRows, "QUERY_TILE", query_tile)
    monkeypatch.setattr(blocks.NearestRows, "ROW_TILE", row_tile)
    rng = np.random.default_rng(5)
    x = _clustered(rng, 400, 8)
    x[[50, 120, 399]] = x[10]  # ties
    queries = np.vstack([x[10:11], x[::9], _clustered(rng, 30, 8)])
    k = 6
    nearest = blocks.NearestRows(queries, k)
    for start, stop in [(0, 3), (3, 3), (3, 200), (200, 400)]:
        nearest.add(x[start:stop])
    distances, found = nearest.result()
    expected_d, expected_rows = brute_force(x, list(range(len(x))), queries, k, "l2")
    assert found.tolist() == expected_rows
    assert np.array_equal(distances, expected_d)
    assert found[0].tolist()[:4] == [10, 50, 120, 399] and distances[0, :4].tolist() == [0.0] * 4  # in row order


def test_nearest_rows_fewer_rows_than_k() -> None:
    rng = np.random.default_rng(6)
    x, queries = rng.standard_normal((3, 128)).astype(np.float32), rng.standard_normal((4, 128)).astype(np.float32)
    nearest = blocks.NearestRows(queries, 5)
    nearest.add(x)
    distances, found = nearest.result()
    expected_d, expected_rows = brute_force(x, [0, 1, 2], queries, 5, "l2")
    assert found.tolist() == expected_rows and np.array_equal(distances, expected_d)
    empty = blocks.NearestRows(queries, 5)
    assert [a.shape for a in empty.result()] == [(4, 0), (4, 0)]


def test_blas_threads_set_for_the_block_and_restored() -> None:
    local = blocks._openblas_threads_local()
    if local is None:
        pytest.skip("numpy's BLAS here is not an OpenBLAS with per-thread counts")
    before = local(3)
    local(before)  # read, put back
    with blocks.blas_threads(1):
        inside = local(1)
    assert inside == 1 and local(before) == before
