"""``facegate tasks``: run (and follow), list, show and cancel against the API served on a real
loopback socket, and ``reencrypt`` of the secrets stored in tasks, policies and schedules.

Secrets sealed in this test database are sealed under KEY_1 or KEY_2 (test_task_notifications
uses KEY_1 too): reencrypt refuses to change anything when one does not open."""
from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update
from werkzeug.serving import make_server

from app.cli import main
from app.db import session_scope
from app.faces.models import utcnow
from app.tasks import schedules, secrets
from app.tasks.models import Schedule, Task
from tests.conftest import Account
from tests.tasks.counting import SECRETS
from tests.tasks.test_framework import wait_status

KEY_1 = {"fernet_passphrase": "first passphrase", "salt": "first salt"}
KEY_2 = {"fernet_passphrase": "second passphrase", "salt": "second salt"}


@pytest.fixture(scope="module")
def served(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _as(account: Account, served: str) -> list[str]:
    return ["--url", served, "--user", account.login, "--password", account.password]


def _body(tmp_path: Path, content: dict[str, Any]) -> str:
    path = tmp_path / "body.json"
    path.write_text(json.dumps({"content": content, "description": "from the cli"}))
    return str(path)


def test_run_follow_shows_progress_and_the_result(served: str, account: Account, tmp_path: Path,
                                                  celery_worker: Any, client: Any) -> None:
    result = _cli("tasks", "run", "counting", "--file", _body(tmp_path, {"n": 30, "parts": 3, "sleep_s": 0.02}),
                  "--follow", "--interval", "0.1", *_as(account, served))
    assert result.exit_code == 0, (result.stdout, result.stderr)
    created, location = result.stdout.strip().splitlines()
    task_id = int(created.split()[1])
    assert location == f"{served}/tasks/{task_id}/result"
    assert "[" + "#" * 30 + "] 3/3 parts  done" in result.stderr
    assert client.get(f"/tasks/{task_id}/result", headers=account.auth).json["result"] == {"sum": 435, "count": 30}


def test_a_failed_task_exits_non_zero(served: str, account: Account, tmp_path: Path, celery_worker: Any) -> None:
    result = _cli("tasks", "run", "counting", "--file", _body(tmp_path, {"n": 4, "crash_part": 0}),
                  "--follow", "--interval", "0.1", *_as(account, served))
    assert result.exit_code == 1
    assert "failed; its errors:" in result.stderr and "/result" not in result.stdout


def test_list_show_cancel_with_a_token(served: str, account: Account, tmp_path: Path, celery_worker: Any) -> None:
    token = account.token({"task": ["view", "creation", "modification"]})
    auth = ["--url", served, "--token", token]
    result = _cli("tasks", "run", "counting", "--file", _body(tmp_path, {"n": 200, "parts": 2, "sleep_s": 0.05}),
                  *auth)
    assert result.exit_code == 0, result.stderr
    task_id = int(result.stdout.split()[1])
    listed = _cli("tasks", "list", "--type", "counting", *auth).stdout.splitlines()
    assert listed[0].split()[:2] == [str(task_id), "counting"] and listed[0].endswith("from the cli")
    shown = json.loads(_cli("tasks", "show", str(task_id), *auth).stdout)
    assert shown["task_id"] == task_id and shown["content"]["n"] == 200
    result = _cli("tasks", "cancel", str(task_id), *auth)
    assert result.exit_code == 0 and result.stdout.strip() == f"task {task_id} cancelled"
    again = _cli("tasks", "cancel", str(task_id), *auth)
    assert again.exit_code == 1 and "HTTP 409 70002" in again.stderr
    assert "deletion" not in token and _cli("tasks", "show", "999999999", *auth).exit_code == 1


def test_bad_credentials_or_no_api_are_one_line_errors(served: str, account: Account) -> None:
    result = _cli("tasks", "list", "--url", served, "--user", account.login, "--password", "wrong")
    assert result.exit_code == 1 and "HTTP 401" in result.stderr
    result = _cli("tasks", "list", "--url", "http://127.0.0.1:9", "--user", account.login)
    assert result.exit_code == 1 and "cannot reach the API at http://127.0.0.1:9" in result.stderr


def _stored(task_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    with session_scope() as session:
        task = session.get(Task, task_id)
        return task.content, task.notification_policy


def _opened(value: str, key: dict[str, str]) -> str:
    assert value.startswith(secrets.PREFIX), value
    return secrets.unseal(value, secrets.key_from(key["fernet_passphrase"], key["salt"]))


def _env(key: dict[str, str]) -> dict[str, str]:
    return {"FACEGATE_FERNET_PASSPHRASE": key["fernet_passphrase"], "FACEGATE_SALT": key["salt"]}


def test_secrets_sealed_at_rest_and_reencrypted(client: Any, account: Account, settings_override: Any,
                                                celery_worker: Any) -> None:
    policy = {"task_callbacks": [{"url": "http://127.0.0.1:9/hook",
                                  "authorization": {"type": "basic", "login": "u", "password": "pw-plain"}}],
              "statuses": [0]}
    # stored before encryption was turned on: plain
    plain_id = client.post("/tasks/counting", json={"content": {"n": 2, "secret": "plain-1"}, "notification_policy":
                                                   policy}, headers=account.auth).json["task_id"]
    wait_status(client, account.auth, plain_id, (3, 5))
    r = client.post("/tasks/schedules", json={"task": {"task_type": "counting", "content": {"n": 2, "secret": "sch-1"}},
                                              "cron": "0 3 * * *"}, headers=account.auth)
    schedule_id = r.json["schedule_id"]
    content, stored_policy = _stored(plain_id)
    assert content["secret"] == "plain-1" and stored_policy["task_callbacks"][0]["authorization"]["password"] == "pw-plain"

    settings_override(**KEY_1)
    sealed_id = client.post("/tasks/counting", json={"content": {"n": 2, "secret": "s3cret"}},
                            headers=account.auth).json["task_id"]
    assert "s3cret" not in json.dumps(_stored(sealed_id)[0])
    assert wait_status(client, account.auth, sealed_id, (3, 5))["status"] == 5
    assert SECRETS[sealed_id] == "s3cret"  # opened on the worker
    assert client.get(f"/tasks/{sealed_id}", headers=account.auth).json["content"]["secret"] == "***"
    assert client.get(f"/tasks/schedules/{schedule_id}", headers=account.auth).json["task"]["content"]["secret"] == "***"

    result = _cli("tasks", "reencrypt", env=_env(KEY_1))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("secrets sealed with the current key:")
    content, stored_policy = _stored(plain_id)
    assert _opened(content["secret"], KEY_1) == "plain-1"
    assert _opened(stored_policy["task_callbacks"][0]["authorization"]["password"], KEY_1) == "pw-plain"
    with session_scope() as session:
        assert _opened(session.get(Schedule, schedule_id).task["content"]["secret"], KEY_1) == "sch-1"
    assert _opened(_stored(sealed_id)[0]["secret"], KEY_1) == "s3cret"  # sealed ones stay as they were

    # the wrong old key changes nothing
    result = _cli("tasks", "reencrypt", "--old-passphrase", "nope", "--old-salt", "nope", env=_env(KEY_2))
    assert result.exit_code == 1 and "nothing was changed" in result.stderr
    assert _opened(_stored(plain_id)[0]["secret"], KEY_1) == "plain-1"

    # rotation: from KEY_1 to KEY_2
    settings_override(**KEY_2)
    result = _cli("tasks", "reencrypt", "--old-passphrase", KEY_1["fernet_passphrase"], "--old-salt", KEY_1["salt"],
                  env=_env(KEY_2))
    assert result.exit_code == 0, result.stderr
    assert _opened(_stored(plain_id)[0]["secret"], KEY_2) == "plain-1"
    assert _opened(_stored(sealed_id)[0]["secret"], KEY_2) == "s3cret"
    # the schedule's body opens under the new key when it fires, and its task's worker reads the secret
    due = utcnow() - timedelta(seconds=1)
    with session_scope() as session:
        session.execute(update(Schedule).where(Schedule.schedule_id == schedule_id).values(next_run_time=due))
    schedules.tick()
    with session_scope() as session:
        (fired,) = session.scalars(select(Task.task_id).where(Task.schedule_id == schedule_id)).all()
    assert wait_status(client, account.auth, fired, (3, 5))["status"] == 5
    assert SECRETS[fired] == "sch-1"
    client.patch(f"/tasks/schedules/{schedule_id}", json={"action": "stop"}, headers=account.auth)
