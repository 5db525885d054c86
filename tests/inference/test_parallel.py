"""Batches split into per-core shards (``inference.parallel``) and the pipeline run that way."""
from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from inference import parallel, pipeline, registry

from .conftest import load_rgb


@pytest.fixture
def two_shards() -> Iterator[None]:
    parallel.configure(2)
    yield
    parallel.configure(0)


def test_partition_balances_costs_and_keeps_every_index_once() -> None:
    costs = [9.0, 1.0, 1.0, 1.0, 4.0, 4.0, 1.0, 1.0]
    groups = parallel.partition(costs, 2)
    assert sorted(i for g in groups for i in g) == list(range(len(costs)))
    assert all(g == sorted(g) for g in groups)
    loads = sorted(sum(costs[i] for i in g) for g in groups)
    assert loads == [11.0, 11.0]
    assert parallel.partition([1.0], 3) == [[0]]  # no empty shards


def test_shard_count_follows_device_and_setting(two_shards) -> None:
    assert parallel.shard_count(8, "cpu") == 2
    assert parallel.shard_count(1, "cpu") == 1
    assert parallel.shard_count(8, "cuda") == 1
    parallel.configure(1)
    assert parallel.shard_count(8, "cpu") == 1


def test_run_keeps_order_and_uses_one_torch_thread_per_shard(two_shards) -> None:
    seen: list[tuple[str, int]] = []
    lock = threading.Lock()

    def square(items: list[int]) -> list[int]:
        with lock:
            seen.append((threading.current_thread().name, torch.get_num_threads()))
        return [x * x for x in items]

    caller_threads = torch.get_num_threads()
    items = list(range(10))
    assert parallel.run(square, items, [float(x) for x in items], "cpu") == [x * x for x in items]
    assert len(seen) == 2
    assert all(name.startswith("inference-shard") and threads == 1 for name, threads in seen)
    assert torch.get_num_threads() == caller_threads

    seen.clear()
    assert parallel.run(square, items, [1.0] * 10, "cuda") == [x * x for x in items]
    assert seen == [(threading.current_thread().name, caller_threads)]  # whole batch, inline


def test_a_run_inside_a_shard_runs_inline(two_shards) -> None:
    """The worker shards whole analyses; a stage that shards again must not wait on the busy pool."""

    def inner(items: list[int]) -> list[tuple[int, str]]:
        return [(i, threading.current_thread().name) for i in items]

    def outer(items: list[int]) -> list[tuple[int, str]]:
        return parallel.run(inner, items, [1.0] * len(items), "cpu")

    out = parallel.run(outer, [1, 2, 3, 4], [1.0] * 4, "cpu")
    assert [i for i, _ in out] == [1, 2, 3, 4]
    assert all(name.startswith("inference-shard") for _, name in out)  # inline, on the outer shard's thread


def test_run_rejects_a_shard_that_loses_results(two_shards) -> None:
    with pytest.raises(RuntimeError, match="returned 1 results for"):
        parallel.run(lambda items: items[:1], [1, 2, 3, 4], [1.0] * 4, "cpu")


def test_sharded_pipeline_batch_matches_images_one_by_one(two_shards, faces_dir: Path) -> None:
    registry.configure(device="cpu")
    paths = sorted((faces_dir / "lfw").glob("*/*_0001.jpg"))[:3] + sorted((faces_dir / "multi").glob("*.jpg"))[:1]
    images = [load_rgb(p) for p in paths]
    batch = pipeline.process(images)
    for image, faces in zip(images, batch):
        alone = pipeline.process([image])[0]
        assert len(faces) == len(alone) >= 1
        for a, b in zip(faces, alone):
            assert np.allclose(a.detection.box, b.detection.box, atol=1e-2)
            assert np.abs(a.descriptor - b.descriptor).max() < 1e-4
