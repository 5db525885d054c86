"""The change feed: one row per change in the same transaction, commit order, pub/sub wake-ups,
and the matcher's list cache following it to the database's state."""
from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pytest

from inference import descriptor_format as fmt
from matcher.cache import ListCache
from matcher.changes import DescriptorAdded, DescriptorRemoved, FaceAttached, FaceDeleted, FaceDetached, ListDeleted
from tests.api.faces_helpers import new_face, new_list, sdk, vector


def _head() -> int:
    from app.db import session_scope
    from app.faces import changes

    with session_scope() as session:
        return changes.last_seq(session)


def _log_since(seq: int) -> list[tuple]:
    from sqlalchemy import select

    from app.db import session_scope
    from app.faces.models import ChangeLog

    with session_scope() as session:
        rows = session.scalars(select(ChangeLog).where(ChangeLog.seq > seq).order_by(ChangeLog.seq))
        return [(r.kind, r.face_id and str(r.face_id), r.list_id and str(r.list_id), r.version) for r in rows]


def _feed(seq: int) -> list:
    from app.db import session_scope
    from app.faces import changes

    with session_scope() as session:
        return changes.read_since(session, seq, version=fmt.DESCRIPTOR_VERSION)


def test_each_change_logged_once(client, account):
    v = fmt.DESCRIPTOR_VERSION
    start = _head()
    list_id = new_list(client, account)
    face = new_face(client, account, descriptors=[{"descriptor": sdk()}], list_ids=[list_id])
    empty = new_face(client, account)
    assert _log_since(start) == [("descriptor_added", face, None, v), ("face_attached", face, list_id, None)]

    mark = _head()
    client.patch(f"/lists/{list_id}/faces", json={"action": "attach", "face_ids": [face, empty]}, headers=account.auth)
    client.patch(f"/lists/{list_id}/faces", json={"action": "attach", "face_ids": [face, empty]}, headers=account.auth)
    client.patch(f"/lists/{list_id}/faces", json={"action": "detach", "face_ids": [empty]}, headers=account.auth)
    client.patch(f"/lists/{list_id}/faces", json={"action": "detach", "face_ids": [empty]}, headers=account.auth)
    client.patch(f"/faces/{empty}", json={"user_data": "no matching change"}, headers=account.auth)
    client.patch(f"/faces/{empty}", json={"descriptors": [{"descriptor": sdk()}]}, headers=account.auth)
    client.delete(f"/faces/{empty}/descriptors", headers=account.auth)
    client.delete(f"/faces/{face}", headers=account.auth)
    client.delete(f"/lists/{list_id}", headers=account.auth)
    assert _log_since(mark) == [
        ("face_attached", empty, list_id, None),
        ("face_detached", empty, list_id, None),
        ("descriptor_added", empty, None, v),
        ("descriptor_removed", empty, None, v),
        ("face_deleted", face, None, None),
        ("list_deleted", None, list_id, None),
    ]


def test_deleting_an_account_logs_its_lists(client, account_factory):
    doomed = account_factory()
    lists = sorted(new_list(client, doomed) for _ in range(2))
    new_face(client, doomed, descriptors=[{"descriptor": sdk()}], list_ids=lists)
    mark = _head()
    assert client.delete(f"/accounts/{doomed.account_id}", headers=doomed.auth).status_code == 204
    assert sorted(_log_since(mark)) == [("list_deleted", None, list_id, None) for list_id in lists]


def test_failed_requests_log_nothing(client, account_factory):
    a, b = account_factory(), account_factory()
    list_id = new_list(client, a)
    foreign = new_face(client, b)
    mark = _head()
    body = {"faces": [{"descriptors": [{"descriptor": sdk()}], "list_ids": [list_id]},
                      {"descriptors": [{"descriptor": "broken"}]}]}
    assert client.post("/faces/batch", json=body, headers=a.auth).status_code == 400
    mine = new_face(client, a)
    mark = _head()
    r = client.patch(f"/lists/{list_id}/faces", json={"action": "attach", "face_ids": [mine, foreign]}, headers=a.auth)
    assert r.status_code == 404
    assert _log_since(mark) == []


