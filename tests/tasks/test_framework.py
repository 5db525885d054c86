"""The long-task framework on a test type: parts, checkpoints, merge, errors, cancel, isolation."""
from __future__ import annotations

import time
from typing import Any

from tests.conftest import Account
from tests.tasks.counting import RUNS


def wait_status(client: Any, auth: dict[str, str], task_id: int, statuses: tuple[int, ...],
                timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/tasks/{task_id}", headers=auth)
        assert r.status_code == 200, r.json
        if r.json["status"] in statuses or time.monotonic() > deadline:
            return r.json
        time.sleep(0.1)


def test_parts_merge_into_one_result(client: Any, account: Account, celery_worker: Any) -> None:
    r = client.post("/tasks/counting", json={"content": {"n": 100, "parts": 4, "bad": [3, 77]},
                                             "description": "count"}, headers=account.auth)
    assert r.status_code == 201, r.json
    task = wait_status(client, account.auth, r.json["task_id"], (3, 5))
    assert task["status"] == 5, task
    assert (task["parts_done"], task["parts_total"]) == (4, 4)
    result = client.get(f"/tasks/{task['task_id']}/result", headers=account.auth)
    assert result.status_code == 200
    assert result.json["result"] == {"sum": sum(range(100)), "count": 100}
    assert sorted(e["additional_info"] for e in result.json["errors"]) == ["3", "77"]
    errors = client.get(f"/tasks/{task['task_id']}/errors", headers=account.auth).json["errors"]
    assert [e["error_code"] for e in errors] == [10010, 10010]
    subtasks = client.get(f"/tasks/{task['task_id']}/subtasks", headers=account.auth).json["subtasks"]
    assert [s["status"] for s in subtasks] == [5, 5, 5, 5]
    assert all(RUNS[task["task_id"], p] == 1 for p in range(4))


def test_crashed_part_fails_the_task(client: Any, account: Account, celery_worker: Any) -> None:
    r = client.post("/tasks/counting", json={"content": {"n": 10, "parts": 2, "crash_part": 1}}, headers=account.auth)
    task = wait_status(client, account.auth, r.json["task_id"], (3, 5))
    assert task["status"] == 3
    errors = client.get(f"/tasks/{task['task_id']}/errors", headers=account.auth).json["errors"]
    assert [e["error_code"] for e in errors] == [13002]
    assert "crashed on purpose" not in errors[0]["detail"]
    assert client.get(f"/tasks/{task['task_id']}/result", headers=account.auth).status_code == 404


def test_cancel_stops_running_parts(client: Any, account: Account, celery_worker: Any) -> None:
    r = client.post("/tasks/counting", json={"content": {"n": 400, "parts": 4, "sleep_s": 0.05}}, headers=account.auth)
    task_id = r.json["task_id"]
    wait_status(client, account.auth, task_id, (1,))
    r = client.patch(f"/tasks/{task_id}", json={"action": "cancel"}, headers=account.auth)
    assert r.status_code == 200 and r.json["status"] == 2
    time.sleep(2.5)  # a running part notices within a second
    task = client.get(f"/tasks/{task_id}", headers=account.auth).json
    assert task["status"] == 2 and task["parts_done"] < 4
    subtasks = client.get(f"/tasks/{task_id}/subtasks", headers=account.auth).json["subtasks"]
    assert all(s["status"] == 2 for s in subtasks), subtasks
    assert client.patch(f"/tasks/{task_id}", json={"action": "cancel"}, headers=account.auth).status_code == 409


def test_other_accounts_see_nothing(client: Any, account_factory: Any, celery_worker: Any) -> None:
    owner, other = account_factory(), account_factory()
    task_id = client.post("/tasks/counting", json={"content": {"n": 3}}, headers=owner.auth).json["task_id"]
    wait_status(client, owner.auth, task_id, (5,))
    for path in ("", "/subtasks", "/errors", "/result", "/notification_policy"):
        r = client.get(f"/tasks/{task_id}{path}", headers=other.auth)
        assert r.status_code == 404 and r.json["error_code"] == 70001, (path, r.json)
    assert client.get("/tasks", headers=other.auth).json["tasks"] == []
    assert client.delete(f"/tasks/{task_id}", headers=other.auth).status_code == 404
    assert client.delete(f"/tasks/{task_id}", headers=owner.auth).status_code == 204
    assert client.get(f"/tasks/{task_id}", headers=owner.auth).status_code == 404


def test_bad_bodies_are_400(client: Any, account: Account) -> None:
    for body in ({}, {"content": {}}, {"content": {"n": -1}}, {"content": {"n": 1, "x": 1}}, {"content": {"n": 1}, "y": 2}):
        r = client.post("/tasks/counting", json=body, headers=account.auth)
        assert r.status_code == 400 and r.json["error_code"] == 10005, (body, r.json)
    assert client.post("/tasks/nope", json={"content": {}}, headers=account.auth).status_code == 404


def test_list_filters(client: Any, account: Account, celery_worker: Any) -> None:
    ok = client.post("/tasks/counting", json={"content": {"n": 2}, "description": "alpha"}, headers=account.auth)
    bad = client.post("/tasks/counting", json={"content": {"n": 2, "crash_part": 0}, "description": "beta"},
                      headers=account.auth)
    wait_status(client, account.auth, ok.json["task_id"], (5,))
    wait_status(client, account.auth, bad.json["task_id"], (3,))

    def ids(**query: Any) -> list[int]:
        r = client.get("/tasks", query_string=query, headers=account.auth)
        assert r.status_code == 200, r.json
        return [t["task_id"] for t in r.json["tasks"]]

    assert ids() == [bad.json["task_id"], ok.json["task_id"]]  # newest first
    assert ids(status=5) == [ok.json["task_id"]]
    assert ids(description="bet") == [bad.json["task_id"]]
    assert ids(create_time__gte="now-1h", task_type="counting") == ids()
    assert ids(create_time__lt="now-1h") == []
    assert client.get("/tasks", query_string={"status": 9}, headers=account.auth).status_code == 400
    errors = client.get("/tasks/errors", query_string={"task_id": bad.json["task_id"]}, headers=account.auth)
    assert [e["task_id"] for e in errors.json["errors"]] == [bad.json["task_id"]]
