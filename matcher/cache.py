"""List cache: one exact index per list (``FlatIndex``, or ``DeviceIndex`` on a GPU), kept current
by the change feed.

Lifecycle. ``load`` streams the initial snapshot (chunks of ``(list_id, ids, descriptors)``, only
faces that have a descriptor) into fresh indexes without blocking the feed: changes applied while
the cache is not ready are queued and replayed right after the snapshot is installed (those with
``seq`` at or below the snapshot's ``seq`` are dropped: the snapshot already holds them). Only then
does ``ready`` become true.

Freshness. ``version`` is the ``seq`` of the last applied change. ``apply`` returns only once the
change is visible to every search that starts afterwards (the indexes publish snapshots
atomically), so a request that must not see anything detached or deleted before it started reads
the feed head ``N`` and calls ``wait_for(N)`` before searching.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Collection, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from matcher.changes import (
    Change,
    DescriptorAdded,
    DescriptorRemoved,
    FaceAttached,
    FaceDeleted,
    FaceDetached,
    ListDeleted,
)
from matcher.index import FlatIndex, MatcherInputError, as_descriptors, check_space
from matcher.stream import merge_topk

if TYPE_CHECKING:
    from matcher.device_index import DeviceIndex

Chunk = tuple[Hashable, Sequence[Hashable], np.ndarray]
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(setting: str) -> str | None:
    """The torch device a cache keeps its lists on for the ``matcher_device`` setting, or None for
    the numpy index (``matcher.index``). "auto": CUDA when torch sees a GPU. torch is imported only
    where an NVIDIA driver is loaded (or torch already is): a CPU-only worker never pays for it."""
    if setting not in DEVICES:
        raise ValueError(f"matcher device must be one of {DEVICES}, got {setting!r}")
    if setting == "cpu" or (setting == "auto" and "torch" not in sys.modules
                            and not os.path.exists("/proc/driver/nvidia/version")):
        return None
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        raise RuntimeError("matcher device is cuda, but torch sees no CUDA device")
    return None


class NotCached(KeyError):
    """The list is excluded from this cache; the caller has to match against the database."""


class ListCache:
    """Descriptors of every cached list in memory, searchable exactly and updated by ``apply``.

    ``include``: cache only these list ids (None: all lists). ``exclude``: never cache these.
    ``device``: a torch device to keep the lists on (``matcher.device_index``; see
    ``resolve_device``), or None for the numpy index with int8 codes.
    """

    def __init__(self, dim: int = 128, metric: str = "l2", include: Collection[Hashable] | None = None,
                 exclude: Collection[Hashable] = (), device: str | None = None) -> None:
        check_space(dim, metric)
        self.dim, self.metric, self.device = dim, metric, device
        self._include = frozenset(include) if include is not None else None
        self._exclude = frozenset(exclude)
        self._indexes: dict[Hashable, FlatIndex | DeviceIndex] = {}
        self._cond = threading.Condition(threading.RLock())
        self._pending: list[Change] = []
        self._version = -1
        self._ready = False

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def version(self) -> int:
        return self._version

    def caches(self, list_id: Hashable) -> bool:
        """Whether this cache answers for ``list_id`` (settings only; the list may be empty)."""
        return list_id not in self._exclude and (self._include is None or list_id in self._include)

    def list_ids(self) -> list[Hashable]:
        return list(self._indexes)

    def size(self, list_id: Hashable) -> int:
        index = self._indexes.get(list_id)
        return 0 if index is None else len(index)

    def load(self, chunks: Iterable[Chunk], seq: int = 0) -> None:
        """Install the initial snapshot; ``seq`` is the feed position it reflects (a lower value is
        safe: changes are idempotent and get replayed)."""
        indexes: dict[Hashable, FlatIndex | DeviceIndex] = {}
        for list_id, ids, descriptors in chunks:
            if self.caches(list_id):
                index = indexes.get(list_id)
                if index is None:
                    index = indexes[list_id] = self._new_index()
                index.add(ids, descriptors)
        for index in indexes.values():
            index.prepare()
        with self._cond:
            self._indexes = indexes
            self._version = max(self._version, seq)
            pending, self._pending = self._pending, []
            self._ready = True
            for change in pending:
                self._apply_locked(change)
            self._cond.notify_all()

    def apply(self, change: Change) -> bool:
        """Apply one feed record; False when it was a duplicate or was queued until ``load`` ends."""
        with self._cond:
            if not self._ready:
                self._pending.append(change)
                return False
            applied = self._apply_locked(change)
            self._cond.notify_all()
            return applied

    def wait_for(self, seq: int, timeout: float | None = None) -> bool:
        """Block until the change numbered ``seq`` is applied (and the cache is ready)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._ready and self._version >= seq, timeout)

    def search(self, list_ids: Iterable[Hashable], queries: object, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k over the union of lists (a face in several of them counts once).

        Same result convention as ``FlatIndex.search``. Raises NotCached for an excluded list.
        """
        list_ids = list(dict.fromkeys(list_ids))
        for list_id in list_ids:
            if not self.caches(list_id):
                raise NotCached(list_id)
        q = as_descriptors(queries, self.dim, "queries")
        if not isinstance(k, (int, np.integer)) or k <= 0:
            raise MatcherInputError("k must be a positive integer")
        indexes = [ix for ix in (self._indexes.get(lid) for lid in list_ids) if ix is not None]
        if not indexes:
            return np.empty((q.shape[0], 0)), np.empty((q.shape[0], 0), dtype=object)
        if len(indexes) == 1:
            return indexes[0].search(q, k)
        parts = [ix.search(q, k) for ix in indexes]
        return merge_topk(parts, k, self.metric)

    def _apply_locked(self, change: Change) -> bool:
        if change.seq <= self._version:
            return False
        if isinstance(change, DescriptorAdded):
            # Upsert into the lists the face belongs to (it may be in no index yet: a face gets its
            # first descriptor after being attached), and replace it wherever it is already indexed.
            x = as_descriptors(change.descriptor, self.dim)
            indexed = [lid for lid, index in self._indexes.items() if change.face_id in index]
            for list_id in dict.fromkeys([*change.list_ids, *indexed]):
                self._upsert(list_id, change.face_id, x)
        elif isinstance(change, (DescriptorRemoved, FaceDeleted)):
            for index in self._indexes.values():
                index.remove([change.face_id])
        elif isinstance(change, FaceAttached):
            if change.descriptor is not None:
                self._upsert(change.list_id, change.face_id, as_descriptors(change.descriptor, self.dim))
        elif isinstance(change, FaceDetached):
            index = self._indexes.get(change.list_id)
            if index is not None:
                index.remove([change.face_id])
        elif isinstance(change, ListDeleted):
            self._indexes.pop(change.list_id, None)
        else:
            raise TypeError(f"unknown change record {type(change).__name__}")
        self._version = change.seq
        return True

    def _upsert(self, list_id: Hashable, face_id: Hashable, x: np.ndarray) -> None:
        """Put the face's descriptor ``x`` into ``list_id``'s index (created on first use) if cached."""
        if self.caches(list_id):
            index = self._indexes.get(list_id)
            if index is None:
                index = self._indexes[list_id] = self._new_index()
            index.add([face_id], x)

    def _new_index(self) -> FlatIndex | DeviceIndex:
        if self.device is None:
            return FlatIndex(self.dim, self.metric, coded=True)
        from matcher.device_index import DeviceIndex  # torch only where a device is asked for

        return DeviceIndex(self.dim, self.metric, device=self.device)
