"""Matcher tasks (``matcher.*``, routed to the ``matcher`` queue so matcher workers scale apart).

A worker consuming ``matcher`` starts its list cache as soon as it starts (each prefork child
loads its own; thread and solo pools load once in the worker process) and answers from the
database until the cache is ready. Task payloads carry the request JSON as the API received and
validated it, the caller's account scopes and the change-feed head read when the request started.
"""
from __future__ import annotations

import socket
import uuid
from typing import Any

from celery import Task, signals
from marshmallow import ValidationError

from app.db import session_scope
from app.errors import APIError
from app.schemas.matcher import MatchFacesSchema, MatchRawSchema
from app.schemas.verifiers import VerificationSchema
from app.services import changes, matcher_cache, matching, verifiers, workers
from tasks import celery

QUEUE = "matcher"


def consumes_matcher_queue() -> bool:
    selected = celery.amqp.queues.consume_from
    return not selected or QUEUE in selected


@signals.worker_init.connect
def _start_cache(sender: Any = None, **_: Any) -> None:
    pool = getattr(sender, "pool_cls", "")
    name = pool if isinstance(pool, str) else f"{pool.__module__}.{pool.__name__}"
    if "prefork" not in name and "processes" not in name and consumes_matcher_queue():
        matcher_cache.follower(start=True)  # tasks run in this process


@signals.worker_process_init.connect
def _start_cache_in_child(**_: Any) -> None:
    if consumes_matcher_queue():
        matcher_cache.reset()  # never inherit a parent's threads or half-loaded cache
        matcher_cache.follower(start=True)


def _scope(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def _load(schema: type, body: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema().load(body)
    except ValidationError as exc:  # settings may differ between API and worker for a moment
        raise APIError("validation", str(exc.messages)) from None


@celery.task(name="matcher.match_faces", acks_late=True)
def match_faces(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"body", "reference_account_id", "account_id", "seq"}`` -> results per reference."""
    matcher_cache.follower(start=True)

    def run() -> list[dict[str, Any]]:
        body = _load(MatchFacesSchema, payload["body"])
        filters = dict(body["candidates"]["filters"])
        filters.pop("account_id", None)  # the API turned it into the account scope
        with session_scope() as session:
            refs = matching.resolve_references(session, _scope(payload["reference_account_id"]), body["references"])
            return matching.match(session, _scope(payload["account_id"]), refs, body["candidates"]["source"],
                                  filters, body["limit"], body["threshold"], payload["seq"])

    return matching.report(run)


@celery.task(name="matcher.match_raw", acks_late=True)
def match_raw(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"body"}`` -> results per reference descriptor."""

    def run() -> list[dict[str, Any]]:
        body = _load(MatchRawSchema, payload["body"])
        with session_scope() as session:
            refs, cands = (matching.resolve_references(session, None, [{**d, "type": "descriptor"}
                                                                        for d in body[side]])
                           for side in ("references", "candidates"))
        return matching.match_raw(refs, cands, body["limit"], body["threshold"])

    return matching.report(run)


@celery.task(name="matcher.verify", acks_late=True)
def verify(payload: dict[str, Any]) -> dict[str, Any]:
    """``{"verifier_id", "account_id", "body"}`` -> one verification per (reference, candidate) pair."""

    def run() -> list[dict[str, Any]]:
        body = _load(VerificationSchema, payload["body"])
        with session_scope() as session:
            return verifiers.verify(session, _scope(payload["account_id"]), uuid.UUID(payload["verifier_id"]), body)

    return matching.report(run)


@celery.task(name="matcher.status", acks_late=True)
def status() -> dict[str, Any]:
    """The answering worker's cache state and the feed head it is measured against."""
    follower = matcher_cache.follower(start=True)
    with session_scope() as session:
        head = changes.last_seq(session)
    return {"worker": socket.gethostname(), "feed_head": head, **follower.status()}


def call(task: Task, payload: dict[str, Any], inline: bool = False) -> Any:
    """Run a matcher task for a REST call (in this process when ``inline``) and return its result,
    raising the APIError it reported."""
    value = task(payload) if inline else workers.run_and_wait(task.s(payload))[1]
    return matching.unwrap(value)
