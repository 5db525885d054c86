"""Dependencies going down under a running platform: PostgreSQL, two Redis servers (results and
attributes on one, the broker on the other, so each part can go down alone) and S3 of the test's
own, on their own ports, are stopped and started again while the API (gunicorn, as deployed) and
a worker keep running.

While a part is down every request that needs it answers 503 with the code naming that part
within ``dependency_timeout_s`` (2 s), and the API logs one line for it, never a traceback; no
answer carries the driver's words (hosts, ports). Once the part is back the same requests work,
nothing restarted. Each outage counts its requests, the 5xx other than 503 and the slowest answer,
and prints them (``-s`` shows the summary line).
"""
from __future__ import annotations

import base64
import io
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from moto.server import ThreadedMotoServer
from PIL import Image

from app import embedded
from app.errors import APIError
from inference import descriptor_format as fmt
from tests.platform.helpers import LoggedProcess, PostgresServer, free_port, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("platform-outages")]

DEPENDENCY_TIMEOUT_S = 2.0
# What a client sees of a part that is down: never an address, a port or a driver's words.
LEAKS = re.compile(r"127\.0\.0\.1|localhost|:\d{2,5}\b|postgres|psycopg|redis://|http://|Error\b|SELECT|/tmp/")
CODES = {"database_unavailable": 13005, "broker_unavailable": 13004, "result_store_unavailable": 13006,
         "attributes_unavailable": 20007, "storage_unavailable": 23010, "worker_timeout": 13001}
S3_KEYS = {"FACEGATE_S3_ACCESS_KEY": "test-access", "FACEGATE_S3_SECRET_KEY": "test-secret"}


@dataclass
class Tally:
    """Requests tried while one part was down."""

    tried: int = 0
    other_5xx: int = 0
    max_latency_s: float = 0.0
    by_code: dict[int, int] = field(default_factory=dict)
    recovery_s: float = 0.0  # from the restart to the last of the requests working again


TALLIES: dict[str, Tally] = {}


