"""REST -> Celery -> worker round trips, with the request id carried into the task."""
from __future__ import annotations

import uuid

import pytest

from tests.conftest import bearer


def test_ping_through_worker(client, account, celery_worker):
    token = account.token({"task": ["creation"]})
    rid = f"1700000000,{uuid.uuid4()}"
    r = client.post("/system/ping", headers={**bearer(token), "Luna-Request-Id": rid})
    assert r.status_code == 200, r.json
    assert r.json["result"]["pong"] is True
    assert r.json["result"]["request_id"] == rid  # the worker logged under the caller's request id
    from tasks import celery

    assert celery.AsyncResult(r.json["task_id"]).state == "SUCCESS"


def test_ping_needs_task_creation(client, account):
    token = account.token({"task": ["view"]})
    assert client.post("/system/ping", headers=bearer(token)).status_code == 403


def test_no_worker_answers_503(client, account, settings_override):
    # Route to a queue no worker consumes, so the wait runs out exactly as with all workers down.
    from app import dispatch
    from app.errors import APIError

    settings_override(worker_wait_timeout_s=0.5)
    with pytest.raises(APIError) as exc:
        dispatch.call(dispatch.task("system.ping").set(queue="nobody-listens"))
    assert exc.value.status == 503 and exc.value.error.code == 13001


def test_routing_lives_in_celeryconfig():
    from tasks import celery

    router = celery.amqp.router
    assert router.route({}, "inference.detect")["queue"].name == "gpu"
    assert router.route({}, "matcher.search")["queue"].name == "matcher"
    assert router.route({}, "system.ping")["queue"].name == "cpu"
    conf = celery.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1
    # Redis broker: a dead worker's tasks are swept back within a minute; live ones renew a lease.
    opts = conf.broker_transport_options
    assert opts["visibility_timeout"] + opts["unacked_restore_interval"] <= 60
    assert opts["unacked_restore_throttle"] == 1 and opts["health_check_interval"] and opts["socket_keepalive"]
    import celeryconfig

    assert celeryconfig.LEASE_RENEW_S <= opts["visibility_timeout"] / 3
    # A worker outlives broker and result backend hiccups instead of exiting.
    assert conf.broker_connection_retry and conf.broker_connection_max_retries is None
    assert conf.result_backend_always_retry
    assert conf.worker_send_task_events and conf.task_send_sent_event and conf.task_track_started
