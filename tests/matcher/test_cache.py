from __future__ import annotations

import threading

import numpy as np
import pytest

from matcher.cache import ListCache, NotCached
from matcher.changes import DescriptorAdded, DescriptorRemoved, FaceAttached, FaceDeleted, FaceDetached, ListDeleted
from matcher.index import MatcherInputError, NonFiniteError
from tests.matcher.reference import brute_force


def _vecs(n: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((n, 128)) * 0.12).astype(np.float32)


def _loaded(**settings: object) -> tuple[ListCache, dict[str, np.ndarray]]:
    """Lists A (faces 0-599) and B (faces 400-999, overlapping A), loaded in chunks of 200."""
    x = _vecs(1000, 0)
    ids = [f"f{i:04d}" for i in range(1000)]
    chunks = [("A", ids[i:i + 200], x[i:i + 200]) for i in range(0, 600, 200)]
    chunks += [("B", ids[i:i + 200], x[i:i + 200]) for i in range(400, 1000, 200)]
    cache = ListCache(**settings)
    assert not cache.ready
    cache.load(iter(chunks), seq=10)
    return cache, dict(zip(ids, x))


def _reference(faces: dict[str, np.ndarray], members: list[str], queries: np.ndarray, k: int) -> list[list[str]]:
    return brute_force(np.stack([faces[m] for m in members]), members, queries, k, "l2")[1]


def test_load_search_union_and_settings() -> None:
    cache, faces = _loaded()
    assert cache.ready and cache.version == 10 and sorted(cache.list_ids()) == ["A", "B"]
    assert cache.size("A") == 600 and cache.size("B") == 600
    queries = _vecs(6, 1)
    _, got = cache.search(["A", "B"], queries, 20)
    assert [list(r) for r in got] == _reference(faces, sorted(faces), queries, 20)
    _, got = cache.search(["B"], queries, 5)
    assert [list(r) for r in got] == _reference(faces, sorted(faces)[400:], queries, 5)
    assert cache.search(["empty"], queries, 5)[1].shape == (6, 0)

    only_a, _ = _loaded(include={"A"})
    assert only_a.list_ids() == ["A"]
    with pytest.raises(NotCached):
        only_a.search(["B"], queries, 5)
    no_b, _ = _loaded(exclude={"B"})
    with pytest.raises(NotCached):
        no_b.search(["A", "B"], queries, 5)
    assert no_b.apply(FaceAttached(11, "f0001", "B", faces["f0001"])) and no_b.size("B") == 0
    with pytest.raises(MatcherInputError):
        ListCache(metric="cosine")


def test_each_change_kind() -> None:
    cache, faces = _loaded()
    q = faces["f0500"][None, :]
    assert cache.search(["A"], q, 1)[1][0][0] == "f0500"

    assert cache.apply(FaceDetached(11, "f0500", "A"))
    assert cache.search(["A"], q, 1)[1][0][0] != "f0500"
    assert cache.search(["B"], q, 1)[1][0][0] == "f0500"  # still in the other list

    new = _vecs(1, 9)[0]
    assert cache.apply(DescriptorAdded(12, "f0500", new))  # new descriptor replaces the old one
    assert cache.search(["B"], new, 1)[1][0][0] == "f0500"
    assert cache.search(["B"], q, 1)[1][0][0] != "f0500"

    assert cache.apply(FaceAttached(13, "f0500", "C", new))
    assert cache.search(["C"], q, 3)[1][0].tolist() == ["f0500"]
    assert cache.apply(FaceAttached(14, "f0900", "C", None))  # a face without descriptor
    assert cache.size("C") == 1

    assert cache.apply(DescriptorRemoved(15, "f0500"))
    assert cache.size("C") == 0 and cache.size("B") == 599

    assert cache.apply(FaceDeleted(16, "f0450"))
    assert cache.size("A") == 598 and cache.size("B") == 598

    assert not cache.apply(FaceDeleted(16, "f0001"))  # duplicate seq: skipped
    assert cache.size("A") == 598 and cache.version == 16

    assert cache.apply(ListDeleted(17, "A"))
    assert cache.search(["A"], q, 3)[1].shape == (1, 0)
    with pytest.raises(NonFiniteError):
        cache.apply(DescriptorAdded(18, "f0600", np.full(128, np.nan)))
    assert cache.version == 17


