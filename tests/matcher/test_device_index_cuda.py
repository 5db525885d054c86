"""DeviceIndex on CUDA against FlatIndex: the comparisons of test_device_index.py on a GPU (this
module is skipped where torch sees no CUDA device)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import matcher.device_index as md
from matcher.device_index import DeviceIndex
from matcher.index import FlatIndex
from tests.matcher.test_device_index import _random, assert_same, check_random_and_adversarial

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_same_as_flat_index_random_and_adversarial() -> None:
    check_random_and_adversarial("cuda")


@pytest.mark.parametrize("tf32", [False, True])
def test_large_list_many_blocks_and_tf32(tf32: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """200,000 rows over four blocks and 1,000 queries, with CUDA matmuls in full float32 and in
    TF32 (the bound widens, the results stay identical)."""
    monkeypatch.setattr(md, "BLOCK_ROWS", 1 << 16)
    monkeypatch.setattr(torch.backends.cuda.matmul, "fp32_precision", "tf32" if tf32 else "ieee")
    x = _random(200_000, 1)
    x[1000:1100] = x[0]
    flat, dev = FlatIndex(coded=True), DeviceIndex(device="cuda")
    for index in (flat, dev):
        index.add(list(range(len(x))), x)
        index.remove(list(range(0, len(x), 11)))
    assert len(dev._rows) == 4
    queries = np.vstack([x[:10], _random(990, 2)])
    for k in (1, 10, 150):
        assert_same(flat, dev, queries, k)
    assert_same(flat, dev, queries[:1], 10)


def test_rows_stay_on_the_device() -> None:
    dev = DeviceIndex(device="cuda")
    dev.add(list(range(100)), _random(100, 3))
    assert all(r.is_cuda for r in dev._snap.rows) and all(b.is_cuda for b in dev._snap.bias)
