"""Where the relay stands in the outbox, and the state of every webhook delivery."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.faces.models import SEQ, utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class RelayCursor(Base):
    """The last outbox ``seq`` the relay handed on; moved in the transaction that writes the
    deliveries of the rows before it, so a restarted relay neither skips nor repeats a row."""

    __tablename__ = "relay_cursor"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)


class CallbackDelivery(Base):
    """One http callback of one event (written by the relay) or of one task status change (written
    with the change, app.tasks.notify); sent by ``notifications.deliver``.

    ``(outbox_seq, callback)`` is unique, so a relay that runs a row twice writes one delivery,
    and a delivery marked ``delivered`` is never sent again. A task's delivery has no outbox row:
    it carries its own ``payload`` and its ``task_id`` instead of ``outbox_seq`` and ``event_id``."""

    __tablename__ = "callback_delivery"
    __table_args__ = (
        UniqueConstraint("outbox_seq", "callback", name="uq_callback_delivery"),
        Index("ix_callback_delivery_due", "status", "next_attempt_time"),
    )

    delivery_id: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    outbox_seq: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    callback: Mapped[int] = mapped_column(Integer)  # its position in the event's callbacks
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    task_id: Mapped[int | None] = mapped_column(SEQ, nullable=True)
    payload: Mapped[Any] = mapped_column(JSON, nullable=True)  # a task's; an event's is its outbox row's
    target: Mapped[dict[str, Any]] = mapped_column(JSON)  # url, method, headers, auth
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_result: Mapped[str | None] = mapped_column(String(64), nullable=True)  # "HTTP 503", "timeout"...
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    delivery_time: Mapped[datetime | None] = mapped_column(nullable=True)
