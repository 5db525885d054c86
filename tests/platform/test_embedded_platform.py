"""The whole embedded platform as ``make run`` starts it (the repository's Procfile under
``facegate run``), on free ports with SQLite and a temporary data folder: it answers, a task goes
through the worker, the worker killed with SIGKILL is restarted while the API, beat, Flower and
Redis keep running, and Ctrl-C stops every process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from app import embedded
from tests.platform.helpers import ROOT, answers, free_port, pid_alive, wait_until
from tests.platform.test_supervisor import FACEGATE, Platform

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("platform-embedded")]


def _ping(api: str, headers: dict[str, str]) -> dict[str, Any] | None:
    try:
        r = requests.post(f"{api}/system/ping", headers=headers, timeout=60)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


def test_make_run_platform_survives_a_killed_worker(tmp_path: Path) -> None:
    api_port, flower_port, redis_port = free_port(), free_port(), free_port()
    env = {"FACEGATE_DATA_DIR": str(tmp_path / "data"), "FACEGATE_DATABASE_URL": "",
           "FACEGATE_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "FACEGATE_BROKER_URL": "",
           "FACEGATE_API_PORT": str(api_port), "FACEGATE_FLOWER_PORT": str(flower_port),
           "FACEGATE_API_WORKERS": "1", "FACEGATE_WORKER_WAIT_TIMEOUT_S": "20"}
    full_env = {**os.environ, **env}
    for step in (["db", "upgrade"], ["buckets", "create"]):  # as `make run` does first
        subprocess.run([FACEGATE, *step], env=full_env, cwd=ROOT, check=True, capture_output=True, timeout=300)
    (tmp_path / "run").mkdir()
    p = Platform(tmp_path / "run", (ROOT / "Procfile").read_text(), env=env, grace=15)
    try:
        api = f"http://127.0.0.1:{api_port}"
        pids = {name: p.pid(name, timeout=120) for name in ("redis", "api", "worker", "beat", "flower")}
        wait_until(lambda: _get(f"{api}/healthcheck") == 200, 180, 1, "the API's healthcheck")
        login, password = f"{uuid.uuid4().hex[:10]}@example.com", "platform password"
        assert requests.post(f"{api}/accounts", json={"login": login, "password": password},
                             timeout=30).status_code == 201
        r = requests.post(f"{api}/tokens", auth=(login, password), timeout=30,
                          json={"permissions": {"task": ["creation"]}})
        headers = {"Authorization": f"Bearer {r.json()['token']}"}
        first = wait_until(lambda: _ping(api, headers), 180, 1, "a task through the worker")
        assert first["result"]["pong"] is True

        os.kill(pids["worker"], signal.SIGKILL)
        new_worker = wait_until(lambda: p.status()["worker"]["pid"] not in (None, pids["worker"])
                                and p.status()["worker"]["pid"], 30, what="the worker to be restarted")
        again = wait_until(lambda: _ping(api, headers), 180, 1, "a task through the restarted worker")
        assert again["result"]["pong"] is True
        status = p.status()
        assert status["worker"]["restarts"] == 1 and status["worker"]["last_exit"] == -signal.SIGKILL
        for name in ("redis", "api", "beat", "flower"):
            assert status[name]["pid"] == pids[name] and status[name]["restarts"] == 0, (name, p.log()[-5000:])
        flower = f"http://127.0.0.1:{flower_port}/api/workers"
        assert _get(flower) == 401  # Flower is never open
        user, _, password = embedded.flower_credentials(tmp_path / "data").partition(":")
        assert _get(flower, (user, password)) == 200

        _assert_private(tmp_path / "data")

        assert p.stop(signal.SIGINT, timeout=60) == 0
        for pid in [*pids.values(), new_worker]:
            wait_until(lambda pid=pid: not pid_alive(pid), 10, what=f"pid {pid} to be gone")
        for port in (api_port, flower_port, redis_port):
            assert not answers("127.0.0.1", port)
    except BaseException:
        sys.stderr.write(p.log()[-20000:])
        raise
    finally:
        p.close()


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    try:
        return requests.get(url, auth=auth, timeout=10).status_code
    except requests.RequestException:
        return 0


def _assert_private(data: Path) -> None:
    """Nothing in the data folder (database, secrets, credentials, faces, beat's schedule) is
    readable by others."""
    open_to_others = [str(path.relative_to(data)) for path in [data, *data.rglob("*")] if path.stat().st_mode & 0o077]
    assert open_to_others == []
    names = {path.name for path in data.rglob("*")}
    assert {"facegate.db", "jwt.secret", "flower.auth", "image_store", "redis"} <= names, names
