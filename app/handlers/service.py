"""Handlers: stored processing policies, refused at creation when events could not follow them.

Whatever would fail for every event of a handler is refused when the handler is written (or when
the validator resource is asked), not when the first image arrives: policies that contradict each
other (400 ``policies_conflict``), estimators the configuration disables (403
``estimator_disabled``) and lists the account does not have (404 ``list_not_found``).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any, Iterator, Mapping

from sqlalchemy.orm import Session

from app import settings
from app.errors import APIError
from app.faces import service as faces
from app.filters import Filterable, conditions
from app.handlers.models import DYNAMIC, Handler
from app.handlers.schemas import PoliciesSchema
from app.pagination import paginate
from app.scope import Scope, get_or_404, scoped
from inference import analysis

# Policy flags by the /sdk option whose estimators they need (inference.analysis.NEEDS).
_OPTION_OF_FLAG = {
    ("detect_policy", "detect_face"): "detect_face",
    ("detect_policy", "detect_body"): "detect_body",
    **{("detect_policy", option): option for option in analysis.FACE_ESTIMATIONS},
    ("extract_policy", "extract_face_descriptor"): "extract_descriptor",
    ("extract_policy", "extract_basic_attributes"): "estimate_basic_attributes",
}
_NEEDS_HEAD_POSE = ("yaw_threshold", "pitch_threshold", "roll_threshold")


def _conflict(detail: str) -> APIError:
    return APIError("policies_conflict", detail)


def _filters(policies: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every result filter of the policies, with where it sits."""
    for i, link in enumerate(policies["storage_policy"]["face_policy"]["link_to_lists_policy"]):
        yield f"storage_policy.face_policy.link_to_lists_policy.{i}.filters", link.get("filters") or {}
    for i, tag in enumerate(policies["conditional_tags_policy"]):
        yield f"conditional_tags_policy.{i}.filters", tag.get("filters") or {}
    for i, callback in enumerate(policies["callbacks"]):
        yield f"callbacks.{i}.filters", callback.get("filters") or {}


def _check_consistency(policies: Mapping[str, Any]) -> None:
    detect, extract = policies["detect_policy"], policies["extract_policy"]
    storage = policies["storage_policy"]
    if not detect["detect_face"] and not detect["detect_body"]:
        raise _conflict("detect_policy: set detect_face, detect_body or both")
    if not detect["detect_face"]:
        asked = [f"detect_policy.{name}" for name in analysis.FACE_ESTIMATIONS if detect.get(name)]
        asked += [f"extract_policy.{name}" for name in ("extract_face_descriptor", "extract_basic_attributes")
                  if extract[name]]
        asked += ["storage_policy.face_policy.store_face"] if storage["face_policy"]["store_face"] else []
        if asked:
            raise _conflict(f"needs detect_policy.detect_face: {', '.join(asked)}")
    for name in _NEEDS_HEAD_POSE:
        if name in detect and not detect["estimate_head_pose"]:
            raise _conflict(f"detect_policy.{name} needs detect_policy.estimate_head_pose")
    if "min_quality" in detect and not detect["estimate_quality"]:
        raise _conflict("detect_policy.min_quality needs detect_policy.estimate_quality")
    labels = [match["label"] for match in policies["match_policy"]]
    if labels and not extract["extract_face_descriptor"]:
        raise _conflict("match_policy needs extract_policy.extract_face_descriptor")
    if len(set(labels)) < len(labels):
        raise _conflict("match_policy: labels must be unique")
    attribute = storage["attribute_policy"]
    if attribute["store_attribute"] and not (extract["extract_face_descriptor"] or extract["extract_basic_attributes"]):
        raise _conflict("storage_policy.attribute_policy.store_attribute needs extract_policy to extract something")
    if storage["face_policy"]["link_to_lists_policy"] and not storage["face_policy"]["store_face"]:
        raise _conflict("storage_policy.face_policy.link_to_lists_policy needs store_face")
    has_basic = detect["estimate_basic_attributes"] or extract["extract_basic_attributes"]
    for where, f in _filters(policies):
        if ("label" in f or "similarity__gte" in f or "similarity__lte" in f) and not labels:
            raise _conflict(f"{where}: similarity and label filters need a match_policy")
        if "label" in f and f["label"] not in labels:
            raise _conflict(f"{where}.label: no match labelled {f['label']!r}")
        if ("age__gte" in f or "age__lt" in f or "gender" in f) and not has_basic:
            raise _conflict(f"{where}: age and gender filters need estimate_basic_attributes or "
                            "extract_basic_attributes")


