"""Fixtures of the long-task suites: the platform's buckets (results go to ``task-result``) and
the framework's test type."""
from __future__ import annotations

from typing import Any

import pytest

from tests.tasks import counting  # noqa: F401 - registers the test type before the app exists


@pytest.fixture(scope="session", autouse=True)
def buckets(app: Any) -> None:
    from app.image_store import service as image_store

    image_store.create_platform_buckets()
