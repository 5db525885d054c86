"""Verifiers: stored 1:1 verification policies, and verifications under them.

A verification compares every reference with every candidate (faces, temporary attributes or
descriptors given inline, resolved by :mod:`app.services.matching`) and reports the similarity and
whether it reaches the verifier's threshold. References from images are added by the inference
REST part through ``matching.register_reference("image", ...)``.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Mapping

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.errors import APIError
from app.models import Verifier
from app.services import matching


def create_verifier(session: Session, account_id: uuid.UUID, **fields_: Any) -> Verifier:
    verifier = Verifier(account_id=account_id, **fields_)
    session.add(verifier)
    session.flush()
    return verifier


def get_verifier(session: Session, account_id: uuid.UUID | None, verifier_id: uuid.UUID) -> Verifier:
    """The verifier, if ``account_id`` owns it (None: any account's)."""
    verifier = session.get(Verifier, verifier_id)
    if verifier is None or (account_id is not None and verifier.account_id != account_id):
        raise APIError("verifier_not_found", f"verifier {verifier_id} not found")
    return verifier


def _filtered(query: Select[Any], account_id: uuid.UUID | None, f: Mapping[str, Any]) -> Select[Any]:
    if account_id is not None:
        query = query.where(Verifier.account_id == account_id)
    if f.get("description"):
        query = query.where(Verifier.description.contains(f["description"], autoescape=True))
    return query


def list_verifiers(session: Session, account_id: uuid.UUID | None, filters: Mapping[str, Any],
                   page: int, page_size: int) -> list[Verifier]:
    query = (_filtered(select(Verifier), account_id, filters).order_by(Verifier.verifier_id)
             .offset((page - 1) * page_size).limit(page_size))
    return list(session.scalars(query))


def update_verifier(session: Session, account_id: uuid.UUID, verifier_id: uuid.UUID,
                    changes: Mapping[str, Any]) -> Verifier:
    verifier = get_verifier(session, account_id, verifier_id)
    for key, value in changes.items():
        setattr(verifier, key, value)
    verifier.last_update_time = datetime.now(timezone.utc)
    session.flush()
    return verifier


def delete_verifier(session: Session, account_id: uuid.UUID, verifier_id: uuid.UUID) -> None:
    session.delete(get_verifier(session, account_id, verifier_id))


def verify(session: Session, account_id: uuid.UUID | None, verifier_id: uuid.UUID,
           body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every (reference, candidate) pair with its similarity and pass/fail, reference-major."""
    verifier = get_verifier(session, account_id, verifier_id)
    refs = matching.resolve_references(session, account_id, body["references"])
    cands = matching.resolve_references(session, account_id, body["candidates"])
    matching.check_versions([*refs, *cands], expected=verifier.version)
    sims = matching.similarity(matching.pair_distances(refs, cands))
    return [{"reference": r.describe(), "candidate": c.describe(), "similarity": float(sims[i, j]),
             "status": "pass" if sims[i, j] >= verifier.threshold else "fail"}
            for i, r in enumerate(refs) for j, c in enumerate(cands)]
