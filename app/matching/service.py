"""Matching: references (what is looked for) against candidates (where it is looked for).

Both sides are pluggable. A *reference type* turns request items into descriptors
(:data:`REFERENCE_TYPES`: ``face``, ``attribute``, ``descriptor``, ``event``; each names the
permission it needs). A *candidate source* searches a set selected by filters
(:data:`CANDIDATE_SOURCES`: ``faces``, ``events``) and describes the hits it returns.

Similarity is the descriptor version's calibrated map of the L2 distance
(``inference.descriptor_format.similarity``: 1 at distance 0, 0.5 at the version's threshold), strictly
decreasing, so the top-k by distance is the top-k by similarity and ``threshold`` cuts it.

Faces are searched in the matcher workers' list cache when the only filter is one cached list;
every other filter set is evaluated in SQL and the descriptors streamed in chunks through
``matcher.stream.topk_stream``. Both paths are exact, so they return the same results.
"""
from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app import settings
from app.attributes import service as attributes
from app.db import dialect_of
from app.errors import APIError
from app.events import service as events
from app.events.models import Event, EventDescriptor
from app.faces import service as faces
from app.faces.models import Face, FaceDescriptor, FaceList
from app.filters import conditions
from app.matching import cache as matcher_cache
from app.scope import Scope, get_or_404, owned_ids, scoped
from inference import descriptor_format as fmt
from matcher.cache import ListCache
from matcher.index import FlatIndex
from matcher.stream import topk_stream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    """One descriptor to look for, and how the answer names it."""

    type: str
    id: str
    version: int
    vector: np.ndarray  # float32, the version's length

    def describe(self) -> dict[str, str]:
        return {"type": self.type, "id": self.id}


Resolver = Callable[[Session, Scope, Sequence[Mapping[str, Any]]], list[Reference]]


@dataclass(frozen=True)
class ReferenceType:
    resolve: Resolver  # items of this type -> references, in the items' order
    permission: tuple[str, str] | None  # (resource, action) a token needs to use it, beyond the endpoint's


REFERENCE_TYPES: dict[str, ReferenceType] = {}


def register_reference(name: str, resolve: Resolver, permission: tuple[str, str] | None) -> None:
    """Add a reference type, with the permission (resource, action) a token needs to use it."""
    REFERENCE_TYPES[name] = ReferenceType(resolve, permission)


