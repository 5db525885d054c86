"""From the outbox to subscribers: the relay, webhook deliveries and the websocket hub.

The relay (:func:`relay`, the ``notifications.relay`` task) reads the outbox after its cursor in
``seq`` order. For each row with callbacks it publishes the event on the Redis channel
:func:`channel` when a ``luna-ws-notification`` callback is among them, and writes one
:class:`CallbackDelivery` per ``http`` callback; the cursor moves in the same transaction as those
rows. One relay runs at a time (a Redis lock); the save step kicks it after each commit and beat
runs it every 30 s for what a kick missed.

* Never lost: a row is passed only when the transaction that moved the cursor past it committed;
  a relay that dies before that runs the row again.
* Never twice to one subscriber: a repeated delivery row is refused by its unique key, and a
  delivery marked ``delivered`` is never sent again; websocket messages carry the row's ``seq``,
  and the hub in each API process drops any ``seq`` it already passed on (one relay publishes in
  ``seq`` order).

A webhook is sent by ``notifications.deliver`` on the ``cpu`` queue: a 2xx answer marks it
delivered; anything else is retried with a doubling backoff up to ``callback_max_attempts``, each
failure logged, and the last one marks it ``failed``. Saving an event never waits for any of it.
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import redis
import requests
from sqlalchemy import func, select, update

from app import settings
from app.db import conflict_insert, redis_channel, redis_client, session_scope
from app.events.models import Outbox
from app.notifications.models import DELIVERED, FAILED, PENDING, CallbackDelivery, RelayCursor
from app.scope import Scope
from app.tasks import secrets
from app.tasks.notify import TARGET_SECRETS

log = logging.getLogger(__name__)

WS, HTTP = "luna-ws-notification", "http"
RELAY_CURSOR = "outbox"
RELAY_LOCK, RELAY_DIRTY = "facegate:relay:lock", "facegate:relay:dirty"
BATCH = 500
MAX_BACKOFF_S = 300.0
# A delivery a worker took but never finished (the worker died mid-send) is sent again this long
# after it was due; the send itself is bounded by callback_timeout_s.
STALE_AFTER_S = 60.0
# A retry's task may start a little before its recorded time (clocks of worker machines differ).
DUE_SLACK_S = 2.0


def channel() -> str:
    """Where the relay publishes events for the websocket hubs."""
    return redis_channel("events")


# ---- relay -------------------------------------------------------------------------------------
def relay() -> tuple[int, list[int]]:
    """Pass on every outbox row after the cursor; (rows passed, deliveries due to be sent).

    A call that finds the lock taken marks the outbox dirty and returns: the holder runs again
    before it lets go, so a row committed while it ran is never left for the next beat.
    """
    r = redis_client()
    r.set(RELAY_DIRTY, 1)
    lock = r.lock(RELAY_LOCK, timeout=120)
    passed, due = 0, []
    while lock.acquire(blocking=False):
        try:
            while True:
                r.delete(RELAY_DIRTY)
                n, new = _relay_batch(r)
                passed, due = passed + n, due + new
                if n < BATCH:
                    break
                lock.reacquire()  # a long backlog keeps the lock: a second relay would publish out of order
        finally:
            lock.release()
        if not r.exists(RELAY_DIRTY):
            break
    return passed, due + _stale_deliveries()


def _relay_batch(r: redis.Redis) -> tuple[int, list[int]]:
    with session_scope() as session:
        cursor = session.get(RelayCursor, RELAY_CURSOR)
        if cursor is None:
            cursor = RelayCursor(name=RELAY_CURSOR, seq=0)
            session.add(cursor)
        rows = list(session.scalars(select(Outbox).where(Outbox.seq > cursor.seq).order_by(Outbox.seq).limit(BATCH)))
        due: list[int] = []
        now = datetime.now(timezone.utc)
        for row in rows:
            callbacks = row.callbacks or []
            if any(c["type"] == WS for c in callbacks):
                # Before the commit: a relay that dies after publishing publishes the row again, and
                # the hubs drop the repeat by its seq; one that dies before never lost it.
                r.publish(channel(), json.dumps({"seq": row.seq, "account_id": str(row.account_id),
                                               "event": row.payload}))
            for n, callback in enumerate(callbacks):
                if callback["type"] != HTTP:
                    continue
                target = {k: v for k, v in callback.items() if k != "type"}  # filters went at save time
                once = conflict_insert(session, CallbackDelivery.__table__).on_conflict_do_nothing()
                inserted = session.scalar(once.values(
                    outbox_seq=row.seq, callback=n, account_id=row.account_id, event_id=row.event_id,
                    target=target, status=PENDING, attempts=0, next_attempt_time=now, create_time=now,
                ).returning(CallbackDelivery.delivery_id))
                if inserted is not None:
                    due.append(inserted)
        if rows:
            cursor.seq = rows[-1].seq
    return len(rows), due


def _stale_deliveries() -> list[int]:
    """Pending deliveries well past due: their task was lost (a kick never sent, a worker died)."""
    limit = datetime.now(timezone.utc) - timedelta(seconds=STALE_AFTER_S + settings.current().callback_timeout_s)
    with session_scope() as session:
        return list(session.scalars(select(CallbackDelivery.delivery_id).where(
            CallbackDelivery.status == PENDING, CallbackDelivery.next_attempt_time < limit)
            .order_by(CallbackDelivery.delivery_id).limit(BATCH)))


# ---- webhooks ----------------------------------------------------------------------------------
def backoff_s(attempts: int) -> float:
    """The wait after the ``attempts``-th failed try."""
    return min(MAX_BACKOFF_S, settings.current().callback_backoff_s * 2 ** max(0, attempts - 1))


def _take(delivery_id: int) -> tuple[dict[str, Any], Any, str] | None:
    """(target, payload, what it is about: an event id or ``task-<id>``) of a pending delivery that
    is due, leased (in one UPDATE, so two tasks for one delivery never both send) until its send
    can have ended."""
    now = datetime.now(timezone.utc)
    lease = now + timedelta(seconds=settings.current().callback_timeout_s)
    with session_scope() as session:
        taken = session.execute(
            update(CallbackDelivery)
            .where(CallbackDelivery.delivery_id == delivery_id, CallbackDelivery.status == PENDING,
                   CallbackDelivery.next_attempt_time <= now + timedelta(seconds=DUE_SLACK_S))
            .values(next_attempt_time=lease)
            .returning(CallbackDelivery.target, CallbackDelivery.outbox_seq, CallbackDelivery.event_id,
                       CallbackDelivery.task_id, CallbackDelivery.payload)).first()
        if taken is None:
            return None
        if taken.outbox_seq is None:  # a task's status change carries its own payload
            return dict(taken.target), taken.payload, f"task-{taken.task_id}"
        payload = session.scalar(select(Outbox.payload).where(Outbox.seq == taken.outbox_seq))
        return dict(taken.target), payload, str(taken.event_id)


def _send(target: Mapping[str, Any], payload: Any, subject: str, delivery_id: int) -> str | None:
    """None when the receiver took it (2xx), else what went wrong, in a few words."""
    headers = {"Content-Type": "application/json", "User-Agent": "facegate-callbacks",
               "Idempotency-Key": f"{subject}-{delivery_id}"}
    if not subject.startswith("task-"):
        headers["Luna-Event-Id"] = subject
    headers.update({h["name"]: h["value"] for h in target.get("headers") or ()})
    try:  # a task's secrets stay sealed on the row (app.tasks.secrets)
        target = secrets.opened(target, TARGET_SECRETS)
    except ValueError:
        return "secret does not decrypt"
    auth = target.get("auth")
    if target.get("bearer"):
        headers["Authorization"] = f"Bearer {target['bearer']}"
    timeout = target.get("timeout_s") or settings.current().callback_timeout_s  # a task's callback sets its own
    try:
        answer = requests.request(target.get("method") or "POST", target["url"], data=json.dumps(payload),
                                  headers=headers, timeout=timeout,
                                  auth=(auth["login"], auth["password"]) if auth else None, allow_redirects=False)
    except requests.Timeout:
        return "timeout"
    except requests.RequestException as exc:
        return f"connection failed ({type(exc).__name__})"
    return None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"


def deliver(delivery_id: int) -> float | None:
    """Try one webhook delivery; the seconds to wait before the next try, or None when done."""
    taken = _take(delivery_id)
    if taken is None:
        return None
    target, payload, subject = taken
    problem = _send(target, payload, subject, delivery_id)
    now = datetime.now(timezone.utc)
    with session_scope() as session:
        d = session.get(CallbackDelivery, delivery_id)
        d.attempts += 1
        d.last_result = problem or "delivered"
        if problem is None:
            d.status, d.delivery_time = DELIVERED, now
            return None
        give_up = d.attempts >= settings.current().callback_max_attempts
        log.warning("callback delivery %d of %s: %s (attempt %d%s)", delivery_id, subject, problem,
                    d.attempts, ", giving up" if give_up else "")
        if give_up:
            d.status = FAILED
            return None
        wait = backoff_s(d.attempts)
        d.next_attempt_time = now + timedelta(seconds=wait)
        return wait


def delivery_counts(scope: Scope) -> dict[str, int]:
    """Deliveries of the scope by status, and their failed attempts."""
    with session_scope() as session:
        query = select(CallbackDelivery.status, func.count(), func.sum(CallbackDelivery.attempts))
        if not scope.all_accounts:
            query = query.where(CallbackDelivery.account_id == scope.account_id)
        rows = session.execute(query.group_by(CallbackDelivery.status)).all()
    counts = {PENDING: 0, DELIVERED: 0, FAILED: 0, "failed_attempts": 0}
    for status, count, attempts in rows:
        counts[status] = count
        counts["failed_attempts"] += (attempts or 0) - (count if status == DELIVERED else 0)
    return counts


def reset_cursor() -> None:
    """Tests: start the relay at the outbox's end, so older rows are not relayed again."""
    with session_scope() as session:
        head = session.scalar(select(func.max(Outbox.seq))) or 0
        if session.get(RelayCursor, RELAY_CURSOR) is None:
            session.add(RelayCursor(name=RELAY_CURSOR, seq=head))
        else:
            session.execute(update(RelayCursor).where(RelayCursor.name == RELAY_CURSOR).values(seq=head))