class MotoS3:
    """A moto S3 server on a fixed port, stopped and started again; its buckets and objects live in
    this process, so they are still there after a restart, as on a real S3 after an outage."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadedMotoServer | None = None

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        wait_until(lambda: _answers(f"http://127.0.0.1:{self.port}/"), 10, what="moto")

    def stop(self) -> None:
        assert self.server is not None
        self.server.stop()
        self.server = None


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
        return True
    except requests.RequestException:
        return False


class RedisServer:
    """The embedded Redis (what ``facegate redis`` runs) on a port of its own."""

    def __init__(self, folder: Path) -> None:
        self.url = f"redis://127.0.0.1:{free_port()}/0"
        self.folder = folder
        self.server: Any = None

    def start(self) -> None:
        self.server = embedded.start_redis(self.url, self.folder)

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=10)


@dataclass
class Platform:
    base: str
    api: LoggedProcess
    worker: LoggedProcess
    postgres: PostgresServer
    redis: RedisServer
    broker: RedisServer
    s3: MotoS3
    login: str = ""
    password: str = ""
    token: str = ""

    @property
    def basic(self) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{self.login}:{self.password}".encode()).decode()}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def call(self, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, str, float]:
        """One request with a request id of its own, so its log lines can be found; its latency."""
        rid = f"{int(time.time())},{uuid.uuid4()}"
        headers = {**kwargs.pop("headers", {}), "Luna-Request-Id": rid}
        started = time.monotonic()
        response = requests.request(method, self.base + path, headers=headers, timeout=30, **kwargs)
        return response, rid, time.monotonic() - started


def _run(argv: list[str], env: dict[str, str], name: str) -> str:
    process = LoggedProcess(argv, env, name).start()
    assert process.popen is not None
    assert process.popen.wait(timeout=120) == 0, process.log()[-4000:]
    return process.log()


def _facegate(*args: str) -> list[str]:
    return [sys.executable, "-c", "from app.cli import main; main()", *args]


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    folder = tmp_path_factory.mktemp("outages")
    postgres = PostgresServer().start()
    redis_server, broker = RedisServer(folder / "redis"), RedisServer(folder / "broker")
    redis_server.start()
    broker.start()
    s3 = MotoS3()
    s3.start()
    port = free_port()
    env = {
        "FACEGATE_DATA_DIR": str(folder / "data"),
        "FACEGATE_DATABASE_URL": postgres.url,
        "FACEGATE_REDIS_URL": redis_server.url,
        "FACEGATE_BROKER_URL": broker.url,
        "FACEGATE_STORAGE_TYPE": "s3",
        "FACEGATE_S3_ENDPOINT_URL": f"http://127.0.0.1:{s3.port}",
        "FACEGATE_S3_BUCKET_PREFIX": f"o{uuid.uuid4().hex[:8]}-",
        **S3_KEYS,
        "FACEGATE_DEPENDENCY_TIMEOUT_S": str(DEPENDENCY_TIMEOUT_S),
        "FACEGATE_WORKER_WAIT_TIMEOUT_S": "5",
        "FACEGATE_AUTH_CACHE_S": "0",  # every Basic request reads the database
        "FACEGATE_API_WORKERS": "1",
        "FACEGATE_LOG_LEVEL": "INFO",
        "FACEGATE_CONFIG": "",
    }
    _run(_facegate("db", "upgrade"), env, "migrate")
    _run(_facegate("buckets", "create"), env, "buckets")
    api = LoggedProcess(_facegate("api", "--host", "127.0.0.1", "--port", str(port)), env, "api").start()
    worker = LoggedProcess([sys.executable, "-m", "celery", "-A", "tasks", "worker", "--queues", "cpu,matcher",
                            "--pool", "threads", "--concurrency", "2", "--hostname", f"outages-{port}@%h",
                            "--without-mingle", "--without-gossip", "--loglevel", "INFO"], env, "worker").start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: api.alive() and _answers(base + "/version"), 60, 0.2, "the API")
        worker.wait_for(" ready.", 120)
        p = Platform(base, api, worker, postgres, redis_server, broker, s3, f"{uuid.uuid4().hex[:12]}@example.com",
                     "correct horse battery")
        r, _, _ = p.call("POST", "/accounts", json={"login": p.login, "password": p.password})
        assert r.status_code == 201, r.text
        r, _, _ = p.call("POST", "/tokens", headers=p.basic, json={"permissions": {
            "task": ["creation"], "list": ["view", "creation"], "face": ["view", "matching"],
            "attribute": ["creation", "view"], "image": ["creation", "view"], "sdk": ["creation"]}})
        assert r.status_code == 201, r.text
        p.token = r.json()["token"]
        yield p
    finally:
        worker.stop()
        api.stop()
        for server in (redis_server, broker, s3):
            if server.server is not None:
                server.stop()
        postgres.remove()
        print("\noutages:", {part: vars(t) for part, t in TALLIES.items()})


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 200)).save(out, "PNG")
    return out.getvalue()


def _descriptor() -> str:
    vec = np.random.default_rng(7).standard_normal(fmt.DESCRIPTOR_LENGTHS[fmt.DESCRIPTOR_VERSION])
    return base64.b64encode(fmt.pack((vec / np.linalg.norm(vec)).astype(np.float32))).decode()


Request = Callable[[Platform], tuple[requests.Response, str, float]]


def _down(p: Platform, part: str, requests_: dict[str, Request], expected: dict[str, str], rounds: int) -> None:
    """Every request answers its part's 503 within the timeout, with one log line and no traceback."""
    tally = TALLIES.setdefault(part, Tally())
    log_from = len(p.api.log())
    seen: list[tuple[str, str]] = []
    for _ in range(rounds):
        for name, send in requests_.items():
            r, rid, latency = send(p)
            tally.tried += 1
            tally.max_latency_s = max(tally.max_latency_s, latency)
            tally.by_code[r.status_code] = tally.by_code.get(r.status_code, 0) + 1
            if r.status_code >= 500 and r.status_code != 503:
                tally.other_5xx += 1
            body = r.json()
            assert r.status_code == 503 and body["error_code"] == CODES[expected[name]], (name, r.status_code, body)
            assert latency < DEPENDENCY_TIMEOUT_S, (name, latency)
            assert not LEAKS.search(body["detail"]) and not LEAKS.search(body["desc"]), (name, body)
            seen.append((name, rid))
    log = wait_until(lambda: _logged(p.api, log_from, [rid for _, rid in seen]), 5, 0.1, "the API's log lines")
    assert "Traceback" not in log, log[-4000:]
    for name, rid in seen:
        lines = [line for line in log.splitlines() if rid in line and re.search(r" (WARNING|ERROR|CRITICAL) ", line)]
        assert len(lines) == 1, (name, lines)
        assert str(CODES[expected[name]]) in lines[0], lines[0]


