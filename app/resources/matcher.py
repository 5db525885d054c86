"""/matcher: 1:N matching of references against faces, or of descriptors against descriptors."""
from __future__ import annotations

from typing import Any

from flask import request

from app import settings
from app.auth import current_principal, public, require
from app.db import session_scope
from app.errors import APIError
from app.resources.blueprint import Blueprint
from app.schemas.matcher import (FaceMatchResultsSchema, MatcherStatusSchema, MatchFacesSchema, MatchRawSchema,
                                 RawMatchResultsSchema)
from app.services import changes, matching, workers
from tasks import matcher as tasks

blp = Blueprint("matcher", __name__, url_prefix="/matcher", description="Matching (1:N)")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def check_reference_permissions(items: list[dict[str, Any]]) -> None:
    """Each reference type may need its own permission (attributes: ``attribute: matching``)."""
    missing = matching.missing_permissions(items, current_principal().allowed)
    if missing:
        raise APIError("forbidden", f"token lacks {', '.join(missing)} for these references")


@blp.route("/faces", methods=["POST"])
@blp.arguments(MatchFacesSchema)
@blp.response(200, FaceMatchResultsSchema)
@require("face", "matching")
def match_faces(body: dict[str, Any]) -> dict[str, Any]:
    """References (faces, attributes, descriptors) against faces selected by filters, best first.

    Runs on a matcher worker: from its list cache when `list_id` is the only filter, otherwise
    filtered in SQL and streamed. Nothing deleted or detached before the request started is returned.
    """
    principal = current_principal()
    check_reference_permissions(body["references"])
    candidate_scope = principal.read_account_id(body["candidates"]["filters"].get("account_id"))
    with session_scope() as session:
        seq = changes.last_seq(session)  # the feed head the worker must have applied before searching
    payload = {"body": request.get_json(), "seq": seq, "account_id": _text(candidate_scope),
               "reference_account_id": _text(principal.read_account_id())}
    return {"results": tasks.call(tasks.match_faces, payload)}


@blp.route("/raw", methods=["POST"])
@blp.arguments(MatchRawSchema)
@blp.response(200, RawMatchResultsSchema)
@require("face", "matching")
def match_raw(body: dict[str, Any]) -> dict[str, Any]:
    """Descriptors against descriptors, both given in the request."""
    pairs = len(body["references"]) * len(body["candidates"])
    inline = pairs <= settings.current().matcher_inline_max
    return {"results": tasks.call(tasks.match_raw, {"body": request.get_json()}, inline=inline)}


@blp.route("/status", methods=["GET"])
@blp.response(200, MatcherStatusSchema)
@public
def status() -> dict[str, Any]:
    """State of the list cache of the matcher worker that answers (503 when none does)."""
    return workers.run_and_wait(tasks.status.s())[1]
