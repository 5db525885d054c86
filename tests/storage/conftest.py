"""Fixtures for the image store suites.

``store`` is parametrized over both back-ends, so every behavioural test runs against local disk
(in a temporary directory) and against S3 — a real ``moto`` server on loopback spoken to over HTTP
by boto3, the same code path as a production S3. Each S3 test gets its own bucket-name prefix, so
tests never see each other's buckets on the shared server.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import boto3
import pytest
import redis
from moto.server import ThreadedMotoServer

from app.image_store.backends import LocalStore, ObjectStore, S3Store

S3_KEYS = {"access_key": "test-access", "secret_key": "test-secret"}


class FakeClock:
    """Real time until a test moves it forward, so S3's real last-modified dates and the store's
    "now" stay comparable."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_client(moto_endpoint: str):  # noqa: ANN201 - boto3 clients have no importable type
    """A plain boto3 client, to check what the store wrote independently of the store."""
    return boto3.client(
        "s3", endpoint_url=moto_endpoint, region_name="us-east-1",
        aws_access_key_id=S3_KEYS["access_key"], aws_secret_access_key=S3_KEYS["secret_key"],
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def local_store(tmp_path: Path, clock: FakeClock) -> LocalStore:
    return LocalStore(tmp_path / "image_store", clock=clock)


@pytest.fixture
def s3_store(moto_endpoint: str, clock: FakeClock) -> S3Store:
    return S3Store(endpoint_url=moto_endpoint, bucket_prefix=f"t{uuid.uuid4().hex[:10]}-",
                   clock=clock, **S3_KEYS)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def bucket(store: ObjectStore) -> str:
    store.create_bucket("test-bucket")
    return "test-bucket"


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.ConnectionError as exc:  # a missing Redis is an environment fault, not a pass
        pytest.fail(f"the lock tests need Redis on 127.0.0.1:6379: {exc}")
    yield client
    client.close()


@pytest.fixture
def redis_key(redis_client: redis.Redis) -> Iterator[str]:
    key = f"facegate-test:cleanup-lock:{uuid.uuid4().hex}"
    yield key
    redis_client.delete(key)

