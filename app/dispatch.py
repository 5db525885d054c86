"""Sending work to the workers: the Celery application, tasks by name, waits, chains and chords.

The API sends every task through this module and never imports ``tasks/``: it names a task
(``"inference.sdk"``), and ``celeryconfig`` routes the name to its queue. The worker side
(``tasks/``) registers its task functions on the same :data:`celery` application.

Every request-reply send carries ``expires`` (now + the wait): a worker that receives the message
later, after a redelivery or a restart, marks it revoked instead of running work nobody waits
for. The caller gets ``worker_timeout`` (503) when no answer comes in time.

Answers travel in one envelope: a task body wrapped with :func:`reported` returns
``{"result": ...}`` or ``{"error": {"kind", "detail"}}`` for an :class:`APIError`, and
:func:`unwrap` raises that same error in the API, so a 4xx decided on the worker reaches the client
unchanged. In a chain, a step receives its predecessor's result unwrapped, and an error skips
the remaining steps and comes out at the end. A task whose database (or other dependency) is down
answers that part's 503 code in the envelope, with a fixed detail, never the driver's text.

A part that is down answers 503 naming it within ``dependency_timeout_s``: ``result_store_unavailable``
when the result store (Redis, ``redis_url``) cannot take the answer, ``broker_unavailable`` when the
broker cannot take the task. The worker side keeps retrying its broker forever (celeryconfig).
"""
from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, TypeVar

import redis
from celery import Celery, Signature, chain, chord, group, signals
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from kombu.exceptions import OperationalError

from app import settings
from app.errors import DEPENDENCY_KINDS, ERRORS, APIError, as_unavailable, describe, unavailable, unavailable_when
from app.observability import request_id_var

log = logging.getLogger(__name__)

celery = Celery("facegate")
# Read now, not on first use: the configuration of a process is what its settings were at start.
celery.config_from_object("celeryconfig", force=True)

# The caller's Luna-Request-Id travels in the message headers, so the worker's log lines for a
# request carry the id its API log lines carry (tasks/ sets it before each task runs).
REQUEST_ID_HEADER = "luna_request_id"


@signals.before_task_publish.connect
def _send_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None and request_id_var.get() != "-":
        headers.setdefault(REQUEST_ID_HEADER, request_id_var.get())

F = TypeVar("F", bound=Callable[..., Any])
_ERROR = "error"
_RESULT = "result"
# What a broker that is down raises on the API side: kombu turns its transport's connection errors
# into OperationalError; sockets raise ConnectionError.
_BROKER_DOWN = (OperationalError, ConnectionError)
unavailable_when("broker_unavailable", OperationalError)


def _result_store_gave_up(exc: BaseException) -> bool:
    """Celery's result consumer reports a Redis that did not come back within its retry policy
    (celeryconfig) as a bare RuntimeError ("Retry limit exceeded ...") raised from the Redis error."""
    return isinstance(exc, RuntimeError) and isinstance(exc.__cause__, redis.RedisError)


# ---- the envelope ------------------------------------------------------------------------------
def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and (_ERROR in value or _RESULT in value)


def _received(value: Any) -> tuple[Any, dict[str, Any] | None]:
    """What a canvas step was handed, unwrapped: a chain step gets its predecessor's envelope, a
    chord's merge the list of its parts' envelopes. The second item is the first error among them."""
    if _is_envelope(value):
        return (None, value) if _ERROR in value else (value[_RESULT], None)
    if isinstance(value, list) and value and all(_is_envelope(v) for v in value):
        errors = [v for v in value if _ERROR in v]
        return (None, errors[0]) if errors else ([v[_RESULT] for v in value], None)
    return value, None


def reported(func: F) -> F:
    """Wrap a task body: its APIError becomes the error envelope, its return value the result one.

    Used under ``@celery.task`` (with ``bind=True`` the task itself comes first). A chain step
    gets its predecessor's result unwrapped as the first argument, a chord's merge the list of
    its parts' results; an error among them is passed on without running the step.
    """
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = 1 if args and hasattr(args[0], "request") and hasattr(args[0], "name") else 0
        if len(args) > bound:
            value, error = _received(args[bound])
            if error is not None:
                return error
            args = (*args[:bound], value, *args[bound + 1:])
        try:
            return {_RESULT: func(*args, **kwargs)}
        except APIError as exc:
            return _error_envelope(func.__name__, exc, exc.__cause__)
        except Exception as exc:
            down = as_unavailable(exc)
            if down is None:
                raise  # a crash: the task fails, the caller gets task_failed, this log the traceback
            return _error_envelope(func.__name__, down, exc)

    return wrapper  # type: ignore[return-value]