# ---- websocket hub (one per API process) ---------------------------------------------------------
@dataclass(eq=False)
class Subscriber:
    """One websocket: whose events it may see, what it asked for, its own bounded queue."""

    scope: Scope
    filters: Mapping[str, Any]
    queue: queue.Queue = field(default_factory=lambda: queue.Queue(settings.current().ws_queue_max))
    too_slow: bool = False

    def wants(self, account_id: str, event: Mapping[str, Any]) -> bool:
        f = self.filters
        if not self.scope.allows(account_id):
            return False
        if f.get("account_id") and str(f["account_id"]) != account_id:
            return False
        if f.get("handler_ids") and event.get("handler_id") not in {str(i) for i in f["handler_ids"]}:
            return False
        if f.get("sources") and event.get("source") not in f["sources"]:
            return False
        if f.get("tags") and not set(f["tags"]) & set(event.get("tags") or ()):
            return False
        similarity = event.get("top_similarity")
        if "similarity__gte" in f and (similarity is None or similarity < f["similarity__gte"]):
            return False
        return "similarity__lte" not in f or (similarity is not None and similarity <= f["similarity__lte"])

    def offer(self, seq: int, text: str) -> None:
        try:
            self.queue.put_nowait((seq, text))
        except queue.Full:
            self.too_slow = True  # its socket loop closes it; the others are not held up


