"""Writer-against-readers harness for the indexes' concurrency guarantee (see docs/matcher.md)."""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np


def churn_errors(index: Any, query: np.ndarray, rounds: int, readers: Sequence[int]) -> list[str]:
    """A writer adds eight faces right at ``query[0]`` and removes them again, ``rounds`` times,
    while one thread per entry of ``readers`` (a query count) searches until the writer is done.
    Returns what the readers saw that the guarantee rules out: ids whose remove() had returned
    before the search started, half of a batch, duplicate or unsorted results."""
    removed: set[str] = set()
    stop = threading.Event()
    errors: list[str] = []

    def writer() -> None:
        for round_ in range(rounds):
            batch = [f"hot-{round_}-{j}" for j in range(8)]
            index.add(batch, np.repeat(query[:1], 8, axis=0) + 1e-3 * np.arange(8)[:, None])
            index.remove(batch)
            removed.update(batch)  # only after remove() returned
        stop.set()

    def reader(nq: int) -> None:
        while not stop.is_set():
            gone = set(removed)
            scores, ids = index.search(query[:nq], 12)
            flat = [i for row in ids for i in row]
            if gone.intersection(flat):
                errors.append(f"removed ids returned: {gone.intersection(flat)}")
            hot = [i for i in ids[0] if i.startswith("hot-")]
            if len({i.rsplit("-", 1)[0] for i in hot}) > 1 or len(hot) not in (0, 8):
                errors.append(f"half-applied batch seen: {hot}")
            if any(len(set(row)) != len(row) for row in ids) or (np.diff(scores, axis=1) < 0).any():
                errors.append("duplicate or unsorted results")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader, args=(nq,)) for nq in readers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return errors
