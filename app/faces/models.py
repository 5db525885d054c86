"""Faces, their descriptors, lists and the change feed for the matcher.

Face ids are time-ordered (UUID version 7 layout), so ordering by ``face_id`` is ordering by
creation: one index serves pagination, ``face_id`` ranges split work into chunks, and inserts
land at the right edge of the B-tree instead of all over it.
"""
from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.scope import AccountOwned


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def time_ordered_uuid() -> uuid.UUID:
    """A UUID whose first 48 bits are the Unix time in ms (RFC 9562 version 7)."""
    value = (int(time.time() * 1000) & ((1 << 48) - 1)) << 80
    value |= int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL needs 64 bits for a log that grows forever.
SEQ = BigInteger().with_variant(Integer(), "sqlite")


class Face(AccountOwned, Base):
    __tablename__ = "face"
    not_found = "face_not_found"
    label = "face"
    __table_args__ = (
        Index("ix_face_account_face", "account_id", "face_id"),
        Index("ix_face_account_external", "account_id", "external_id"),
    )

    face_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_data: Mapped[str] = mapped_column(String(128), default="")
    event_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    avatar: Mapped[str] = mapped_column(String(256), default="")
    basic_attributes: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    sample_ids: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)


class FaceDescriptor(Base):
    """One descriptor per (face, model version): re-extraction with a new model adds a row."""

    __tablename__ = "face_descriptor"

    face_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("face.face_id", ondelete="CASCADE"),
                                               primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    # float32 little-endian, no header: the model version is the column beside it.
    descriptor: Mapped[bytes] = mapped_column(LargeBinary)


class FaceList(AccountOwned, Base):
    __tablename__ = "face_list"
    not_found = "list_not_found"
    label = "list"
    __table_args__ = (Index("ix_face_list_account_list", "account_id", "list_id"),)

    list_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    user_data: Mapped[str] = mapped_column(String(128), default="")
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    last_update_time: Mapped[datetime] = mapped_column(default=utcnow)


class ListFace(Base):
    """Membership of a face in a list; the primary key orders a list's faces by face id (creation)."""

    __tablename__ = "list_face"

    list_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("face_list.list_id", ondelete="CASCADE"),
                                               primary_key=True)
    face_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("face.face_id", ondelete="CASCADE"),
                                               primary_key=True, index=True)


class ChangeLog(Base):
    """Changes that matter to matching, in commit order; the matcher tails it by ``seq``."""

    __tablename__ = "change_log"

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    face_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    list_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    time: Mapped[datetime] = mapped_column(default=utcnow)