def test_rolled_back_transaction_takes_its_changes_along(account, redis_client, settings_override):
    from app.db import session_scope
    from app.faces import changes

    pubsub = redis_client.pubsub()
    pubsub.subscribe(changes.channel())
    pubsub.get_message(timeout=1)  # subscription confirmation
    mark = _head()
    with pytest.raises(RuntimeError):
        with session_scope() as session:
            changes.record(session, "list_deleted", uuid.UUID(account.account_id), list_id=uuid.uuid4())
            raise RuntimeError("the request failed after recording")
    assert _log_since(mark) == []
    assert pubsub.get_message(timeout=0.5) is None

    with session_scope() as session:
        changes.record(session, "face_deleted", uuid.UUID(account.account_id), face_ids=[uuid.uuid4(), uuid.uuid4()])
    message = pubsub.get_message(timeout=2)
    assert message is not None and int(message["data"]) == _head()
    assert [kind for kind, *_ in _log_since(mark)] == ["face_deleted", "face_deleted"]
    pubsub.close()


def test_commit_order_equals_seq_order(account):
    """A writer that drew its seq must commit before the next writer can draw one."""
    from app.db import session_scope
    from app.faces import changes

    account_id = uuid.UUID(account.account_id)
    first_recorded = threading.Event()
    order = []

    def first() -> None:
        with session_scope() as session:
            changes.record(session, "face_deleted", account_id, face_ids=[uuid.uuid4()])
            first_recorded.set()
            time.sleep(0.5)  # still uncommitted: the second writer must wait
            order.append("first commits")

    def second() -> None:
        first_recorded.wait()
        with session_scope() as session:
            changes.record(session, "face_deleted", account_id, face_ids=[uuid.uuid4()])
        order.append("second committed")

    mark = _head()
    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert order == ["first commits", "second committed"]
    seqs = [c.seq for c in _feed(mark)]
    assert len(seqs) == 2 and seqs == sorted(seqs)


def test_read_since_gives_matcher_records(client, account):
    mark = _head()
    list_id = new_list(client, account)
    vec = vector()
    face = new_face(client, account, descriptors=[{"descriptor": sdk(vec)}], list_ids=[list_id])
    client.patch(f"/lists/{list_id}/faces", json={"action": "detach", "face_ids": [face]}, headers=account.auth)
    client.delete(f"/faces/{face}", headers=account.auth)
    client.delete(f"/lists/{list_id}", headers=account.auth)
    feed = _feed(mark)
    assert [type(c) for c in feed] == [DescriptorRemoved, FaceAttached, FaceDetached, FaceDeleted, ListDeleted]
    assert [c.seq for c in feed] == sorted(c.seq for c in feed) and feed[-1].seq == _head()
    assert feed[1].descriptor is None  # the face is gone now: the feed carries current state

    mark = _head()
    face = new_face(client, account, descriptors=[{"descriptor": sdk(vec)}])
    added = _feed(mark)
    assert [type(c) for c in added] == [DescriptorAdded]
    assert added[0].face_id == face and added[0].descriptor.tobytes() == vec.astype("<f4").tobytes()
    assert _feed(_head()) == []


def test_matcher_cache_follows_the_feed(client, account):
    """Load a snapshot, apply the feed, and the cache answers exactly what the database holds."""
    from app.db import session_scope
    from app.faces import changes

    lists = [new_list(client, account) for _ in range(2)]
    vectors = {}

    def add(list_ids):
        vec = vector()
        face = new_face(client, account, descriptors=[{"descriptor": sdk(vec)}], list_ids=list_ids)
        vectors[face] = vec
        return face

    early = [add([lists[0]]), add(lists)]
    with session_scope() as session:
        seq = changes.last_seq(session)
        chunks = [c for c in changes.snapshot(session, version=fmt.DESCRIPTOR_VERSION) if c[0] in lists]
    cache = ListCache(dim=fmt.DESCRIPTOR_LENGTHS[fmt.DESCRIPTOR_VERSION])
    cache.load(chunks, seq)

    late = add([lists[1]])
    client.patch(f"/lists/{lists[0]}/faces", json={"action": "detach", "face_ids": [early[1]]}, headers=account.auth)
    client.patch(f"/lists/{lists[0]}/faces", json={"action": "attach", "face_ids": [late]}, headers=account.auth)
    client.delete(f"/faces/{early[0]}", headers=account.auth)
    for change in _feed(seq):
        cache.apply(change)
    assert cache.version == _head()

    for list_id in lists:
        r = client.get("/faces", query_string={"list_id": list_id}, headers=account.auth)
        in_db = {f["face_id"] for f in r.json["faces"]}
        assert cache.size(list_id) == len(in_db)
        for face in in_db:
            _, ids = cache.search([list_id], vectors[face][None, :], 1)
            assert np.asarray(ids).ravel()[0] == face
    assert cache.size(lists[0]) == 1 and cache.size(lists[1]) == 2
