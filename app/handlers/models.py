"""Handlers: an account's processing policies, kept as one validated JSON document."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.faces.models import time_ordered_uuid, utcnow
from app.scope import AccountOwned

STATIC, DYNAMIC = "static", "dynamic"


class Handler(AccountOwned, Base):
    """Policies that turn images into events. A static handler stores its policies; a dynamic one
    stores none and takes them with each request (``policies`` is then null)."""

    __tablename__ = "handler"
    not_found = "handler_not_found"
    label = "handler"
    __table_args__ = (Index("ix_handler_account_handler", "account_id", "handler_id"),)

    handler_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(128), default="")
    handler_type: Mapped[str] = mapped_column(String(16), default=STATIC)
    policies: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Events record the version they were made under, so a changed handler never rewrites history.
    version: Mapped[int] = mapped_column(Integer, default=1)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_update_time: Mapped[datetime] = mapped_column(default=utcnow)
