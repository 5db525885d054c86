"""/matcher: 1:N matching of references against faces, or of descriptors against descriptors."""
from __future__ import annotations

from typing import Any

from app import dispatch, settings
from app.auth import current_principal, require
from app.blueprint import Blueprint
from app.db import session_scope
from app.errors import APIError
from app.faces import changes
from app.matching import service as matching
from app.matching.schemas import (
    FaceMatchResultsSchema,
    MatcherStatusSchema,
    MatchFacesSchema,
    MatchRawSchema,
    RawMatchResultsSchema,
)

blp = Blueprint("matcher", __name__, url_prefix="/matcher", description="Matching (1:N)")


def check_reference_permissions(items: list[dict[str, Any]]) -> None:
    """Each reference type may need its own permission (attributes: ``attribute: matching``)."""
    missing = matching.missing_permissions(items, current_principal().allowed)
    if missing:
        raise APIError("forbidden", f"token lacks {', '.join(missing)} for these references")


def inline(pairs: int) -> bool:
    """Whether a comparison of ``pairs`` descriptor pairs is cheap enough to run in the API process."""
    return pairs <= settings.current().matcher_inline_max


@blp.route("/faces", methods=["POST"])
@blp.arguments(MatchFacesSchema)
@blp.response(200, FaceMatchResultsSchema)
@require("face", "matching")
def match_faces(body: dict[str, Any]) -> dict[str, Any]:
    """References (faces, events, attributes, descriptors) against faces or events selected by
    filters, best first.

    Runs on a matcher worker: faces from its list cache when `list_id` is the only filter, otherwise
    filtered in SQL and streamed. Nothing deleted or detached before the request started is returned.
    """
    principal = current_principal()
    check_reference_permissions(body["references"])
    resource, action = matching.CANDIDATE_SOURCES[body["candidates"]["source"]].permission
    if not principal.allowed(resource, action):
        raise APIError("forbidden", f"token lacks '{action}' permission on '{resource}' for these candidates")
    candidates = principal.read_scope(body["candidates"]["filters"].pop("account_id", None))
    with session_scope() as session:
        seq = changes.last_seq(session)  # the feed head the worker must have applied before searching
    sig = dispatch.task("matcher.match_faces", body, principal.read_scope().wire(), candidates.wire(), seq)
    return {"results": dispatch.call(sig)}


@blp.route("/raw", methods=["POST"])
@blp.arguments(MatchRawSchema)
@blp.response(200, RawMatchResultsSchema)
@require("face", "matching")
def match_raw(body: dict[str, Any]) -> dict[str, Any]:
    """Descriptors against descriptors, both given in the request."""
    if inline(len(body["references"]) * len(body["candidates"])):
        return {"results": matching.match_raw_request(body)}
    return {"results": dispatch.call(dispatch.task("matcher.match_raw", body))}


@blp.route("/status", methods=["GET"])
@blp.response(200, MatcherStatusSchema)
def status() -> dict[str, Any]:
    """State of the list cache of the matcher worker that answers (503 when none does). Admin
    accounts only: the counts cover every account's lists."""
    if current_principal().account_type != "admin":
        raise APIError("account_type_forbidden", "only admin accounts may read the matcher's state")
    return dispatch.call(dispatch.task("matcher.status"))


BLUEPRINTS = [blp]
