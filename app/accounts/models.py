"""Accounts and their tokens."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from sqlalchemy import JSON, ForeignKey, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base
from app.scope import AccountOwned

ACCOUNT_TYPES = ("user", "advanced_user", "admin")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Account(Base):
    __tablename__ = "account"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    login: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    account_type: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(512), default="")
    create_time: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[Token]] = relationship(back_populates="account", cascade="all, delete-orphan",
                                               passive_deletes=True)


class Token(AccountOwned, Base):
    __tablename__ = "token"
    not_found = "token_not_found"
    label = "token"

    token_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("account.account_id", ondelete="CASCADE"), index=True)
    # {resource: [action, ...]}; checked on every request, so a PATCH applies to issued JWTs at once.
    permissions: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(512), default="")
    visibility_area: Mapped[str] = mapped_column(String(16), default="account")
    expiration_time: Mapped[datetime | None] = mapped_column(nullable=True)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)

    account: Mapped[Account] = relationship(back_populates="tokens")
