"""What the image store API suites share: the store back-end under test and sample images.

``backend`` runs a test twice, against local disk in a temporary folder and against S3 on the moto
server of ``tests/storage/conftest.py`` (imported, not copied), each time with the platform's
buckets created through the service, as ``facegate buckets create`` would. Each test module gets its
own folder and S3 bucket prefix, so modules never see each other's buckets on the shared server.
"""
from __future__ import annotations

import email.utils
import io
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest
from PIL import Image

from app.image_store import service as image_store
from tests.conftest import Account
from tests.storage.conftest import S3_KEYS, moto_endpoint  # noqa: F401 - moto_endpoint is a fixture

__all__ = ["backend", "empty_backend", "owners", "moto_endpoint", "s3_settings", "encode", "expiry_of", "advance_store_clock", "image_of"]


def s3_settings(endpoint: str) -> dict[str, Any]:
    return {"storage_type": "s3", "s3_endpoint_url": endpoint, "s3_bucket_prefix": f"t{uuid.uuid4().hex[:10]}-",
            "s3_access_key": S3_KEYS["access_key"], "s3_secret_key": S3_KEYS["secret_key"]}


@pytest.fixture(scope="module")
def _stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Settings of the stores one test module shares, made on first use; tests keep apart by ids."""
    return {}


def _store_settings(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if request.param == "local":
        return {"storage_type": "local", "storage_local_path": str(tmp_path_factory.mktemp("image_store"))}
    return s3_settings(request.getfixturevalue("moto_endpoint"))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, settings_override: Callable[..., None],
            _stores: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store with the platform's buckets, shared by the module's tests of this back-end."""
    known = _stores.get(request.param)
    if known is not None:
        settings_override(**known)
        return request.param
    values = _store_settings(request, tmp_path_factory)
    settings_override(**values)
    image_store.create_platform_buckets()
    _stores[request.param] = values
    return request.param


@pytest.fixture(params=["local", "s3"])
def empty_backend(request: pytest.FixtureRequest, settings_override: Callable[..., None],
                  tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store of its own without any bucket; returns the settings that point at it."""
    values = _store_settings(request, tmp_path_factory)
    settings_override(**values)
    return values


@pytest.fixture(scope="module")
def owners(app: Any) -> tuple[Account, Account]:
    """Two accounts for a whole module: registering and first logging in costs a password hash."""
    client = app.test_client()
    return Account(client), Account(client)


def encode(image: Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def expiry_of(response: Any) -> datetime | None:
    raw = response.headers.get("X-Luna-Expiry-Date")
    if raw is None:
        return None
    assert raw.endswith(" GMT"), raw
    return email.utils.parsedate_to_datetime(raw)


def advance_store_clock(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    """Let the store in force believe ``days`` have passed (its clock is injectable for this)."""
    later = lambda: datetime.now(timezone.utc) + timedelta(days=days)  # noqa: E731
    monkeypatch.setattr(image_store.store(), "_clock", later)
