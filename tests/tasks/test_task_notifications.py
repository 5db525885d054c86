"""Callbacks on task status changes: a real HTTP receiver on loopback gets the task's (and, when
asked, its subtasks') changes, filtered by status, with the callback's headers and credentials;
the policy's secrets never come back through the API; Flower's view of a running part."""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from celery.result import AsyncResult
from sqlalchemy import select

from app.db import session_scope
from app.notifications.models import CallbackDelivery
from app.tasks import runner
from app.tasks.models import Task
from tests.conftest import Account
from tests.tasks.test_cli import KEY_1
from tests.tasks.test_framework import wait_status


class Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, dict[str, str], Any]] = []  # (path, headers, body)

    def do_POST(self) -> None:  # noqa: N802 - the http.server interface
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Receiver.received.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _hook(base: str) -> str:
    """A receiver path of one test's own, so tests never see each other's callbacks."""
    return f"{base}/{uuid.uuid4().hex}"


def _received(url: str, count: int, timeout: float = 30.0) -> list[tuple[dict[str, str], Any]]:
    path = "/" + url.split("/", 3)[3]
    deadline = time.monotonic() + timeout
    while True:
        got = [(h, b) for p, h, b in list(Receiver.received) if p == path]
        if len(got) >= count or time.monotonic() > deadline:
            time.sleep(0.5)  # anything beyond ``count`` would show up now
            return [(h, b) for p, h, b in list(Receiver.received) if p == path]
        time.sleep(0.1)


def _delivery_statuses(task_id: int, timeout: float = 10.0) -> list[str]:
    """The statuses of the task's delivery rows once none is pending (a worker marks a row
    delivered after the receiver answered)."""
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            statuses = sorted(session.scalars(select(CallbackDelivery.status)
                                              .where(CallbackDelivery.task_id == task_id)).all())
        if "pending" not in statuses or time.monotonic() > deadline:
            return statuses
        time.sleep(0.1)


def test_task_status_changes_arrive(client: Any, account: Account, receiver: str, celery_worker: Any) -> None:
    url = _hook(receiver)
    policy = {"task_callbacks": [{"url": url, "headers": [{"name": "X-Tenant", "value": "t1"}],
                                  "authorization": {"type": "bearer", "token": "tok-123"}}]}
    r = client.post("/tasks/counting", json={"content": {"n": 10, "parts": 2}, "notification_policy": policy},
                    headers=account.auth)
    task_id = r.json["task_id"]
    assert wait_status(client, account.auth, task_id, (3, 5))["status"] == 5
    got = _received(url, 3)
    assert sorted(b["status"] for _, b in got) == [1, 4, 5]  # in progress, collect results, done; no subtasks
    for headers, body in got:
        assert body["task_id"] == task_id and body["subtask_id"] is None and body["task_type"] == "counting"
        assert body["time"]
        assert headers["Authorization"] == "Bearer tok-123" and headers["X-Tenant"] == "t1"
    assert _delivery_statuses(task_id) == ["delivered"] * 3


def test_status_filter_and_subtasks(client: Any, account: Account, receiver: str, celery_worker: Any) -> None:
    url = _hook(receiver)
    policy = {"task_callbacks": [{"url": url, "authorization": {"type": "basic", "login": "hook", "password": "pw"}}],
              "statuses": [5], "subtasks": True}
    r = client.post("/tasks/counting", json={"content": {"n": 9, "parts": 3}, "notification_policy": policy},
                    headers=account.auth)
    task_id = r.json["task_id"]
    wait_status(client, account.auth, task_id, (3, 5))
    got = _received(url, 4)
    assert {b["status"] for _, b in got} == {5}
    subtasks = client.get(f"/tasks/{task_id}/subtasks", headers=account.auth).json["subtasks"]
    assert sorted(b["subtask_id"] or 0 for _, b in got) == [0, *sorted(s["subtask_id"] for s in subtasks)]
    assert {h["Authorization"] for h, _ in got} == {"Basic " + base64.b64encode(b"hook:pw").decode()}


