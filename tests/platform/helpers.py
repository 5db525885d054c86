"""Real worker and supervisor processes for the platform tests: started, killed with SIGKILL,
restarted, and their logs kept for the failure message."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

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


class LoggedProcess:
    """Any command of the platform (the API, a worker), in its own process group, its output in a
    log file that a test reads back (log lines, tracebacks) and shows on failure."""

    def __init__(self, argv: list[str], env: dict[str, str], name: str) -> None:
        self.argv = argv
        self.env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.name = f"{name}-{uuid.uuid4().hex[:6]}"
        self.log_path = Path(tempfile.mkstemp(prefix=f"facegate-{self.name}-", suffix=".log")[1])
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def wait_for(self, text: str, timeout: float = 90) -> Self:
        def seen() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-4000:]}")
            return text in self.log()

        wait_until(seen, timeout, 0.2, f"{self.name} to log {text!r}")
        return self

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.popen is not None
        try:
            os.killpg(self.popen.pid, signal.SIGTERM)
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        except ProcessLookupError:
            pass


class WorkerProcess(LoggedProcess):
    """``celery -A tests.platform.taskapp worker`` consuming one queue, in its own process group."""

    def __init__(self, queue: str, env: dict[str, str], name: str = "w") -> None:
        super().__init__([], env, name)
        self.queue = queue
        self.argv = [sys.executable, "-m", "celery", "-A", "tests.platform.taskapp", "worker", "--queues", queue,
                     "--pool", "threads", "--concurrency", "2", "--hostname", f"{self.name}@%h", "--loglevel", "INFO",
                     "--without-mingle", "--without-gossip"]

    def wait_ready(self, timeout: float = 90) -> Self:
        self.wait_for(" ready.", timeout)
        return self

    def kill9(self) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb into a scratch folder, pg_ctl on a free
    port), to be stopped and started again while the platform runs. As root the server runs as
    ``postgres``, as scripts/services.sh does."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="facegate-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        self._pg("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*prefix, self._binary(tool), *args], capture_output=True, timeout=60)
        if done.returncode:
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stdout.decode()}{done.stderr.decode()}")

    @staticmethod
    def _binary(tool: str) -> str:
        # On PATH, or where Debian's postgresql package puts it (what scripts/services.sh installs).
        installed = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"),
                           key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0)
        found = shutil.which(tool) or (installed[-1] if installed else None)
        if found is None:
            raise AssertionError(f"{tool} is needed (PostgreSQL server binaries): neither on PATH nor in "
                                 "/usr/lib/postgresql/*/bin")
        return str(found)

    def start(self) -> PostgresServer:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w", "-o",
                 f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off", "start")
        return self

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
