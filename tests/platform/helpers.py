"""Real worker and supervisor processes for the platform tests: started, killed with SIGKILL,
restarted, and their logs kept for the failure message."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import REDIS_HOST, _worker_index

ROOT = Path(__file__).resolve().parents[2]
# A Redis database of their own: the session fixtures of tests/conftest.py flush databases 1 and 2
# (and so may another run of the suite on the same machine), which would wipe queued messages.
PLATFORM_REDIS_URL = f"{REDIS_HOST}/{13 + _worker_index}"
AMQP_URL = os.environ.get("FACEGATE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def amqp_available() -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(AMQP_URL)
    return answers(parts.hostname or "127.0.0.1", parts.port or 5672)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False


class WorkerProcess:
    """``celery -A tests.platform.taskapp worker`` consuming one queue, in its own process group."""

    def __init__(self, queue: str, env: dict[str, str], name: str = "w") -> None:
        self.queue = queue
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.log_path = Path(tempfile.mkstemp(prefix=f"facegate-{self.name}-", suffix=".log")[1])
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tests.platform.taskapp", "worker", "--queues", self.queue,
             "--pool", "threads", "--concurrency", "2", "--hostname", f"{self.name}@%h", "--loglevel", "INFO",
             "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> WorkerProcess:
        def ready() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(f"worker {self.name} exited with {self.popen.returncode}:\n{self.log()[-4000:]}")
            return " ready." in self.log()

        wait_until(ready, timeout, 0.2, f"worker {self.name} to be ready")
        return self

    def kill9(self) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        except ProcessLookupError:
            pass
