"""Change-feed records the list cache applies (produced by the faces/lists layer).

Every record carries ``seq``, the feed position: strictly increasing in delivery order. The cache
skips records with ``seq`` at or below what it has applied, so redelivery and the replay of
changes already contained in a load snapshot are harmless. Every record has "set" semantics (the
state after applying it does not depend on whether it was applied before), which is what makes
that replay safe.
"""
from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class DescriptorAdded:
    """The face's descriptor is now ``descriptor`` (new or replacing the previous one).

    ``list_ids``: the lists the face belongs to, which the producer must fill: a face that had no
    descriptor is in no index, so without them the cache could not tell where the face now belongs.
    """

    seq: int
    face_id: Hashable
    descriptor: np.ndarray
    list_ids: tuple[Hashable, ...] = ()


@dataclass(frozen=True, slots=True)
class DescriptorRemoved:
    """The face no longer has a descriptor; it stays in its lists but cannot match."""

    seq: int
    face_id: Hashable


@dataclass(frozen=True, slots=True)
class FaceAttached:
    """The face joined ``list_id``. ``descriptor`` is the face's current descriptor, or None when it
    has none; the producer must fill it, because the cache does not know faces outside its lists."""

    seq: int
    face_id: Hashable
    list_id: Hashable
    descriptor: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class FaceDetached:
    seq: int
    face_id: Hashable
    list_id: Hashable


@dataclass(frozen=True, slots=True)
class FaceDeleted:
    seq: int
    face_id: Hashable


@dataclass(frozen=True, slots=True)
class ListDeleted:
    seq: int
    list_id: Hashable


Change = DescriptorAdded | DescriptorRemoved | FaceAttached | FaceDetached | FaceDeleted | ListDeleted
