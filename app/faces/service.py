"""Faces and their descriptors.

Creation is a batch operation at heart (a single face is a batch of one): rows go in with one
multi-row INSERT per table, and the change feed gets one row per descriptor and list link, so
100,000 faces cost a few hundred statements, not a few hundred thousand.
"""
from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, String, cast, delete, func, insert, select, update
from sqlalchemy.orm import Session

from app import settings
from app.attributes import service as attributes
from app.errors import APIError
from app.faces import changes
from app.faces.models import Face, FaceDescriptor, FaceList, ListFace, time_ordered_uuid
from app.filters import Filterable, conditions
from app.pagination import page_slice
from app.scope import Scope, get_or_404, owned_ids, scoped

log = logging.getLogger(__name__)

LIMIT_WARNING_SHARE = 0.85
_FACE_COLUMNS = ("external_id", "user_data", "event_id", "avatar")


def check_batch_size(n: int, what: str) -> None:
    limit = settings.current().faces_batch_max
    if n > limit:
        raise APIError("validation", f"{what}: at most {limit} per request (faces_batch_max), got {n}")


def faces_with_descriptors(session: Session) -> int:
    """Faces holding at least one descriptor, over every account: what the licence limit counts."""
    return session.scalar(select(func.count(func.distinct(FaceDescriptor.face_id)))) or 0


def check_face_limit(session: Session, adding: int) -> None:
    """Refuse ``adding`` more faces with descriptors above ``face_limit``; warn from 85% on."""
    limit = settings.current().face_limit
    if limit <= 0 or adding <= 0:
        return
    after = faces_with_descriptors(session) + adding
    if after > limit:
        raise APIError("face_limit_reached", f"{after - adding} of {limit} faces with descriptors exist; "
                                             f"{adding} more would exceed face_limit")
    if after >= LIMIT_WARNING_SHARE * limit:
        log.warning("face limit: %d of %d faces with descriptors used (%.0f%%); raise face_limit or "
                    "delete faces", after, limit, 100.0 * after / limit)


def own_lists(session: Session, scope: Scope, list_ids: Iterable[uuid.UUID]) -> None:
    """404 ``list_not_found`` naming the first of ``list_ids`` the scope does not have."""
    wanted = set(list_ids)
    missing = wanted - set(owned_ids(session, FaceList, wanted, scope))
    if missing:
        raise APIError("list_not_found", f"list {sorted(map(str, missing))[0]} not found")


def _source(scope: Scope, item: dict[str, Any]) -> tuple[dict[int, bytes], dict[str, Any] | None, list[str]]:
    """Descriptors, basic attributes and sample ids of one face to create."""
    if item.get("attribute_id"):
        record = attributes.get_attribute(scope, item["attribute_id"])
        return record.descriptors, record.basic_attributes, [str(s) for s in record.sample_ids]
    descriptors = attributes.decode_descriptors(item.get("descriptors") or [])
    attributes.check_samples(scope, item.get("sample_ids") or [])
    return descriptors, item.get("basic_attributes") or None, [str(s) for s in item.get("sample_ids") or []]


