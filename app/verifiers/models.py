"""Verifiers: stored 1:1 verification policies."""
from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.faces.models import time_ordered_uuid, utcnow
from app.scope import AccountOwned


class Verifier(AccountOwned, Base):
    """A verification policy: pairs at or above ``threshold`` similarity pass."""

    __tablename__ = "verifier"
    not_found = "verifier_not_found"
    label = "verifier"
    __table_args__ = (Index("ix_verifier_account_verifier", "account_id", "verifier_id"),)

    verifier_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    description: Mapped[str] = mapped_column(String(128), default="")
    threshold: Mapped[float] = mapped_column(Float)
    # Descriptors of other versions are not comparable with this policy's threshold.
    version: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_update_time: Mapped[datetime] = mapped_column(default=utcnow)