def _logged(api: LoggedProcess, offset: int, rids: list[str]) -> str | None:
    log = api.log()[offset:]
    return log if all(rid in log for rid in rids) else None


def _until_ok(p: Platform, send: Request, status: int = 200, timeout: float = 60) -> requests.Response:
    """The answer once the part is back (a worker reconnects on its own schedule; the API at once)."""
    last: list[requests.Response] = []

    def ok() -> bool:
        r, _, _ = send(p)
        last[:] = [r]
        return r.status_code == status

    try:
        wait_until(ok, timeout, 0.5, "the platform to recover")
    except AssertionError:
        raise AssertionError(f"{last[0].status_code} {last[0].text}\n{p.worker.log()[-3000:]}") from None
    return last[0]


def test_database_down_answers_503_and_recovers(platform: Platform) -> None:
    p = platform
    read_basic: Request = lambda p: p.call("GET", "/lists", headers=p.basic)  # noqa: E731
    read_token: Request = lambda p: p.call("GET", "/lists", headers=p.bearer)  # noqa: E731
    write: Request = lambda p: p.call("POST", "/lists", headers=p.bearer, json={"user_data": "outage"})  # noqa: E731
    ping: Request = lambda p: p.call("POST", "/system/ping", headers=p.bearer)  # noqa: E731
    for send, status in ((read_basic, 200), (read_token, 200), (write, 201), (ping, 200)):
        assert send(p)[0].status_code == status
    p.postgres.stop()
    try:
        _down(p, "database", {"basic read": read_basic, "bearer read": read_token, "write": write, "ping": ping},
              dict.fromkeys(("basic read", "bearer read", "write", "ping"), "database_unavailable"), rounds=3)
        r, _, _ = p.call("GET", "/healthcheck")
        assert r.status_code == 503 and r.json()["error_code"] == 13003 and "database" in r.json()["detail"]
        _a_task_meets_the_database_down(p.postgres.url)
    finally:
        p.postgres.start()
    # The API's pool replaces the connections the restart killed: the first request works.
    for send, status in ((read_basic, 200), (read_token, 200), (write, 201), (ping, 200)):
        r = send(p)[0]
        assert r.status_code == status, r.text
    assert "Traceback" not in p.api.log()


def _a_task_meets_the_database_down(url: str) -> None:
    """What a task body hits when its database is down travels back as that part's code, with the
    fixed detail: psycopg's text names the host and port, and it used to reach the client."""
    from sqlalchemy import text

    from app import dispatch
    from app.db import make_engine

    engine = make_engine(url)

    @dispatch.reported
    def body() -> int:
        with engine.connect() as conn:
            return conn.execute(text("SELECT 1")).scalar_one()

    try:
        envelope = body()
    finally:
        engine.dispose()
    assert envelope == {"error": {"kind": "database_unavailable", "detail": "Database unavailable; try again later"}}
    with pytest.raises(APIError) as raised:
        dispatch.unwrap(envelope)
    assert raised.value.status == 503 and raised.value.error.code == CODES["database_unavailable"]


