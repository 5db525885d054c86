"""Test fixtures: real PostgreSQL and Redis on loopback, a real Celery worker.

Each pytest-xdist worker gets its own PostgreSQL database (``facegate_test_<worker>``, rebuilt
by the migrations at session start) and its own Redis database number, so parallel workers never
see each other's rows or messages. Settings are put in the environment before anything imports
the Celery configuration, exactly as a deployment would set them.

With ``FACEGATE_TEST_EMBEDDED=1`` the same fixtures give the embedded platform's configuration
instead (``make test`` runs a set of API suites this way): a SQLite file in the data folder and a
Redis server of the test process's own, started from the binary that ``facegate redis`` runs, as
broker, result store, pub/sub and attribute store.
"""
from __future__ import annotations

import base64
import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

# torch's OpenMP threads spin while they wait; two xdist workers on two cores (and the servers the
# tests start) share the CPU, and spinning made the detector parity test 5-10x slower. Set before
# anything loads torch, as the worker (tasks/inference.py) and the benches do.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", ROOT.parent / "shared"))
PG_ADMIN_URL = os.environ.get("FACEGATE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_HOST = os.environ.get("FACEGATE_TEST_REDIS", "redis://127.0.0.1:6379")

EMBEDDED = os.environ.get("FACEGATE_TEST_EMBEDDED") == "1"

_worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
_worker_index = int(_worker[2:]) if _worker[2:].isdigit() else 0
# The pid keeps concurrent runs on one machine (two developers, a CI run) out of each other's way.
TEST_DB = f"facegate_test_{_worker}_{os.getpid()}"
DATA_DIR = tempfile.mkdtemp(prefix=f"facegate-test-{_worker}-")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if EMBEDDED:
    PG_URL = ""  # the SQLite file in DATA_DIR
    REDIS_URL = f"redis://127.0.0.1:{_free_port()}/0"
else:
    PG_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB
    REDIS_URL = f"{REDIS_HOST}/{1 + _worker_index}"

os.environ.update({
    "FACEGATE_DATA_DIR": DATA_DIR,
    "FACEGATE_DATABASE_URL": PG_URL,
    "FACEGATE_REDIS_URL": REDIS_URL,
    "FACEGATE_WORKER_WAIT_TIMEOUT_S": "20",
    "FACEGATE_LOG_LEVEL": "INFO",
})
os.environ.pop("FACEGATE_CONFIG", None)


def _admin(*statements: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for statement in statements:
            conn.execute(text(statement))
    admin.dispose()


def _recreate_database() -> None:
    _admin(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)', f'CREATE DATABASE "{TEST_DB}"')


def _drop_database() -> None:
    _admin(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture(scope="session")
def embedded_redis() -> Iterator[str | None]:
    """In embedded mode, this test process's own Redis server (what ``facegate redis`` runs)."""
    if not EMBEDDED:
        yield None
        return
    from app import embedded

    server = embedded.start_redis(REDIS_URL, DATA_DIR)
    try:
        yield REDIS_URL
    finally:
        server.terminate()
        server.wait(30)


@pytest.fixture(scope="session")
def database(embedded_redis: str | None) -> Iterator[str]:
    """A migrated, empty database for this test process: PostgreSQL, or SQLite in embedded mode."""
    from alembic import command

    from app import settings
    from app.cli import _alembic_config

    if not EMBEDDED:
        _recreate_database()
    url = settings.current().effective_database_url
    assert url.startswith("sqlite") == EMBEDDED, url
    command.upgrade(_alembic_config(), "head")
    yield url
    from app.db import dispose_all
    from app.matching import cache as matcher_cache

    matcher_cache.reset()  # its follower thread polls this database: stop it before the drop
    dispose_all()
    if not EMBEDDED:
        _drop_database()


@pytest.fixture(scope="session")
def redis_client(embedded_redis: str | None) -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    return client


@pytest.fixture(scope="session")
def app(database: str, redis_client: Any) -> Any:
    from app import create_app

    flask_app = create_app()
    flask_app.config["TESTING"] = True
    return flask_app


@pytest.fixture()
def client(app: Any) -> Any:
    return app.test_client()


def basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Account:
    """A registered account with helpers for its credentials.

    ``user`` accounts register themselves; ``advanced_user`` and ``admin`` ones are created by an
    admin through the same resource, as the platform requires (the first admin, as on a real
    installation, by the service that ``facegate create-admin`` calls).
    """

    def __init__(self, client: Any, account_type: str = "user") -> None:
        self.login = f"{uuid.uuid4().hex[:12]}@example.com"
        self.password = "correct horse battery"
        headers = {} if account_type == "user" else first_admin().auth
        r = client.post("/accounts", json={"login": self.login, "password": self.password,
                                           "account_type": account_type}, headers=headers)
        assert r.status_code == 201, r.json
        self.account_id = r.json["account_id"]
        self.client = client

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.login, self.password)

    def token(self, permissions: dict[str, list[str]], **extra: Any) -> str:
        r = self.client.post("/tokens", json={"permissions": permissions, **extra}, headers=self.auth)
        assert r.status_code == 201, r.json
        return r.json["token"]


class _Credentials:
    def __init__(self, login: str, password: str) -> None:
        self.login, self.password = login, password

    @property
    def auth(self) -> dict[str, str]:
        return basic(self.login, self.password)


_first_admin: _Credentials | None = None


def first_admin() -> _Credentials:
    """This test process's admin, made once by the service behind ``facegate create-admin``."""
    global _first_admin
    if _first_admin is None:
        from app.accounts.service import create_account
        from app.db import session_scope

        admin = _Credentials(f"admin-{uuid.uuid4().hex[:12]}@example.com", "correct horse battery")
        with session_scope() as session:
            create_account(session, login=admin.login, password=admin.password, account_type="admin")
        _first_admin = admin
    return _first_admin


@pytest.fixture()
def account_factory(client: Any) -> Callable[..., Account]:
    return lambda account_type="user": Account(client, account_type)


@pytest.fixture()
def account(account_factory: Callable[..., Account]) -> Account:
    return account_factory()


@pytest.fixture()
def settings_override() -> Iterator[Callable[..., None]]:
    """Change settings for one test and restore them afterwards."""
    from app import settings

    original = settings.current()

    def apply(**values: Any) -> None:
        merged = {**original.as_dict(mask_secrets=False), **values}
        settings.replace(settings.Settings(merged, source=original.source))

    yield apply
    settings.replace(original)


@pytest.fixture(scope="session")
def celery_worker(app: Any) -> Iterator[Any]:
    """A real Celery worker thread consuming every queue from the Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from celeryconfig import QUEUES
    from tasks import celery

    with start_worker(celery, pool="threads", concurrency=2, queues=list(QUEUES),
                      perform_ping_check=False, shutdown_timeout=30) as worker:
        yield worker


def suite_task_paths() -> list[str]:
    """``POST /tasks/<type>`` of the task types the suite registers (tests/tasks/counting.py):
    they exist only in a run that imported them before the app was built, and are no part of the
    API. The document checks leave them out, and the fuzzer must too: it once created a counting
    task of 100 slow parts that held a test worker for minutes after its test ended."""
    from app.tasks import registry

    return [f"/tasks/{name}" for name, task_type in registry.types().items()
            if task_type.split.__module__.startswith("tests.")]