def _vector(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


def _stored(session: Session, scope: Scope, items: Sequence[Mapping[str, Any]], kind: str, owner: Any,
            table: Any, key: Any) -> list[Reference]:
    """References to descriptors kept beside account-owned rows (faces, events): each row must be
    the scope's (else the owner's 404) and have a descriptor of the asked version."""
    default = settings.current().face_descriptor_version
    wanted = [(uuid.UUID(str(item["id"])), item.get("version") or default) for item in items]
    ids = {object_id for object_id, _ in wanted}
    found = set(owned_ids(session, owner, ids, scope))
    for object_id, _ in wanted:
        if object_id not in found:
            raise APIError(owner.not_found, f"reference {kind} {object_id} not found")
    stored = {(o, v): d for o, v, d in session.execute(select(key, table.version, table.descriptor)
                                                       .where(key.in_(ids)))}
    out = []
    for object_id, version in wanted:
        data = stored.get((object_id, version))
        if data is None:
            raise APIError("bad_reference", f"reference {kind} {object_id} has no descriptor of version {version}")
        out.append(Reference(kind, str(object_id), version, _vector(data)))
    return out


def _resolve_faces(session: Session, scope: Scope, items: Sequence[Mapping[str, Any]]) -> list[Reference]:
    return _stored(session, scope, items, "face", Face, FaceDescriptor, FaceDescriptor.face_id)


def _resolve_events(session: Session, scope: Scope, items: Sequence[Mapping[str, Any]]) -> list[Reference]:
    return _stored(session, scope, items, "event", Event, EventDescriptor, EventDescriptor.event_id)


def _resolve_attributes(session: Session, scope: Scope,
                        items: Sequence[Mapping[str, Any]]) -> list[Reference]:
    out = []
    for item in items:
        attribute_id = uuid.UUID(str(item["id"]))
        version = item.get("version") or settings.current().face_descriptor_version
        data = attributes.get_attribute(scope, attribute_id).descriptors.get(version)
        if data is None:
            raise APIError("bad_reference", f"reference attribute {attribute_id} has no descriptor of version {version}")
        out.append(Reference("attribute", str(attribute_id), version, _vector(data)))
    return out


def _resolve_descriptors(session: Session, scope: Scope, items: Sequence[Mapping[str, Any]]) -> list[Reference]:
    return _descriptor_references(items)


def _descriptor_references(items: Sequence[Mapping[str, Any]]) -> list[Reference]:
    out = []
    for item in items:
        try:
            version, data = attributes.decode_descriptor(item)
        except APIError as exc:
            raise APIError("bad_descriptor", f"descriptor '{item['id']}': {exc.detail}") from None
        out.append(Reference("descriptor", str(item["id"]), version, _vector(data)))
    return out


register_reference("face", _resolve_faces, ("face", "matching"))
register_reference("attribute", _resolve_attributes, ("attribute", "matching"))
register_reference("descriptor", _resolve_descriptors, None)
register_reference("event", _resolve_events, ("event", "matching"))


def resolve_references(session: Session, scope: Scope,
                       items: Sequence[Mapping[str, Any]]) -> list[Reference]:
    """Descriptors of request items, in their order; each type resolved in one batch.

    A ``descriptor`` item without an ``id`` is named by its position in ``items``.
    """
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item["type"] not in REFERENCE_TYPES:
            raise APIError("bad_reference", f"item {i}: unknown type '{item['type']}'; one of {sorted(REFERENCE_TYPES)}")
        by_type[item["type"]].append(i)
    out: list[Reference | None] = [None] * len(items)
    for kind, positions in by_type.items():
        batch = [{**items[i], "id": items[i].get("id") if items[i].get("id") is not None else str(i)}
                 for i in positions]
        for i, ref in zip(positions, REFERENCE_TYPES[kind].resolve(session, scope, batch)):
            out[i] = ref
    return [r for r in out if r is not None]


def missing_permissions(items: Sequence[Mapping[str, Any]], allowed: Callable[[str, str], bool]) -> list[str]:
    """``resource: action`` pairs the items' types need and the caller lacks."""
    needed = {REFERENCE_TYPES[i["type"]].permission for i in items if i["type"] in REFERENCE_TYPES}
    return sorted(f"{r}: {a}" for r, a in (p for p in needed if p) if not allowed(r, a))


def similarity(distances: np.ndarray, version: int) -> np.ndarray:
    """Similarities of ``version``'s descriptors at these L2 distances (each version has its own map)."""
    return np.asarray(fmt.similarity(np.asarray(distances, dtype=np.float64), version), dtype=np.float64)


# -- candidate sources ------------------------------------------------------------------------------


class CandidateSource(Protocol):
    permission: tuple[str, str]

    def search(self, session: Session, scope: Scope, filters: Mapping[str, Any], version: int,
               queries: np.ndarray, limit: int, seq: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``limit`` (distances ascending, ids) per query row, as ``FlatIndex.search``."""

    def describe(self, session: Session, scope: Scope, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What the answer shows of each hit; ids missing from the result are dropped (gone since)."""


class FaceCandidates:
    """Faces selected by filters (``list_id``, ``face_ids``, ``external_ids``, ``user_data``,
    ``create_time``/``face_id`` ranges) within the caller's account scope."""

    permission = ("face", "matching")

    def search(self, session: Session, scope: Scope, filters: Mapping[str, Any], version: int,
               queries: np.ndarray, limit: int, seq: int) -> tuple[np.ndarray, np.ndarray]:
        list_id = filters.get("list_id")
        if list_id is not None:
            get_or_404(session, FaceList, list_id, scope)  # another account's list is a 404, also on the cache path
        cache = self._cache_for(filters, version, seq)
        if cache is not None:
            return cache.search([str(list_id)], queries, limit)
        return topk_stream(queries, self._stream(session, scope, filters, version), limit, queries.shape[1])

    def _cache_for(self, filters: Mapping[str, Any], version: int, seq: int) -> ListCache | None:
        """The process's list cache when it can answer these filters, synced to feed position ``seq``."""
        given = {k for k, v in filters.items() if v not in (None, "", [])}
        if given != {"list_id"} or not settings.current().matcher_use_cache:
            return None
        follower = matcher_cache.follower()
        if (follower is None or not follower.cache.ready or follower.version != version
                or not follower.cache.caches(str(filters["list_id"]))):
            return None  # a cache still loading answers nothing: the database does, with the same result
        if follower.sync(seq):
            return follower.cache
        log.warning("matcher cache did not reach feed seq %d in time; matching against the database", seq)
        return None

    def _stream(self, session: Session, scope: Scope, filters: Mapping[str, Any],
                version: int) -> Iterator[tuple[list[str], np.ndarray]]:
        query = scoped(Face, scope, Face.face_id, FaceDescriptor.descriptor).join(
            FaceDescriptor, (FaceDescriptor.face_id == Face.face_id) & (FaceDescriptor.version == version))
        return descriptor_chunks(session, faces.filtered(query, filters))

    def describe(self, session: Session, scope: Scope, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = list(session.scalars(scoped(Face, scope).where(Face.face_id.in_([uuid.UUID(i) for i in ids]))))
        return {str(v["face_id"]): {"face_id": str(v["face_id"]), "account_id": str(v["account_id"]),
                                    "external_id": v["external_id"], "user_data": v["user_data"],
                                    "lists": [str(x) for x in v["lists"]]}
                for v in faces.face_views(session, rows)}


def descriptor_chunks(session: Session, query: Any) -> Iterator[tuple[list[str], np.ndarray]]:
    """(ids, descriptors) of a query's (id, descriptor bytes) rows, a chunk at a time."""
    query = query.execution_options(yield_per=settings.current().matcher_chunk_size)
    for rows in session.execute(query).partitions():
        yield ([str(r[0]) for r in rows],
               np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), -1))


class EventCandidates:
    """Events selected by the filters of ``GET /events``, within the caller's account scope; an
    event is a candidate by its largest face's descriptor (events without a face are not)."""

    permission = ("event", "matching")

    def search(self, session: Session, scope: Scope, filters: Mapping[str, Any], version: int,
               queries: np.ndarray, limit: int, seq: int) -> tuple[np.ndarray, np.ndarray]:
        query = scoped(Event, scope, Event.event_id, EventDescriptor.descriptor).join(
            EventDescriptor, (EventDescriptor.event_id == Event.event_id) & (EventDescriptor.version == version))
        query = query.where(*conditions(events.EVENTS.filters, filters, dialect_of(session)))
        return topk_stream(queries, descriptor_chunks(session, query), limit, queries.shape[1])

    def describe(self, session: Session, scope: Scope, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        rows = session.scalars(scoped(Event, scope).where(Event.event_id.in_([uuid.UUID(i) for i in ids])))
        return {str(e.event_id): {"event_id": str(e.event_id), "account_id": str(e.account_id),
                                  "handler_id": str(e.handler_id) if e.handler_id else None,
                                  "create_time": e.create_time.isoformat(), "source": e.source,
                                  "external_id": e.external_id, "user_data": e.user_data,
                                  "face_id": str(e.face_id) if e.face_id else None}
                for e in rows}


CANDIDATE_SOURCES: dict[str, CandidateSource] = {"faces": FaceCandidates(), "events": EventCandidates()}


def match(session: Session, scope: Scope, references: Sequence[Reference], source: str,
          filters: Mapping[str, Any], limit: int, threshold: float, seq: int) -> list[dict[str, Any]]:
    """For each reference, its best candidates by similarity (at least ``threshold``, at most ``limit``).

    ``seq``: the change-feed head when the request started; nothing removed before it is returned.
    """
    candidates = CANDIDATE_SOURCES.get(source)
    if candidates is None:
        raise APIError("bad_candidates", f"unknown candidate source '{source}'; one of {sorted(CANDIDATE_SOURCES)}")
    hits: list[list[tuple[str, float]]] = [[] for _ in references]
    by_version: dict[int, list[int]] = defaultdict(list)
    for i, ref in enumerate(references):
        by_version[ref.version].append(i)
    for version, positions in by_version.items():
        queries = np.stack([references[i].vector for i in positions])
        distances, ids = candidates.search(session, scope, filters, version, queries, limit, seq)
        sims = similarity(distances, version)
        for row, i in enumerate(positions):
            # A None id is no candidate: the index's answer for a row whose score overflowed (a stored
            # descriptor with huge values); it must not reach describe() as the face id "None".
            hits[i] = [(str(c), float(s)) for c, s in zip(ids[row], sims[row]) if c is not None and s >= threshold]
    shown = candidates.describe(session, scope, sorted({c for row in hits for c, _ in row}))
    return [{"reference": ref.describe(),
             "matches": [{**shown[c], "similarity": s} for c, s in row if c in shown]}
            for ref, row in zip(references, hits)]


def match_raw(references: Sequence[Reference], candidates: Sequence[Reference], limit: int,
              threshold: float) -> list[dict[str, Any]]:
    """Descriptors against descriptors given in the request; the same exact top-k as lists."""
    version = check_versions([*references, *candidates])
    ids = [c.id for c in candidates]
    if len(set(ids)) != len(ids):
        raise APIError("bad_candidates", "candidate ids must be unique")
    index = FlatIndex(fmt.DESCRIPTOR_LENGTHS[version], "l2", capacity=len(candidates))
    index.add(list(range(len(candidates))), np.stack([c.vector for c in candidates]))
    distances, positions = index.search(np.stack([r.vector for r in references]), limit)
    sims = similarity(distances, version)
    return [{"reference": ref.describe(),
             "matches": [{"id": ids[p], "similarity": float(s)} for p, s in zip(positions[row], sims[row])
                         if s >= threshold]}
            for row, ref in enumerate(references)]


def check_versions(descriptors: Sequence[Reference], expected: int | None = None) -> int:
    """The one descriptor version of all ``descriptors`` (and ``expected``, if given)."""
    versions = {d.version for d in descriptors} | ({expected} if expected is not None else set())
    if len(versions) != 1:
        raise APIError("descriptor_version_mismatch",
                       f"descriptors of versions {sorted(versions)} cannot be compared")
    return versions.pop()


def pair_distances(references: Sequence[Reference], candidates: Sequence[Reference]) -> np.ndarray:
    """Exact float64 L2 distance of every (reference, candidate) pair, shape (R, C)."""
    c = np.stack([x.vector for x in candidates]).astype(np.float64)
    out = np.empty((len(references), len(candidates)))
    for i, ref in enumerate(references):  # row by row: memory stays at one (C, D) block
        diff = c - ref.vector.astype(np.float64)
        out[i] = np.sqrt((diff * diff).sum(axis=1))
    return out


# -- requests as the API validated them ---------------------------------------------------------


def match_faces_request(session: Session, body: Mapping[str, Any], references_scope: Scope,
                        candidates_scope: Scope, seq: int) -> list[dict[str, Any]]:
    """A ``MatchFacesSchema`` request: references resolved in the caller's read scope, candidates
    searched in ``candidates_scope`` (one account, or all for advanced users)."""
    refs = resolve_references(session, references_scope, body["references"])
    return match(session, candidates_scope, refs, body["candidates"]["source"], body["candidates"]["filters"],
                 body["limit"], body["threshold"], seq)


def match_raw_request(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A ``MatchRawSchema`` request: descriptors given inline, no account data involved."""
    refs, cands = (_descriptor_references([{**d, "id": str(d["id"]) if d.get("id") is not None else str(i)}
                                           for i, d in enumerate(body[side])])
                   for side in ("references", "candidates"))
    return match_raw(refs, cands, body["limit"], body["threshold"])
