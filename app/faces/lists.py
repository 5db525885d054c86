"""Lists of faces: the sets matching runs against."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db import conflict_insert
from app.faces import changes
from app.faces.models import FaceList, ListFace
from app.faces.service import own_faces
from app.filters import Filterable, conditions
from app.pagination import paginate
from app.scope import Scope, get_or_404, scoped


def create_list(session: Session, scope: Scope, user_data: str = "") -> FaceList:
    face_list = FaceList(account_id=scope.owner, user_data=user_data)
    session.add(face_list)
    session.flush()
    return face_list


FILTERS = Filterable(any_of={"list_ids": FaceList.list_id}, contains={"user_data": FaceList.user_data},
                     ranges={"create_time": FaceList.create_time})


def list_views(session: Session, lists: Sequence[FaceList]) -> list[dict[str, Any]]:
    counts: dict[uuid.UUID, int] = {}
    if lists:
        counts = dict(session.execute(select(ListFace.list_id, func.count())
                                      .where(ListFace.list_id.in_([x.list_id for x in lists]))
                                      .group_by(ListFace.list_id)).all())
    return [{"list_id": x.list_id, "account_id": x.account_id, "user_data": x.user_data,
             "create_time": x.create_time, "last_update_time": x.last_update_time,
             "faces_count": counts.get(x.list_id, 0)} for x in lists]


def list_lists(session: Session, scope: Scope, filters: dict[str, Any],
               page: int, page_size: int) -> list[dict[str, Any]]:
    query = scoped(FaceList, scope).where(*conditions(FILTERS, filters)).order_by(FaceList.list_id)
    return list_views(session, paginate(session, query, page, page_size))


def count_lists(session: Session, scope: Scope, filters: dict[str, Any]) -> int:
    return session.scalar(scoped(FaceList, scope, func.count()).where(*conditions(FILTERS, filters))) or 0


def update_list(session: Session, scope: Scope, list_id: uuid.UUID, user_data: str) -> FaceList:
    face_list = get_or_404(session, FaceList, list_id, scope)
    face_list.user_data = user_data
    face_list.last_update_time = datetime.now(timezone.utc)
    session.flush()
    return face_list


def delete_list(session: Session, scope: Scope, list_id: uuid.UUID) -> None:
    """Delete the list and its links (the faces stay)."""
    face_list = get_or_404(session, FaceList, list_id, scope)
    session.delete(face_list)
    session.flush()
    changes.record(session, "list_deleted", face_list.account_id, list_id=list_id)


def change_faces(session: Session, scope: Scope, list_id: uuid.UUID, action: str,
                 face_ids: Sequence[uuid.UUID]) -> int:
    """Attach or detach faces all or none; repeats are no-ops. How many links actually changed.

    Only the list's owner may change it, and only with its own faces, so a list never holds
    another account's face (listing a list's faces relies on it)."""
    face_list = get_or_404(session, FaceList, list_id, scope)
    ids = own_faces(session, Scope.of(face_list.account_id), face_ids)
    if action == "attach":
        # executemany form: the statement compiles once and is cached, whatever the batch size.
        changed = list(session.scalars(conflict_insert(session, ListFace.__table__).on_conflict_do_nothing()
                                       .returning(ListFace.face_id),
                                       [{"list_id": list_id, "face_id": f} for f in ids]))
    else:
        changed = list(session.scalars(delete(ListFace).where(ListFace.list_id == list_id, ListFace.face_id.in_(ids))
                                       .returning(ListFace.face_id)))
    if changed:
        face_list.last_update_time = datetime.now(timezone.utc)
        session.flush()
        kind = "face_attached" if action == "attach" else "face_detached"
        changes.record(session, kind, face_list.account_id, face_ids=sorted(changed), list_id=list_id)
    return len(changed)