def create_faces(session: Session, scope: Scope, items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Create faces all or none; each item as in ``FaceCreateSchema`` (tasks may add ``face_id``).
    Returns ``face_id``/``external_id``."""
    check_batch_size(len(items), "faces")
    account_id = scope.owner
    sources = [_source(scope, item) for item in items]
    own_lists(session, scope, (lid for item in items for lid in item.get("list_ids") or ()))
    check_face_limit(session, sum(1 for d, _, _ in sources if d))

    # Sorted ids keep the batch's order in face_id order (the listing order). A task passes ids it
    # derived from its own id (``face_id``), so a redelivered task finds its faces made.
    new = iter(sorted(time_ordered_uuid() for item in items if not item.get("face_id")))
    ids = [item.get("face_id") or next(new) for item in items]
    now = datetime.now(timezone.utc)
    face_rows, descriptor_rows, link_rows = [], [], []
    added: dict[int, list[uuid.UUID]] = defaultdict(list)
    attached: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for face_id, item, (descriptors, basic, samples) in zip(ids, items, sources):
        face_rows.append({"face_id": face_id, "account_id": account_id, "create_time": now,
                          "basic_attributes": basic, "sample_ids": samples or None,
                          "external_id": item.get("external_id"), "user_data": item.get("user_data") or "",
                          "event_id": item.get("event_id"), "avatar": item.get("avatar") or ""})
        for version, data in descriptors.items():
            descriptor_rows.append({"face_id": face_id, "version": version, "descriptor": data})
            added[version].append(face_id)
        for list_id in dict.fromkeys(item.get("list_ids") or ()):
            link_rows.append({"list_id": list_id, "face_id": face_id})
            attached[list_id].append(face_id)
    # Core inserts of plain rows: the ORM's per-object bookkeeping would cost more than the database.
    session.execute(insert(Face.__table__), face_rows)
    if descriptor_rows:
        session.execute(insert(FaceDescriptor.__table__), descriptor_rows)
    if link_rows:
        session.execute(insert(ListFace.__table__), link_rows)
        session.execute(update(FaceList).where(FaceList.list_id.in_(attached)).values(last_update_time=now))
    for version, face_ids in added.items():
        changes.record(session, "descriptor_added", account_id, face_ids=face_ids, version=version)
    for list_id, face_ids in attached.items():
        changes.record(session, "face_attached", account_id, face_ids=face_ids, list_id=list_id)
    return [{"face_id": r["face_id"], "external_id": r["external_id"]} for r in face_rows]


FILTERS = Filterable(
    any_of={"face_ids": Face.face_id, "external_ids": Face.external_id},
    contains={"user_data": Face.user_data},
    ranges={"create_time": Face.create_time, "face_id": Face.face_id},
    custom={"list_id": lambda list_id: Face.face_id.in_(select(ListFace.face_id).where(ListFace.list_id == list_id))})


def filtered(query: Select[Any], f: Mapping[str, Any]) -> Select[Any]:
    """``query`` (a scoped SELECT over ``face``) narrowed by the face filters of a request."""
    return query.where(*conditions(FILTERS, f))


def _view(f: Face, lists: list[uuid.UUID], versions: list[int]) -> dict[str, Any]:
    return {"face_id": f.face_id, "account_id": f.account_id, "external_id": f.external_id,
            "user_data": f.user_data, "event_id": f.event_id, "avatar": f.avatar, "create_time": f.create_time,
            "basic_attributes": f.basic_attributes, "sample_ids": f.sample_ids or [],
            "lists": lists, "descriptor_versions": versions}


def face_views(session: Session, faces: Sequence[Face]) -> list[dict[str, Any]]:
    """Faces as the API shows them, with their lists and descriptor versions (two queries in all)."""
    ids = [f.face_id for f in faces]
    lists: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    versions: dict[uuid.UUID, list[int]] = defaultdict(list)
    if ids:
        for face_id, list_id in session.execute(select(ListFace.face_id, ListFace.list_id)
                                                .where(ListFace.face_id.in_(ids)).order_by(ListFace.list_id)):
            lists[face_id].append(list_id)
        for face_id, version in session.execute(select(FaceDescriptor.face_id, FaceDescriptor.version)
                                                .where(FaceDescriptor.face_id.in_(ids))
                                                .order_by(FaceDescriptor.version)):
            versions[face_id].append(version)
    return [_view(f, lists[f.face_id], versions[f.face_id]) for f in faces]


def _joined(text: str | None, parse: Callable[[str], Any]) -> list[Any]:
    return sorted(parse(x) for x in text.split(",")) if text else []


_FACE_COLUMN_FILTERS = ("face_ids", "external_ids", "user_data", "create_time__gte", "create_time__lt")


def _ids_query(scope: Scope, f: dict[str, Any]) -> Select[Any]:
    """The filtered face ids, in a form whose ordered scan is an index-only scan where possible."""
    if not f.get("list_id") or any(f.get(k) for k in _FACE_COLUMN_FILTERS):
        return filtered(scoped(Face, scope, Face.face_id.label("face_id")), f)
    # A list only ever holds its owner's faces (attaching checks it), so its own primary key
    # (list_id, face_id) answers alone, without visiting a face row per skipped position.
    query = (select(ListFace.face_id.label("face_id")).where(ListFace.list_id == f["list_id"])
             .where(scoped(FaceList, scope, FaceList.list_id).where(FaceList.list_id == f["list_id"]).exists()))
    if f.get("face_id__gte"):
        query = query.where(ListFace.face_id >= f["face_id__gte"])
    if f.get("face_id__lt"):
        query = query.where(ListFace.face_id < f["face_id__lt"])
    return query


def list_faces(session: Session, scope: Scope, filters: dict[str, Any],
               page: int, page_size: int) -> list[dict[str, Any]]:
    """A page of faces in creation (face_id) order, in one statement.

    The page's ids come first from an index, then only those rows are read ("late row lookup"):
    skipping to page 500 walks index entries, not 50,000 table rows. Deep scans should still
    page by ``face_id__gte`` (the last id seen) rather than by page number. Lists and descriptor
    versions ride along as aggregated text, saving two round trips and two 100-id parameter lists.
    """
    ids = _ids_query(scope, filters).subquery()
    page_ids = page_slice(select(ids.c.face_id).order_by(ids.c.face_id), page, page_size)
    lists = (select(func.aggregate_strings(cast(ListFace.list_id, String), ","))
             .where(ListFace.face_id == Face.face_id).scalar_subquery())
    versions = (select(func.aggregate_strings(cast(FaceDescriptor.version, String), ","))
                .where(FaceDescriptor.face_id == Face.face_id).scalar_subquery())
    rows = session.execute(scoped(Face, scope, Face, lists, versions).where(Face.face_id.in_(page_ids))
                           .order_by(Face.face_id))
    return [_view(face, _joined(list_ids, uuid.UUID), _joined(found, int)) for face, list_ids, found in rows]


def count_faces(session: Session, scope: Scope, filters: dict[str, Any]) -> int:
    return session.scalar(select(func.count()).select_from(_ids_query(scope, filters).subquery())) or 0


def update_face(session: Session, scope: Scope, face_id: uuid.UUID, changes_: dict[str, Any]) -> Face:
    """Change fields; ``descriptors`` add or replace the descriptor of each version (re-extraction)."""
    face = get_or_404(session, Face, face_id, scope)
    for key in (*_FACE_COLUMNS, "basic_attributes"):
        if key in changes_:
            setattr(face, key, changes_[key])
    new = attributes.decode_descriptors(changes_.get("descriptors") or [])
    if new:
        held = {d.version: d for d in session.scalars(select(FaceDescriptor).where(FaceDescriptor.face_id == face_id))}
        if not held:
            check_face_limit(session, 1)
        for version, data in new.items():
            if version in held:
                held[version].descriptor = data
            else:
                session.add(FaceDescriptor(face_id=face_id, version=version, descriptor=data))
    session.flush()
    for version in sorted(new):
        changes.record(session, "descriptor_added", face.account_id, face_ids=[face_id], version=version)
    return face


def own_faces(session: Session, scope: Scope, face_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
    """The distinct ids, all of them within ``scope``, or ``face_not_found`` naming one that is not."""
    wanted = list(dict.fromkeys(face_ids))
    check_batch_size(len(wanted), "face_ids")
    found = set(owned_ids(session, Face, wanted, scope))
    missing = [f for f in wanted if f not in found]
    if missing:
        raise APIError("face_not_found", f"face {missing[0]} not found ({len(missing)} of {len(wanted)} missing)")
    return wanted


def delete_faces(session: Session, scope: Scope, face_ids: Sequence[uuid.UUID]) -> None:
    """Delete the faces (with their descriptors and list links) all or none."""
    ids = own_faces(session, scope, face_ids)
    session.execute(delete(Face).where(Face.face_id.in_(ids)))
    changes.record(session, "face_deleted", scope.owner, face_ids=ids)


def get_descriptors(session: Session, scope: Scope, face_id: uuid.UUID,
                    version: int | None) -> list[dict[str, Any]]:
    get_or_404(session, Face, face_id, scope)
    query = select(FaceDescriptor).where(FaceDescriptor.face_id == face_id).order_by(FaceDescriptor.version)
    if version is not None:
        query = query.where(FaceDescriptor.version == version)
    rows = list(session.scalars(query))
    if version is not None and not rows:
        raise APIError("descriptor_not_found", f"face {face_id} has no descriptor of version {version}")
    return [{"version": r.version, "descriptor": attributes.sdk_base64(r.version, r.descriptor)} for r in rows]


def delete_descriptors(session: Session, scope: Scope, face_id: uuid.UUID, version: int | None) -> None:
    face = get_or_404(session, Face, face_id, scope)
    query = delete(FaceDescriptor).where(FaceDescriptor.face_id == face_id)
    if version is not None:
        query = query.where(FaceDescriptor.version == version)
    removed = sorted(session.scalars(query.returning(FaceDescriptor.version)))
    if not removed:
        raise APIError("descriptor_not_found",
                       f"face {face_id} has no descriptor" + (f" of version {version}" if version else ""))
    for v in removed:
        changes.record(session, "descriptor_removed", face.account_id, face_ids=[face_id], version=v)