def _task_and_attribute_requests(p: Platform) -> dict[str, Request]:
    r, _, _ = p.call("POST", "/attributes", headers=p.bearer, json={"descriptors": [{"descriptor": _descriptor()}]})
    assert r.status_code == 201, r.text
    attribute_id = r.json()["attribute_id"]
    reference = {"references": [{"type": "descriptor", "descriptor": _descriptor()}], "candidates": {"filters": {}}}
    return {
        "ping": lambda p: p.call("POST", "/system/ping", headers=p.bearer),
        "sdk": lambda p: p.call("POST", "/sdk", headers=p.bearer, files={"file": ("a.png", _png(), "image/png")}),
        "matcher": lambda p: p.call("POST", "/matcher/faces", headers=p.bearer, json=reference),
        "attribute write": lambda p: p.call("POST", "/attributes", headers=p.bearer,
                                            json={"basic_attributes": {"age": 30}}),
        "attribute read": lambda p: p.call("GET", f"/attributes/{attribute_id}", headers=p.bearer),
    }


def _tasks_work_again(p: Platform, sends: dict[str, Request], part: str, restarted: float) -> None:
    for name in ("matcher", "ping"):  # the worker reconnects to its broker on its own schedule
        assert _until_ok(p, sends[name]).status_code == 200, name
    TALLIES[part].recovery_s = time.monotonic() - restarted
    # No worker here consumes `gpu`: /sdk got through the broker and the result store when it waits
    # for an answer in vain, instead of answering at once that a part is down.
    r, _, _ = sends["sdk"](p)
    assert r.status_code == 503 and r.json()["error_code"] == CODES["worker_timeout"], r.text
    assert p.worker.alive(), p.worker.log()[-3000:]
    assert "Traceback" not in p.api.log()


def test_redis_down_answers_503_and_recovers(platform: Platform) -> None:
    """Both Redis servers down, as the one Redis of the default configuration would be: the result
    store is met first by every call that needs a worker, the attribute store by /attributes."""
    p = platform
    sends = _task_and_attribute_requests(p)
    assert _until_ok(p, sends["matcher"]).json()["results"]
    p.redis.stop()
    p.broker.stop()
    try:
        _down(p, "redis", sends, {"ping": "result_store_unavailable", "sdk": "result_store_unavailable",
                                  "matcher": "result_store_unavailable", "attribute write": "attributes_unavailable",
                                  "attribute read": "attributes_unavailable"}, rounds=2)
    finally:
        p.redis.start()
        p.broker.start()
    restarted = time.monotonic()
    r, _, _ = sends["attribute read"](p)  # the API's clients reconnect at once
    assert r.status_code == 200, r.text
    r, _, _ = sends["attribute write"](p)
    assert r.status_code == 201, r.text
    _tasks_work_again(p, sends, "redis", restarted)


def test_broker_down_alone_is_named(platform: Platform) -> None:
    """A broker of its own (RabbitMQ in production, a second Redis here) down: calls that send a task
    answer broker_unavailable, everything else keeps working."""
    p = platform
    sends = _task_and_attribute_requests(p)
    assert _until_ok(p, sends["ping"]).status_code == 200
    p.broker.stop()
    try:
        _down(p, "broker", {name: sends[name] for name in ("ping", "sdk", "matcher")},
              dict.fromkeys(("ping", "sdk", "matcher"), "broker_unavailable"), rounds=2)
        assert sends["attribute read"](p)[0].status_code == 200
        assert sends["attribute write"](p)[0].status_code == 201
    finally:
        p.broker.start()
    _tasks_work_again(p, sends, "broker", time.monotonic())


def test_object_store_down_answers_503_and_recovers(platform: Platform) -> None:
    p = platform
    put: Request = lambda p: p.call("POST", "/images", headers={**p.bearer, "Content-Type": "image/png"},  # noqa: E731
                                    data=_png())
    r, _, _ = put(p)
    assert r.status_code == 201, r.text
    image_url = r.json()["url"]
    get: Request = lambda p: p.call("GET", image_url, headers=p.bearer)  # noqa: E731
    p.s3.stop()
    try:
        _down(p, "object store", {"image write": put, "image read": get},
              {"image write": "storage_unavailable", "image read": "storage_unavailable"}, rounds=3)
    finally:
        p.s3.start()
    assert put(p)[0].status_code == 201
    assert get(p)[0].status_code == 200
    assert "Traceback" not in p.api.log()
