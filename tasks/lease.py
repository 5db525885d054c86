"""Lease renewal for the Redis broker: live workers' tasks are never redelivered while they run.

kombu keeps a delivered message in its ``unacked`` hash, scored in ``unacked_index`` by delivery
time, until the worker acknowledges it; every worker's sweep puts entries older than the broker's
``visibility_timeout`` back on their queue (``celeryconfig``). A short timeout brings a dead
worker's tasks back in seconds, and this renewal keeps it from redelivering the tasks of workers
that are alive, however long they run.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import bootsteps, signals

from celeryconfig import LEASE_RENEW_S, VISIBILITY_TIMEOUT_S

_log = logging.getLogger("facegate.delivery")


# --------------------------------------------------------------
# A consumer step (added to every worker by the ``worker_init`` signal) whose thread bumps, every
# LEASE_RENEW_S, the ``unacked_index`` score of each message this worker holds (reserved, waiting
# for an ETA or running): ``ZADD XX`` only touches entries still there, so a message that a sweep
# already gave back is never revived. When the worker dies or shuts down the renewals stop and the
# sweep of any other (or the restarted) worker requeues its messages after visibility_timeout.
#
# Broker hiccups (tests/platform/test_broker_hiccup.py): after a lost connection the worker goes on
# with a new channel while tasks received on the old one still run. The lease thread has a broker
# connection of its own, so it goes on renewing those too (retrying every half second while Redis
# is away), and their acks go through it: kombu 5.7.0 would raise AttributeError from the closed
# transport there, and when giving held messages back on close, which kills the worker. An outage
# shorter than visibility_timeout thus neither kills nor duplicates anything; after a longer one
# the first sweep may requeue tasks that were running (they are idempotent).

def _held_delivery_tags(qos: Any) -> list[str]:
    delivered = getattr(qos, "_delivered", None) or {}
    for _ in range(3):
        try:
            return list(delivered)
        except RuntimeError:  # changed size while copied: the consumer thread acked or received
            continue
    return []


class _Lease:
    """One worker's held messages (the QoS of its task channels, current and earlier) and the
    broker connection that renews and, for closed channels, settles them."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.held: list[Any] = []
        self._connection: Any = None
        self._channel: Any = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _call(self, fn: Any) -> Any:
        with self._lock:
            try:
                if self._channel is None:
                    self._connection = self.app.connection_for_write()
                    self._channel = self._connection.default_channel
                with self._channel.conn_or_acquire() as client:
                    return fn(self._channel, client)
            except Exception:
                connection, self._connection, self._channel = self._connection, None, None
                if connection is not None:
                    try:
                        connection.release()
                    except Exception:
                        pass
                raise

    def renew(self) -> int:
        """Fresh scores for every message still held; the number renewed."""
        tags = [tag for qos in list(self.held) for tag in _held_delivery_tags(qos)]
        if not tags:
            return 0
        now = time.time()
        return int(self._call(lambda ch, client: client.zadd(
            ch.unacked_index_key, {tag: now for tag in tags}, xx=True, ch=True)))

    def settle(self, tag: str, requeue: bool) -> None:
        """Ack (or requeue) a message received on a channel that a reconnect closed."""
        if requeue:
            self._call(lambda ch, client: ch.qos.restore_by_tag(tag, client=client, leftmost=True))
        else:
            self._call(lambda ch, client: client.pipeline().zrem(ch.unacked_index_key, tag)
                       .hdel(ch.unacked_key, tag).execute())

    def track(self, channel: Any) -> None:
        # Giving held messages back is the sweep's job: kombu's give-back on close would requeue
        # tasks still running here after a broker blip (and fails when Redis is gone, see above).
        channel.do_restore = False
        qos = channel.qos
        original_ack, original_reject = qos.ack, qos.reject

        def settle(tag: str, requeue: bool, original: Any, *args: Any) -> Any:
            if not qos.channel.closed:
                return original(tag, *args)
            try:
                self.settle(tag, requeue)
            except Exception as exc:  # broker still away: the sweep gives the message back later
                _log.warning("could not settle message %s after a reconnect (%r); it goes back on "
                             "its queue after visibility_timeout", tag, exc)
            qos._delivered.pop(tag, None)
            return None

        qos.ack = lambda tag: settle(tag, False, original_ack)
        qos.reject = lambda tag, requeue=False: settle(tag, requeue, original_reject, requeue)
        self.held = [q for q in self.held if _held_delivery_tags(q)] + [qos]

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="lease-renewal", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        wait = LEASE_RENEW_S
        while not self._stop.wait(wait):
            try:
                self.renew()
                wait = LEASE_RENEW_S
            except Exception as exc:  # broker away: try again soon, to be back before any sweep
                if wait == LEASE_RENEW_S:
                    _log.warning("lease renewal failed, retrying every 0.5 s: %r", exc)
                wait = 0.5


class _LeaseRenewal(bootsteps.StartStopStep):
    requires = ("celery.worker.consumer.tasks:Tasks",)
    label = "lease renewal"

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.lease: _Lease | None = None

    def start(self, c: Any) -> None:  # at start and after every reconnect
        if c.connection is None or c.connection.transport.driver_type != "redis":
            return
        if self.lease is None:
            self.lease = _Lease(c.app)
        self.lease.track(c.task_consumer.channel)
        try:
            renewed = self.lease.renew()
        except Exception as exc:
            _log.warning("lease renewal failed: %r", exc)
        else:
            _log.info("lease renewal every %g s (visibility timeout %s s); %d held messages renewed",
                      LEASE_RENEW_S, VISIBILITY_TIMEOUT_S, renewed)
        self.lease.start()

    def shutdown(self, c: Any) -> None:
        if self.lease is not None:
            self.lease.stop()


@signals.worker_init.connect(weak=False)
def _add_lease_renewal(sender: Any = None, **_: Any) -> None:
    sender.app.steps["consumer"].add(_LeaseRenewal)
