"""Verifiers: stored 1:1 verification policies, and verifications under them.

A verification compares every reference with every candidate (faces, events, temporary attributes
or descriptors given inline, resolved by :mod:`app.matching.service`) and reports the similarity
and whether it reaches the verifier's threshold. Images are verified too: a ``gpu`` step detects and
extracts them (the ``inference.sdk`` task), and :func:`verify_images` takes each image's largest
face as a reference, against the given candidates or, without any, against the other images.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from sqlalchemy.orm import Session

from app.attributes import service as attributes
from app.errors import APIError
from app.filters import Filterable, conditions
from app.matching import service as matching
from app.pagination import paginate
from app.scope import Scope, get_or_404, scoped
from app.verifiers.models import Verifier


def create_verifier(session: Session, scope: Scope, **fields_: Any) -> Verifier:
    verifier = Verifier(account_id=scope.owner, **fields_)
    session.add(verifier)
    session.flush()
    return verifier


FILTERS = Filterable(contains={"description": Verifier.description})


def list_verifiers(session: Session, scope: Scope, filters: Mapping[str, Any],
                   page: int, page_size: int) -> list[Verifier]:
    query = scoped(Verifier, scope).where(*conditions(FILTERS, filters)).order_by(Verifier.verifier_id)
    return paginate(session, query, page, page_size)


def update_verifier(session: Session, scope: Scope, verifier_id: uuid.UUID,
                    changes: Mapping[str, Any]) -> Verifier:
    verifier = get_or_404(session, Verifier, verifier_id, scope)
    for key, value in changes.items():
        setattr(verifier, key, value)
    verifier.last_update_time = datetime.now(timezone.utc)
    session.flush()
    return verifier


def delete_verifier(session: Session, scope: Scope, verifier_id: uuid.UUID) -> None:
    session.delete(get_or_404(session, Verifier, verifier_id, scope))


def _verifications(verifier: Verifier, refs: list[matching.Reference], cands: list[matching.Reference],
                   pairs: Callable[[int, int], bool] = lambda i, j: True) -> list[dict[str, Any]]:
    """The ``pairs`` of (reference, candidate) with similarity and pass/fail, reference-major."""
    version = matching.check_versions([*refs, *cands], expected=verifier.version)
    sims = matching.similarity(matching.pair_distances(refs, cands), version)
    return [{"reference": r.describe(), "candidate": c.describe(), "similarity": float(sims[i, j]),
             "status": "pass" if sims[i, j] >= verifier.threshold else "fail"}
            for i, r in enumerate(refs) for j, c in enumerate(cands) if pairs(i, j)]


def verify(session: Session, scope: Scope, verifier_id: uuid.UUID,
           body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every (reference, candidate) pair with its similarity and pass/fail, reference-major."""
    verifier = get_or_404(session, Verifier, verifier_id, scope)
    refs = matching.resolve_references(session, scope, body["references"])
    return _verifications(verifier, refs, matching.resolve_references(session, scope, body["candidates"]))


def image_references(answer: Mapping[str, Any]) -> list[matching.Reference]:
    """Each image's largest face (an /sdk answer with descriptors), named by the image; 400
    ``no_face`` naming the first image without one."""
    out = []
    for image in answer["images"]:
        found = [face for face in image.get("faces") or () if "descriptor" in face]
        if not found:
            raise APIError("no_face", f"image '{image['filename']}': no face found")
        face = max(found, key=lambda f: f["detection"]["rect"]["width"])
        version, data = attributes.decode_descriptor({"descriptor": face["descriptor"]})
        out.append(matching.Reference("image", image["filename"], version, np.frombuffer(data, dtype="<f4")))
    return out


def verify_images(session: Session, scope: Scope, verifier_id: uuid.UUID, answer: Mapping[str, Any],
                  candidates: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Each image against every candidate, or (no candidates) every image against each later one."""
    verifier = get_or_404(session, Verifier, verifier_id, scope)
    refs = image_references(answer)
    if candidates:
        return _verifications(verifier, refs, matching.resolve_references(session, scope, candidates))
    return _verifications(verifier, refs, refs, lambda i, j: i < j)