def _enabled(name: str) -> bool:
    """Whether the configuration lets the estimator ``name`` load (as the gpu workers read it)."""
    s = settings.current()
    flag = getattr(s, f"enable_{name}")
    return s.enable_all_estimators_by_default if flag is None else bool(flag)


def _check_estimators(policies: Mapping[str, Any]) -> None:
    for (policy, flag), option in _OPTION_OF_FLAG.items():
        if policies[policy].get(flag):
            for name in analysis.NEEDS[option]:
                if not _enabled(name):
                    raise APIError("estimator_disabled",
                                   f"estimator {name} is disabled by configuration (needed by {policy}.{flag})")


def _list_ids(policies: Mapping[str, Any]) -> list[uuid.UUID]:
    ids = [m["candidates"]["list_id"] for m in policies["match_policy"] if "list_id" in m["candidates"]]
    ids += [link["list_id"] for link in policies["storage_policy"]["face_policy"]["link_to_lists_policy"]]
    return [i if isinstance(i, uuid.UUID) else uuid.UUID(str(i)) for i in ids]


def check_policies(session: Session, scope: Scope, policies: Mapping[str, Any]) -> None:
    """Refuse loaded policies that no event could follow (see the module's docstring)."""
    _check_consistency(policies)
    _check_estimators(policies)
    faces.own_lists(session, scope, _list_ids(policies))


def _stored_policies(session: Session, scope: Scope, handler_type: str,
                     policies: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a handler keeps: checked policies as JSON, or nothing for a dynamic handler."""
    if handler_type == DYNAMIC:
        if policies is not None:
            raise _conflict("a dynamic handler takes its policies with each request, not here")
        return None
    loaded = PoliciesSchema().load({}) if policies is None else policies
    check_policies(session, scope, loaded)
    return PoliciesSchema().dump(loaded)


def create_handler(session: Session, scope: Scope, description: str, handler_type: str,
                   policies: Mapping[str, Any] | None = None) -> Handler:
    handler = Handler(account_id=scope.owner, description=description, handler_type=handler_type,
                      policies=_stored_policies(session, scope, handler_type, policies))
    session.add(handler)
    session.flush()
    return handler


FILTERS = Filterable(equal={"handler_type": Handler.handler_type}, contains={"description": Handler.description})


def list_handlers(session: Session, scope: Scope, filters: Mapping[str, Any],
                  page: int, page_size: int) -> list[Handler]:
    query = scoped(Handler, scope).where(*conditions(FILTERS, filters)).order_by(Handler.handler_id)
    return paginate(session, query, page, page_size)


def _changed(handler: Handler) -> None:
    handler.version += 1
    handler.last_update_time = datetime.now(timezone.utc)


def replace_handler(session: Session, scope: Scope, handler_id: uuid.UUID, description: str, handler_type: str,
                    policies: Mapping[str, Any] | None = None) -> Handler:
    handler = get_or_404(session, Handler, handler_id, scope)
    handler.policies = _stored_policies(session, scope, handler_type, policies)
    handler.description, handler.handler_type = description, handler_type
    _changed(handler)
    session.flush()
    return handler


def update_handler(session: Session, scope: Scope, handler_id: uuid.UUID, changes: Mapping[str, Any]) -> Handler:
    """Description and policies as given; an empty change leaves the version as it is."""
    handler = get_or_404(session, Handler, handler_id, scope)
    if not changes:
        return handler
    if "policies" in changes:
        handler.policies = _stored_policies(session, scope, handler.handler_type, changes["policies"])
    if "description" in changes:
        handler.description = changes["description"]
    _changed(handler)
    session.flush()
    return handler


def delete_handler(session: Session, scope: Scope, handler_id: uuid.UUID) -> None:
    session.delete(get_or_404(session, Handler, handler_id, scope))
