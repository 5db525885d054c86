"""Verifiers: stored 1:1 verification policies, and verifications under them.

A verification compares every reference with every candidate (faces, temporary attributes or
descriptors given inline, resolved by :mod:`app.matching.service`) and reports the similarity and
whether it reaches the verifier's threshold. References from images are added by the inference
REST part through ``matching.register_reference("image", ...)``.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy.orm import Session

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


def verify(session: Session, scope: Scope, verifier_id: uuid.UUID,
           body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every (reference, candidate) pair with its similarity and pass/fail, reference-major."""
    verifier = get_or_404(session, Verifier, verifier_id, scope)
    refs = matching.resolve_references(session, scope, body["references"])
    cands = matching.resolve_references(session, scope, body["candidates"])
    matching.check_versions([*refs, *cands], expected=verifier.version)
    sims = matching.similarity(matching.pair_distances(refs, cands))
    return [{"reference": r.describe(), "candidate": c.describe(), "similarity": float(sims[i, j]),
             "status": "pass" if sims[i, j] >= verifier.threshold else "fail"}
            for i, r in enumerate(refs) for j, c in enumerate(cands)]