def message(seq: int, event: Any) -> str:
    """What a websocket subscriber receives for one outbox row."""
    return json.dumps({"seq": seq, "event": event})


def missed(subscriber: Subscriber, after: int, page: int = BATCH) -> Iterator[tuple[int, str]]:
    """The websocket messages of outbox rows after ``after`` that ``subscriber`` would have got:
    what a subscriber that reconnects with the last ``seq`` it saw asks for, read from the outbox
    (the events' own record), so nothing published while it was away is lost to it."""
    while True:
        with session_scope() as session:
            query = select(Outbox.seq, Outbox.account_id, Outbox.payload, Outbox.callbacks).where(
                Outbox.seq > after, Outbox.callbacks.isnot(None)).order_by(Outbox.seq).limit(page)
            if not subscriber.scope.all_accounts:
                query = query.where(Outbox.account_id == subscriber.scope.account_id)
            rows = session.execute(query).all()
        for seq, account_id, payload, callbacks in rows:
            if any(c["type"] == WS for c in callbacks) and subscriber.wants(str(account_id), payload or {}):
                yield seq, message(seq, payload)
        if len(rows) < page:
            return
        after = rows[-1].seq


class Hub:
    """Reads :func:`channel` on one thread and fans each event out to this process's subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[Subscriber] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_seq = 0
        self.ready = threading.Event()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.add(subscriber)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ws-hub", daemon=True)
                self._thread.start()
        self.ready.wait(settings.current().dependency_timeout_s)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def dispatch(self, data: bytes | str) -> None:
        published = json.loads(data)
        seq = published["seq"]
        if seq <= self.last_seq:
            return  # a relay that restarted published it again
        self.last_seq = seq
        event = published["event"] or {}
        text = message(seq, event)
        with self._lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            if subscriber.wants(published["account_id"], event):
                subscriber.offer(seq, text)

    def _run(self) -> None:
        pause = 0.5
        while True:
            try:
                pubsub = redis_client().pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(channel())
                self.ready.set()
                pause = 0.5
                while True:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message["type"] == "message":
                        self.dispatch(message["data"])
            except redis.RedisError as exc:
                self.ready.clear()
                log.warning("websocket hub lost Redis (%s); reconnecting in %.1f s", type(exc).__name__, pause)
                time.sleep(pause)
                pause = min(10.0, pause * 2)


hub = Hub()