def _error_envelope(task: str, exc: APIError, cause: BaseException | None) -> dict[str, Any]:
    if exc.status >= 500:  # one line for the failure; the API logs its own when it answers
        log.warning("task %s answered %d %s (%s)", task, exc.error.code, exc.kind,
                    describe(cause) if cause is not None else exc.detail)
    detail = unavailable(exc.kind).detail if exc.kind in DEPENDENCY_KINDS else exc.detail
    return {_ERROR: {"kind": exc.kind, "detail": detail}}


def unwrap(answer: Any) -> Any:
    """The result inside an envelope, or the APIError it carries raised."""
    if not _is_envelope(answer):
        raise APIError("task_failed", "the task answered outside the envelope")
    if _ERROR in answer:
        kind = answer[_ERROR].get("kind")
        if kind not in ERRORS:  # a worker of another version: still the error shape, never a KeyError
            raise APIError("task_failed", "the task answered an unknown error")
        raise APIError(kind, answer[_ERROR]["detail"])
    return answer[_RESULT]


# ---- sending -----------------------------------------------------------------------------------
def task(name: str, *args: Any, **kwargs: Any) -> Signature:
    """A signature of the task ``name``; its queue comes from ``celeryconfig``'s routes."""
    return celery.signature(name, args=args, kwargs=kwargs)


def chain_of(*steps: Signature) -> chain:
    """Steps run one after another, each getting the previous one's result."""
    return chain(*steps)


def chord_of(parts: list[Signature], merge: Signature) -> chord:
    """``parts`` run in parallel, then ``merge`` gets the list of their results."""
    return chord(group(parts), merge)


def _expiring(sig: Signature, expires: datetime) -> None:
    # Every task of a canvas gets the deadline, not only the first: a later step delivered after
    # the caller gave up must be dropped as well.
    for inner in getattr(sig, "tasks", None) or ():
        _expiring(inner, expires)
    body = getattr(sig, "body", None) if isinstance(sig, chord) else None
    if body is not None:
        _expiring(body, expires)
    if "expires" not in sig.options:  # a step that states its own deadline keeps it
        sig.set(expires=expires)


def _wait_s(timeout: float | None) -> float:
    return settings.current().worker_wait_timeout_s if timeout is None else timeout


def send(sig: Signature, timeout: float | None = None) -> AsyncResult:
    """Enqueue ``sig`` (a task, chain or chord) to expire after ``timeout`` seconds (default: the
    ``worker_wait_timeout_s`` setting); 503 naming the part when the result store or the broker
    cannot take it."""
    _expiring(sig, datetime.now(timezone.utc) + timedelta(seconds=_wait_s(timeout)))
    # The answer will come through the result store: a task whose answer nobody can read is not
    # sent. One round trip, and the outage is named and answered at once instead of through
    # Celery's reconnect loop.
    try:
        celery.backend.client.ping()
    except redis.RedisError as exc:
        raise unavailable("result_store_unavailable") from exc
    try:
        return sig.apply_async()
    except RuntimeError as exc:
        if not _result_store_gave_up(exc):
            raise
        raise unavailable("result_store_unavailable") from exc
    except redis.RedisError as exc:  # a Redis broker's errors arrive as OperationalError (kombu)
        raise unavailable("result_store_unavailable") from exc
    except _BROKER_DOWN as exc:
        raise unavailable("broker_unavailable") from exc


def enqueue(sig: Signature) -> None:
    """Send background work nobody waits for (no deadline, no result-store check); a broker that
    is down raises its 503."""
    try:
        sig.apply_async()
    except _BROKER_DOWN as exc:
        raise unavailable("broker_unavailable") from exc


def wait(result: AsyncResult, timeout: float | None = None) -> Any:
    """The answer of a sent task (for a canvas: of its last task), unwrapped; 503 when none
    comes within ``timeout`` seconds, or when the result store goes away meanwhile."""
    timeout = _wait_s(timeout)
    try:
        value = result.get(timeout=timeout, propagate=False, interval=0.05)
    except CeleryTimeout:
        # Revoked for workers that hold it already; ``expires`` covers those that get it later.
        result.revoke()
        raise APIError("worker_timeout", f"task {result.id} got no answer within {timeout:g} s; "
                                         "are the workers running?") from None
    except RuntimeError as exc:
        if not _result_store_gave_up(exc):
            raise
        raise unavailable("result_store_unavailable") from exc
    except (redis.RedisError, *_BROKER_DOWN) as exc:
        raise unavailable("result_store_unavailable") from exc
    if result.failed():
        crash = value if isinstance(value, BaseException) else None
        raise APIError("task_failed", f"task {result.id} failed; the worker log has the details") from crash
    return unwrap(value)


def call(sig: Signature, timeout: float | None = None) -> Any:
    """Send ``sig`` and wait for its answer: the request-reply path of REST handlers."""
    return wait(send(sig, timeout), timeout)
