from __future__ import annotations

import numpy as np
import pytest

from matcher.index import MatcherInputError
from matcher.stream import topk_stream
from tests.matcher.reference import brute_force


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("chunk", [1, 97, 5000])
def test_stream_equals_brute_force(metric: str, chunk: int) -> None:
    rng = np.random.default_rng(chunk)
    x = (rng.standard_normal((3000, 128)) * 0.12).astype(np.float32)
    x[2000:2004] = x[10]  # ties spread over several chunks
    ids = [f"id{i:05d}" for i in range(3000)]
    queries = np.vstack([x[10:11], (rng.standard_normal((7, 128)) * 0.12).astype(np.float32)])
    if chunk == 1:
        x, ids = x[:300], ids[:300]
    chunks = ((ids[i:i + chunk], x[i:i + chunk]) for i in range(0, len(ids), chunk))
    scores, got = topk_stream(queries, chunks, 9, metric=metric)
    ref_s, ref_i = brute_force(x, ids, queries, 9, metric)
    assert [list(r) for r in got] == ref_i
    np.testing.assert_allclose(scores, ref_s, rtol=1e-12, atol=1e-12)


def test_stream_real_descriptors(real_descriptors: tuple[np.ndarray, list[str]]) -> None:
    x, _ = real_descriptors
    ids = list(range(len(x)))
    chunks = ((ids[i:i + 8], x[i:i + 8]) for i in range(0, len(x), 8))
    _, got = topk_stream(x[:5], chunks, 4)
    assert [list(r) for r in got] == brute_force(x, ids, x[:5], 4, "l2")[1]


def test_stream_edge_cases() -> None:
    x = np.eye(3, 128, dtype=np.float32)
    scores, ids = topk_stream(x[0], [([1, 2], x[:2]), ([3], x[2:])], 10)
    assert ids[0].tolist() == [1, 2, 3] and scores[0, 0] == 0.0
    assert topk_stream(x[0], [], 3)[1].shape == (1, 0)
    with pytest.raises(MatcherInputError):
        topk_stream(x[0], [([1], np.full((1, 128), np.nan))], 3)
    with pytest.raises(MatcherInputError):
        topk_stream(x[0, :5], [], 3)
