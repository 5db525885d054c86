"""``facegate flower`` as the embedded platform starts it (no flower_basic_auth): Flower is never
open. Credentials are generated into data_dir (mode 0600); without them every API route answers
401; a cross-site request gets no CORS grant and its POST is refused; and even with the
credentials Flower runs no task (read-only mode)."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import REDIS_HOST
from tests.platform.helpers import ROOT, free_port, wait_until

pytestmark = pytest.mark.xdist_group("platform-flower")

FACEGATE = str(Path(sys.executable).parent / "facegate")
EVIL = "http://evil.example"


class _Flower:
    def __init__(self, url: str, data_dir: Path, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.data_dir, self.popen, self.log_path = url, data_dir, popen, log

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def auth(self) -> tuple[str, str]:
        user, _, password = (self.data_dir / "flower.auth").read_text().strip().partition(":")
        return user, password

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=10, allow_redirects=False, **kwargs)


@pytest.fixture(scope="module")
def flower(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Flower]:
    data_dir = tmp_path_factory.mktemp("flower-data")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACEGATE_", "FLOWER_"))}
    env.update({"FACEGATE_DATA_DIR": str(data_dir), "FACEGATE_REDIS_URL": f"{REDIS_HOST}/12",
                "FACEGATE_BROKER_URL": "", "FACEGATE_FLOWER_PORT": str(port), "FACEGATE_API_HOST": "127.0.0.1",
                "FACEGATE_FLOWER_BASIC_AUTH": "",
                # what the old embedded mode set: must be ignored now
                "FLOWER_UNAUTHENTICATED_API": "true", "PYTHONUNBUFFERED": "1"})
    log = Path(tempfile.mkstemp(prefix="facegate-flower-", suffix=".log")[1])
    with open(log, "ab") as out:
        popen = subprocess.Popen([FACEGATE, "flower"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    f = _Flower(f"http://127.0.0.1:{port}", data_dir, popen, log)

    def up() -> bool:
        if popen.poll() is not None:
            raise AssertionError(f"flower exited with {popen.returncode}:\n{f.log()[-4000:]}")
        try:
            return f.request("GET", "/healthcheck").status_code in (200, 401)
        except requests.RequestException:
            return False

    try:
        wait_until(up, 25, 0.2, "Flower to answer")
        yield f
    except BaseException:
        sys.stderr.write(f.log()[-8000:])
        raise
    finally:
        try:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)
            popen.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.unlink(missing_ok=True)


def test_credentials_generated_into_data_dir_mode_0600(flower: _Flower) -> None:
    path = flower.data_dir / "flower.auth"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user, password = flower.auth
    assert user == "admin" and len(password) >= 20
    # never on the command line, where any local user could read it (ps, /proc/<pid>/cmdline)
    assert password not in Path(f"/proc/{flower.popen.pid}/cmdline").read_text(errors="replace")


def test_unauthenticated_requests_are_refused(flower: _Flower) -> None:
    assert flower.request("GET", "/api/workers").status_code == 401
    assert flower.request("GET", "/api/tasks").status_code == 401
    assert flower.request("GET", "/api/task/result/0f9b7a3e-0000-0000-0000-000000000000").status_code == 401
    assert flower.request("GET", "/api/workers", auth=("admin", "wrong-password")).status_code == 401
    for path in ("/api/task/async-apply/system.ping", "/api/task/send-task/system.ping",
                 "/api/task/revoke/0f9b7a3e-0000-0000-0000-000000000000"):
        r = flower.request("POST", path, json={"args": []})
        assert r.status_code in (401, 403), (path, r.status_code, r.text)


def test_authenticated_reads_work(flower: _Flower) -> None:
    r = flower.request("GET", "/api/workers", auth=flower.auth)
    assert r.status_code == 200, r.text
    assert isinstance(r.json(), dict)


def test_cross_site_requests_get_no_cors_grant(flower: _Flower) -> None:
    for method, path in (("GET", "/api/workers"), ("OPTIONS", "/api/task/async-apply/system.ping"),
                         ("POST", "/api/task/async-apply/system.ping")):
        for auth in (None, flower.auth):
            r = flower.request(method, path, auth=auth, headers={
                "Origin": EVIL, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            assert r.headers.get("Access-Control-Allow-Origin") not in ("*", EVIL), (method, path, r.headers)
            assert not any(h.lower().startswith("access-control-") for h in r.headers), (method, path, r.headers)
    # a browser's cross-site POST, even if it carried the operator's credentials, is refused
    r = flower.request("POST", "/api/task/async-apply/system.ping", auth=flower.auth, json={"args": []},
                       headers={"Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403, r.text


def test_flower_runs_and_controls_no_task_even_with_credentials(flower: _Flower) -> None:
    for path in ("/api/task/async-apply/system.ping", "/api/task/apply/system.ping",
                 "/api/task/send-task/system.ping", "/api/task/revoke/0f9b7a3e-0000-0000-0000-000000000000",
                 "/api/task/abort/0f9b7a3e-0000-0000-0000-000000000000",
                 "/api/worker/shutdown/embedded@host", "/api/worker/pool/restart/embedded@host"):
        r = flower.request("POST", path, auth=flower.auth, json={"args": []})
        # 403 "Read only mode is enabled": Flower checks it before anything else
        assert r.status_code == 403, (path, r.status_code, r.text)
