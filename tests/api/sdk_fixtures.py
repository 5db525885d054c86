"""What the remote SDK API suites (/sdk, /detector, /iso) share: a ready account and upload helpers.

The suites run the real Celery worker of ``tests/conftest.py`` (threads pool, like a gpu worker)
with the real models on the shared photos; the platform's buckets are created in the default
local image store, as ``facegate buckets create`` would.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SHARED, Account

FACES = SHARED / "faces"


@pytest.fixture(scope="module")
def sdk_user(app: Any, celery_worker: Any) -> Account:
    from app.image_store import service as image_store

    image_store.create_platform_buckets()
    return Account(app.test_client())


def files(*images: Path | tuple[str, bytes]) -> dict[str, Any]:
    """A multipart form with one file per image (a path, or a (name, bytes) pair)."""
    form: dict[str, Any] = {}
    for n, image in enumerate(images):
        name, data = (image.name, image.read_bytes()) if isinstance(image, Path) else image
        form[f"image{n}"] = (io.BytesIO(data), name)
    return form


def post(client: Any, url: str, user: Account, *images: Path | tuple[str, bytes], **query: Any) -> Any:
    return client.post(url, data=files(*images), query_string=query, headers=user.auth,
                       content_type="multipart/form-data")