def test_a_cancel_tells_of_the_task_and_its_subtasks(client: Any, account: Account, receiver: str,
                                                     celery_worker: Any) -> None:
    url = _hook(receiver)
    policy = {"task_callbacks": [{"url": url}], "statuses": [2], "subtasks": True}
    r = client.post("/tasks/counting", json={"content": {"n": 400, "parts": 4, "sleep_s": 0.05},
                                             "notification_policy": policy}, headers=account.auth)
    task_id = r.json["task_id"]
    wait_status(client, account.auth, task_id, (1,))
    assert client.patch(f"/tasks/{task_id}", json={"action": "cancel"}, headers=account.auth).status_code == 200
    got = _received(url, 5)
    subtasks = client.get(f"/tasks/{task_id}/subtasks", headers=account.auth).json["subtasks"]
    assert sorted(b["subtask_id"] or 0 for _, b in got) == [0, *sorted(s["subtask_id"] for s in subtasks)]
    assert {b["status"] for _, b in got} == {2}


def test_a_task_without_policy_sends_nothing(client: Any, account: Account, celery_worker: Any) -> None:
    task_id = client.post("/tasks/counting", json={"content": {"n": 2}}, headers=account.auth).json["task_id"]
    wait_status(client, account.auth, task_id, (3, 5))
    with session_scope() as session:
        assert session.scalars(select(CallbackDelivery).where(CallbackDelivery.task_id == task_id)).all() == []


def test_the_policy_round_trips_without_secrets(client: Any, account: Account, receiver: str,
                                                settings_override: Any, celery_worker: Any) -> None:
    settings_override(**KEY_1)
    url = _hook(receiver)
    r = client.post("/tasks/counting", json={"content": {"n": 5, "parts": 1, "sleep_s": 0.3}}, headers=account.auth)
    task_id = r.json["task_id"]
    assert client.get(f"/tasks/{task_id}/notification_policy", headers=account.auth).json == {}
    policy = {"task_callbacks": [{"url": url, "authorization": {"type": "basic", "login": "hook", "password": "pw9"}}],
              "statuses": [5], "subtasks": 0}
    r = client.put(f"/tasks/{task_id}/notification_policy", json=policy, headers=account.auth)
    assert r.status_code == 200, r.json
    for shown in (r.json, client.get(f"/tasks/{task_id}/notification_policy", headers=account.auth).json):
        assert shown["task_callbacks"][0]["url"] == url and shown["statuses"] == [5]
        assert shown["subtasks"] is False  # stored as loaded, so shown as documented
        assert shown["task_callbacks"][0]["authorization"] == {"type": "basic", "login": "hook"}
    with session_scope() as session:
        stored = session.get(Task, task_id).notification_policy
    assert "pw9" not in json.dumps(stored)
    assert stored["task_callbacks"][0]["authorization"]["password"].startswith("fernet:")
    wait_status(client, account.auth, task_id, (3, 5))
    (headers, body), = _received(url, 1)
    assert body["status"] == 5  # the policy set while it ran applies to what follows
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"hook:pw9").decode()
    with session_scope() as session:
        (delivery,) = session.scalars(select(CallbackDelivery).where(CallbackDelivery.task_id == task_id)).all()
        assert "pw9" not in json.dumps(delivery.target)  # sealed on the delivery row too


def test_a_running_part_shows_its_progress_in_flower(client: Any, account: Account, celery_worker: Any) -> None:
    r = client.post("/tasks/counting", json={"content": {"n": 40, "parts": 1, "sleep_s": 0.1}}, headers=account.auth)
    task_id = r.json["task_id"]
    step = AsyncResult(runner.celery_id(task_id, "part-0"))
    deadline = time.monotonic() + 20
    while step.state != "PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert step.state == "PROGRESS"
    meta = step.info
    assert meta["task_id"] == task_id and meta["part"] == 0
    assert meta["items_total"] == 40 and 0 < meta["items_done"] <= 40
    wait_status(client, account.auth, task_id, (3, 5))
    deadline = time.monotonic() + 10  # the part's own result is stored after it sent the merge
    while step.state != "SUCCESS" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert step.state == "SUCCESS"
