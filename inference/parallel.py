"""A batch split into shards that run side by side, one per CPU core, each on one torch thread.

Most of the face pipeline's CPU time goes to many small tensor operations (MTCNN's pyramid
levels of 3 to 32 channels, a few dozen crops per image, NMS) and to numpy code (landmarks,
alignment), and those gain little from torch's intra-op threads: on the 2-core bench machine
the pipeline ran 1.2x faster on 2 intra-op threads than on 1, and 1.6x faster as two halves of
the batch side by side, each on one thread (figures in docs/sdk.md). On CUDA the device does the
parallel work, so a batch stays whole there, as does a batch of one image, which keeps all
intra-op threads for the lowest latency.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_wanted = 0  # 0: one shard per usable core
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_SHARD_THREAD = "inference-shard"


def configure(shards: int) -> None:
    """Shards per batch on the CPU: 0 for one per usable core, 1 to keep batches whole."""
    global _wanted
    _wanted = max(0, shards)


def shard_count(items: int, device: str) -> int:
    """How many shards a batch of ``items`` on ``device`` is split into."""
    if not device.startswith("cpu"):
        return 1
    return max(1, min(items, _wanted or len(os.sched_getaffinity(0))))


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)  # per thread under OpenMP: the caller's own setting is unchanged


def _executor(size: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    import torch

    # A thread takes its torch thread count from the last set_num_threads of any thread when it
    # first runs torch code; settle the caller's (batches of one keep every thread) before the
    # shard threads set theirs to 1.
    torch.get_num_threads()
    with _lock:
        if _pool is None or _pool_size < size:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(size, thread_name_prefix=_SHARD_THREAD, initializer=_one_thread)
            _pool_size = size
        return _pool


def partition(costs: Sequence[float], shards: int) -> list[list[int]]:
    """Indices split into ``shards`` groups of about equal total cost (largest first, each to the
    currently lightest group), each group in input order."""
    groups: list[list[int]] = [[] for _ in range(shards)]
    loads = [0.0] * shards
    for i in sorted(range(len(costs)), key=lambda i: -costs[i]):
        lightest = loads.index(min(loads))
        groups[lightest].append(i)
        loads[lightest] += costs[i]
    return [sorted(g) for g in groups if g]


def run(fn: Callable[[list[T]], list[R]], items: list[T], costs: Sequence[float], device: str) -> list[R]:
    """``fn(items)``, computed as ``fn`` over shards of ``items`` side by side; results in order.

    ``fn`` must return one result per item and be safe to call from several threads at once
    (the registry's models are: their forward passes keep no state). Called from a shard, it runs
    inline: shards waiting on shards of the same pool would wait for ever.
    """
    shards = shard_count(len(items), device)
    if shards == 1 or threading.current_thread().name.startswith(_SHARD_THREAD):
        return fn(items)
    groups = partition(costs, shards)
    futures = [_executor(shards).submit(fn, [items[i] for i in g]) for g in groups]
    out: list[Any] = [None] * len(items)
    for group, future in zip(groups, futures):
        results = future.result()
        if len(results) != len(group):
            raise RuntimeError(f"{getattr(fn, '__name__', fn)} returned {len(results)} results for {len(group)} items")
        for i, result in zip(group, results):
            out[i] = result
    return out
