"""Events (one per processed image, written by handlers), general events (any JSON a client or a
plugin saves) and the outbox that later feeds webhooks and websockets.

Events are immutable: nothing updates them, so the outbox row written beside each one in the same
transaction is the whole story of it. Indexes serve the filters integrators page by (see
docs/events.md): the account's time order, handler, source, external id, track, similarity, the
geo box, and on PostgreSQL a GIN index that answers ``meta.<path>__eq`` by containment.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, LargeBinary, String, Uuid
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.faces.models import SEQ, time_ordered_uuid, utcnow
from app.scope import AccountOwned

# JSONB on PostgreSQL (operators, GIN indexes, compact storage), JSON1 text on SQLite.
FLEX_JSON = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
PLAIN_JSON = JSON(none_as_null=True)


class _Location:
    """Where an event happened, as the filters and the ``location`` object name it."""

    city: Mapped[str | None] = mapped_column(String(36), nullable=True)
    area: Mapped[str | None] = mapped_column(String(36), nullable=True)
    district: Mapped[str | None] = mapped_column(String(36), nullable=True)
    street: Mapped[str | None] = mapped_column(String(36), nullable=True)
    house_number: Mapped[str | None] = mapped_column(String(36), nullable=True)
    longitude: Mapped[float | None] = mapped_column(Float, nullable=True)
    latitude: Mapped[float | None] = mapped_column(Float, nullable=True)


class Event(_Location, AccountOwned, Base):
    __tablename__ = "event"
    not_found = "event_not_found"
    label = "event"
    __table_args__ = (
        # Pages are newest first: (account, time, id) walked backwards is the ORDER BY.
        Index("ix_event_account_time", "account_id", "create_time", "event_id"),
        Index("ix_event_handler", "handler_id"),
        Index("ix_event_source", "source"),
        Index("ix_event_external", "external_id"),
        Index("ix_event_track", "track_id"),
        Index("ix_event_similarity", "top_similarity"),
        Index("ix_event_geo", "longitude", "latitude"),
        Index("ix_event_meta", "meta", postgresql_using="gin", postgresql_ops={"meta": "jsonb_path_ops"}),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    handler_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime] = mapped_column(default=utcnow)
    source: Mapped[str | None] = mapped_column(String(128), nullable=True)
    tags: Mapped[list[str] | None] = mapped_column(PLAIN_JSON, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_data: Mapped[str | None] = mapped_column(String(128), nullable=True)
    track_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    stream_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    face_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(FLEX_JSON, nullable=True)
    top_candidate_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    top_similarity: Mapped[float | None] = mapped_column(Float, nullable=True)
    meta: Mapped[dict[str, Any] | None] = mapped_column(FLEX_JSON, nullable=True)
    detections: Mapped[list[Any] | None] = mapped_column(PLAIN_JSON, nullable=True)
    # The source image in the image store's "image" kind (image_origin_policy): what gc removes with it.
    image_origin_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)


class EventDescriptor(AccountOwned, Base):
    """The descriptor of an event's largest face, per version: what makes events matching
    candidates and references. Apart from ``event`` so pages of events do not read 512 bytes a row."""

    __tablename__ = "event_descriptor"
    not_found = "event_not_found"
    label = "event"
    __table_args__ = (Index("ix_event_descriptor_account", "account_id", "version"),)

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("event.event_id", ondelete="CASCADE"),
                                                primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    descriptor: Mapped[bytes] = mapped_column(LargeBinary)


# What the hourly roll-up writes for an event without a handler or a source: a key column holds
# no NULL (it would not meet itself in an upsert), and neither value can be a real one (handler
# ids are time-ordered, a source has at most 128 characters).
NO_HANDLER = uuid.UUID(int=0)
NO_SOURCE = "~" * 129


class EventStatsHourly(AccountOwned, Base):
    """Events counted per account, hour, handler and source, with their best matches' similarity
    summed, counted, least and greatest: what statistics over weeks and months read instead of the
    events themselves (app.events.service.stats chooses). Written in the events' transaction."""

    __tablename__ = "event_stats_hourly"
    not_found = "event_not_found"
    label = "event statistics"

    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"),
                                                  primary_key=True)
    create_time: Mapped[datetime] = mapped_column(primary_key=True)  # the hour's start, UTC
    handler_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    source: Mapped[str] = mapped_column(String(129), primary_key=True)
    events: Mapped[int] = mapped_column(Integer)
    similarity_count: Mapped[int] = mapped_column(Integer)
    similarity_sum: Mapped[float] = mapped_column(Float)
    similarity_min: Mapped[float | None] = mapped_column(Float, nullable=True)
    similarity_max: Mapped[float | None] = mapped_column(Float, nullable=True)


class GeneralEvent(_Location, AccountOwned, Base):
    __tablename__ = "general_event"
    not_found = "event_not_found"
    label = "general event"
    __table_args__ = (
        Index("ix_general_event_account_time", "account_id", "create_time", "event_id"),
        Index("ix_general_event_type", "event_type"),
        Index("ix_general_event_stream", "stream_id"),
        Index("ix_general_event_track", "track_id"),
        Index("ix_general_event_geo", "longitude", "latitude"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=time_ordered_uuid)
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("account.account_id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(64))
    create_time: Mapped[datetime] = mapped_column(default=utcnow)
    end_time: Mapped[datetime] = mapped_column(default=utcnow)
    track_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    stream_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)
    content: Mapped[dict[str, Any]] = mapped_column(FLEX_JSON)


class Outbox(Base):
    """One row per saved (or announced) event, in commit order (``seq``), written in the event's
    transaction: what webhooks and websockets are fed from, so an event is announced exactly when
    it exists."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(SEQ, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    account_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    time: Mapped[datetime] = mapped_column(default=utcnow)
    # For an event with callbacks whose filters held: the event as subscribers get it (also when
    # the handler does not store events), and those callbacks (app.notifications relays them).
    payload: Mapped[dict[str, Any] | None] = mapped_column(PLAIN_JSON, nullable=True)
    callbacks: Mapped[list[dict[str, Any]] | None] = mapped_column(PLAIN_JSON, nullable=True)
