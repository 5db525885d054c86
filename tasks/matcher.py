"""Matcher tasks (``matcher.*``, routed to the ``matcher`` queue so matcher workers scale apart).

A worker consuming ``matcher`` starts its list cache as soon as it starts (each prefork child
loads its own; thread and solo pools load once in the worker process) and answers from the
database until the cache is ready. Task arguments are the request as the API validated it, the
caller's scopes (``Scope.wire``) and the change-feed head read when the request started.
"""
from __future__ import annotations

import socket
import uuid
from typing import Any

from celery import signals

from app.db import session_scope
from app.dispatch import reported
from app.faces import changes
from app.handlers import processing
from app.matching import cache as matcher_cache
from app.matching import service as matching
from app.scope import Scope
from app.verifiers import service as verifiers
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


@celery.task(name="matcher.match_faces", acks_late=True)
@reported
def match_faces(body: dict[str, Any], references_scope: str, candidates_scope: str, seq: int) -> list[dict[str, Any]]:
    """A validated ``MatchFacesSchema`` body -> results per reference."""
    matcher_cache.follower(start=True)
    with session_scope() as session:
        return matching.match_faces_request(session, body, Scope.from_wire(references_scope),
                                            Scope.from_wire(candidates_scope), seq)


@celery.task(name="matcher.match_raw", acks_late=True)
@reported
def match_raw(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A validated ``MatchRawSchema`` body -> results per reference descriptor."""
    return matching.match_raw_request(body)


@celery.task(name="matcher.verify", acks_late=True)
@reported
def verify(verifier_id: str, scope: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """A validated ``VerificationSchema`` body -> one verification per (reference, candidate) pair."""
    with session_scope() as session:
        return verifiers.verify(session, Scope.from_wire(scope), uuid.UUID(str(verifier_id)), body)


@celery.task(name="matcher.handler_match", acks_late=True)
@reported
def handler_match(found: dict[str, Any], scope: str, match_policy: list[dict[str, Any]]) -> dict[str, Any]:
    """The matcher step of ``POST /handlers/{id}/events``: each face against each match's candidates."""
    matcher_cache.follower(start=True)
    with session_scope() as session:
        return processing.match(session, Scope.from_wire(scope), found, match_policy, changes.last_seq(session))


@celery.task(name="matcher.verify_images", acks_late=True)
@reported
def verify_images(answer: dict[str, Any], verifier_id: str, scope: str,
                  candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """After ``inference.sdk`` on the images: each image's largest face against the candidates."""
    with session_scope() as session:
        return verifiers.verify_images(session, Scope.from_wire(scope), uuid.UUID(verifier_id), answer, candidates)


@celery.task(name="matcher.status", acks_late=True)
@reported
def status() -> dict[str, Any]:
    """The answering worker's cache state and the feed head it is measured against."""
    follower = matcher_cache.follower(start=True)
    with session_scope() as session:
        head = changes.last_seq(session)
    return {"worker": socket.gethostname(), "feed_head": head, **follower.status()}
