"""The platform's Celery app plus the framework's test type, for worker subprocesses started by
the long-task fault tests: ``celery -A tests.tasks.workerapp worker``."""
from __future__ import annotations

from tasks import celery
from tests.tasks import counting  # noqa: F401 - registers the test type in the worker

app = celery
