"""Platform self-checks."""
from __future__ import annotations

import socket
from typing import Any

from app.dispatch import reported
from app.observability import request_id_var
from tasks import celery


@celery.task(name="system.ping", acks_late=True)
@reported
def ping(*_previous: Any) -> dict[str, Any]:
    """Round trip through broker, worker and result backend, used by health checks and smoke tests
    (in a chain, after any step: what came before is ignored)."""
    return {"pong": True, "worker": socket.gethostname(), "request_id": request_id_var.get()}