def test_first_descriptor_of_an_attached_face_upserts_into_its_lists() -> None:
    cache, faces = _loaded(exclude={"X"})
    assert cache.apply(FaceAttached(11, "new", "A", None))  # attached before it has a descriptor
    assert cache.size("A") == 600
    v = _vecs(1, 7)[0]
    # Named lists get the face (a cached list not loaded yet is created, an excluded one is not);
    # list B, not named and not holding the face, is left alone.
    assert cache.apply(DescriptorAdded(12, "new", v, ("A", "C", "X")))
    assert cache.search(["A"], v, 1)[1][0].tolist() == ["new"] and cache.size("A") == 601
    assert cache.search(["C"], v, 3)[1][0].tolist() == ["new"]
    assert cache.size("B") == 600 and "X" not in cache.list_ids()
    # Set semantics: a later descriptor replaces it in every list, whether named again or only indexed.
    w = _vecs(1, 8)[0]
    assert cache.apply(DescriptorAdded(13, "new", w, ("A",)))
    assert cache.size("A") == 601 and cache.size("C") == 1
    assert cache.search(["A", "C"], w, 1)[1][0].tolist() == ["new"]
    members = sorted(faces)[:600] + ["new"]
    queries = _vecs(4, 3)
    faces["new"] = w
    assert [list(r) for r in cache.search(["A"], queries, 10)[1]] == _reference(faces, members, queries, 10)
    assert not cache.apply(DescriptorAdded(13, "new", v, ("B",)))  # already applied: skipped
    assert cache.size("B") == 600


def test_changes_during_load_are_replayed_after_snapshot() -> None:
    cache = ListCache()
    x = _vecs(3, 2)
    assert not cache.apply(FaceDetached(4, "a", "L"))   # already in the snapshot (seq <= 5): dropped
    assert not cache.apply(FaceAttached(6, "c", "L", x[2]))
    assert not cache.apply(FaceDetached(7, "b", "L"))
    assert not cache.wait_for(7, timeout=0.01)
    cache.load([("L", ["a", "b"], x[:2])], seq=5)
    assert cache.ready and cache.version == 7 and cache.wait_for(7, timeout=0)
    assert sorted(cache.search(["L"], x, 5)[1][0].tolist()) == ["a", "c"]


def test_wait_for_blocks_until_applied() -> None:
    cache, faces = _loaded()
    done = threading.Event()

    def waiter() -> None:
        assert cache.wait_for(12, timeout=10)
        assert "f0100" not in cache.search(["A"], faces["f0100"], 5)[1][0]
        done.set()

    t = threading.Thread(target=waiter)
    t.start()
    cache.apply(FaceDetached(11, "f0100", "B"))
    assert not done.wait(0.05)
    cache.apply(FaceDetached(12, "f0100", "A"))
    t.join(10)
    assert done.is_set()


def test_concurrent_attach_detach_delete_while_matching() -> None:
    """No search started after a detach/delete returned may return that face."""
    cache, faces = _loaded()
    q = _vecs(3, 5)
    gone: set[str] = set()
    stop = threading.Event()
    errors: list[str] = []

    def feed() -> None:
        seq = 11
        for r in range(200):
            fid = f"hot{r}"
            for change in (FaceAttached(seq, fid, "A", q[0]), FaceAttached(seq + 1, fid, "B", q[0]),
                           FaceDetached(seq + 2, fid, "A") if r % 2 else FaceDeleted(seq + 2, fid),
                           FaceDetached(seq + 3, fid, "B")):
                cache.apply(change)
            seq += 4
            gone.add(fid)
        stop.set()

    def matcher() -> None:
        while not stop.is_set():
            before = set(gone)
            _, ids = cache.search(["A", "B"], q, 5)
            hit = before.intersection(i for row in ids for i in row)
            if hit:
                errors.append(f"stale faces {hit}")

    threads = [threading.Thread(target=feed), threading.Thread(target=matcher), threading.Thread(target=matcher)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert cache.version == 11 + 4 * 200 - 1
