"""Temporary attributes: descriptors, basic attributes and sample ids that live for a TTL.

They are kept in Redis when ``attributes_redis_url`` is set (the key's own TTL frees them) and in
the ``attribute`` table otherwise (an expired row answers 404, is deleted when read, and every
process sweeps expired rows at most once a minute when it creates one). Both back-ends store the
same JSON document, so they behave identically and tests run one suite over both.

:func:`create_attribute` is the entry point for every producer: the REST handler with external
data, and extraction tasks with the descriptors they computed.
"""
from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import redis
from sqlalchemy import delete

from app import settings
from app.db import session_scope
from app.errors import APIError
from app.models import Attribute
from app.services.changes import redis_client
from inference import descriptor_format as fmt

_SWEEP_EVERY_S = 60.0


def to_float32_bytes(vector: bytes | np.ndarray | Iterable[float], version: int) -> bytes:
    """Validate a descriptor of ``version`` and return its stored form (float32 little-endian)."""
    if isinstance(vector, (bytes, bytearray, memoryview)):
        if len(vector) % 4:
            raise APIError("bad_descriptor", f"descriptor of {len(vector)} bytes is not float32 data")
        vector = np.frombuffer(bytes(vector), dtype="<f4")
    try:
        # payload_bytes checks the version, the length and that every value is finite.
        return fmt.payload_bytes(np.asarray(vector, dtype=np.float32), version)
    except fmt.DescriptorFormatError as exc:
        raise APIError("bad_descriptor", str(exc)) from None


def decode_descriptor(item: Mapping[str, Any]) -> tuple[int, bytes]:
    """(version, float32 bytes) from a request's ``{"format", "descriptor", "version"}``."""
    given = item.get("version")
    try:
        if item.get("format", "sdk") == "sdk":
            version, vector = fmt.unpack(fmt.b64decode(item["descriptor"]))
            if given is not None and given != version:
                raise APIError("bad_descriptor", f"version {given} given but the SDK descriptor is version {version}")
        else:
            version = given if given is not None else settings.current().face_descriptor_version
            vector = fmt.decode_raw(item["descriptor"], version)
    except fmt.DescriptorFormatError as exc:
        raise APIError("bad_descriptor", str(exc)) from None
    return version, to_float32_bytes(vector, version)


def decode_descriptors(items: Iterable[Mapping[str, Any]]) -> dict[int, bytes]:
    """Request descriptors by version; one descriptor per version."""
    out: dict[int, bytes] = {}
    for item in items:
        version, data = decode_descriptor(item)
        if version in out:
            raise APIError("bad_descriptor", f"two descriptors of version {version}")
        out[version] = data
    return out


def sdk_base64(version: int, data: bytes) -> str:
    """A stored descriptor as the SDK format, base64: what GET answers and clients send back."""
    return base64.b64encode(fmt.pack(np.frombuffer(data, dtype="<f4"), version)).decode()


@dataclass
class AttributeRecord:
    attribute_id: uuid.UUID
    account_id: uuid.UUID
    create_time: datetime
    expire_time: datetime
    descriptors: dict[int, bytes] = field(default_factory=dict)
    basic_attributes: dict[str, Any] | None = None
    sample_ids: list[uuid.UUID] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "attribute_id": str(self.attribute_id), "account_id": str(self.account_id),
            "create_time": self.create_time.isoformat(), "expire_time": self.expire_time.isoformat(),
            "descriptors": {str(v): base64.b64encode(d).decode() for v, d in self.descriptors.items()},
            "basic_attributes": self.basic_attributes, "sample_ids": [str(s) for s in self.sample_ids],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> AttributeRecord:
        return cls(
            attribute_id=uuid.UUID(doc["attribute_id"]), account_id=uuid.UUID(doc["account_id"]),
            create_time=datetime.fromisoformat(doc["create_time"]),
            expire_time=datetime.fromisoformat(doc["expire_time"]),
            descriptors={int(v): base64.b64decode(d) for v, d in doc["descriptors"].items()},
            basic_attributes=doc["basic_attributes"], sample_ids=[uuid.UUID(s) for s in doc["sample_ids"]],
        )

    def as_response(self) -> dict[str, Any]:
        return {"attribute_id": self.attribute_id, "account_id": self.account_id,
                "create_time": self.create_time, "expire_time": self.expire_time,
                "basic_attributes": self.basic_attributes, "sample_ids": self.sample_ids,
                "descriptors": [{"version": v, "descriptor": sdk_base64(v, d)}
                                for v, d in sorted(self.descriptors.items())]}


class AttributeStore(ABC):
    @abstractmethod
    def put(self, record: AttributeRecord, ttl_s: int) -> None: ...

    @abstractmethod
    def get(self, attribute_id: uuid.UUID) -> AttributeRecord | None:
        """The live record, or None when it never existed or has expired."""

    @abstractmethod
    def delete(self, attribute_id: uuid.UUID) -> None: ...

    @abstractmethod
    def cleanup(self) -> int:
        """Free the storage of expired records; how many were removed."""


class RedisAttributeStore(AttributeStore):
    PREFIX = "facegate:attribute:"

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def put(self, record: AttributeRecord, ttl_s: int) -> None:
        self.client.set(self.PREFIX + str(record.attribute_id), json.dumps(record.to_json()), ex=ttl_s)

    def get(self, attribute_id: uuid.UUID) -> AttributeRecord | None:
        raw = self.client.get(self.PREFIX + str(attribute_id))
        return AttributeRecord.from_json(json.loads(raw)) if raw is not None else None

    def delete(self, attribute_id: uuid.UUID) -> None:
        self.client.delete(self.PREFIX + str(attribute_id))

    def cleanup(self) -> int:
        return 0  # Redis drops a key when its TTL runs out


class DatabaseAttributeStore(AttributeStore):
    _last_sweep = 0.0
    _sweep_lock = threading.Lock()

    def put(self, record: AttributeRecord, ttl_s: int) -> None:
        self._maybe_sweep()
        with session_scope() as session:
            session.add(Attribute(attribute_id=record.attribute_id, account_id=record.account_id,
                                  expire_time=record.expire_time, data=record.to_json()))

    def get(self, attribute_id: uuid.UUID) -> AttributeRecord | None:
        with session_scope() as session:
            row = session.get(Attribute, attribute_id)
            if row is None:
                return None
            if row.expire_time <= datetime.now(timezone.utc):
                session.delete(row)
                return None
            return AttributeRecord.from_json(row.data)

    def delete(self, attribute_id: uuid.UUID) -> None:
        with session_scope() as session:
            session.execute(delete(Attribute).where(Attribute.attribute_id == attribute_id))

    def cleanup(self) -> int:
        with session_scope() as session:
            result = session.execute(delete(Attribute).where(Attribute.expire_time <= datetime.now(timezone.utc)))
            return result.rowcount or 0

    def _maybe_sweep(self) -> None:
        # Expired rows nobody reads again would stay forever without a sweep; a minute's delay
        # keeps the cost to one indexed DELETE per minute per process.
        cls = type(self)
        with cls._sweep_lock:
            if time.monotonic() - cls._last_sweep < _SWEEP_EVERY_S:
                return
            cls._last_sweep = time.monotonic()
        self.cleanup()


def store() -> AttributeStore:
    url = settings.current().attributes_redis_url
    return RedisAttributeStore(redis_client(url)) if url else DatabaseAttributeStore()


def _ttl(ttl: int | None) -> int:
    s = settings.current()
    if ttl is None:
        return s.attribute_ttl_default_s
    if not 1 <= ttl <= s.attribute_ttl_max_s:
        raise APIError("validation", f"ttl: must be between 1 and {s.attribute_ttl_max_s} seconds")
    return ttl


def create_attribute(account_id: uuid.UUID, *, descriptors: Mapping[int, bytes | np.ndarray] | None = None,
                     basic_attributes: Mapping[str, Any] | None = None,
                     sample_ids: Iterable[uuid.UUID] = (), ttl: int | None = None) -> AttributeRecord:
    """Store a temporary attribute; descriptors map model version to a float32 vector or its bytes."""
    ttl_s = _ttl(ttl)
    now = datetime.now(timezone.utc)
    record = AttributeRecord(
        attribute_id=uuid.uuid4(), account_id=account_id, create_time=now,
        expire_time=now + timedelta(seconds=ttl_s),
        descriptors={v: to_float32_bytes(d, v) for v, d in (descriptors or {}).items()},
        basic_attributes=dict(basic_attributes) if basic_attributes else None,
        sample_ids=list(sample_ids))
    try:
        store().put(record, ttl_s)
    except redis.RedisError as exc:
        raise APIError("attributes_unavailable", f"attribute store: {exc}") from None
    return record


def get_attribute(account_id: uuid.UUID | None, attribute_id: uuid.UUID) -> AttributeRecord:
    """The live attribute; another account's (unless ``account_id`` is None) is as absent as an expired one."""
    try:
        record = store().get(attribute_id)
    except redis.RedisError as exc:
        raise APIError("attributes_unavailable", f"attribute store: {exc}") from None
    if record is None or (account_id is not None and record.account_id != account_id):
        raise APIError("attribute_not_found", f"attribute {attribute_id} not found or expired")
    return record


def delete_attribute(account_id: uuid.UUID, attribute_id: uuid.UUID) -> None:
    get_attribute(account_id, attribute_id)
    try:
        store().delete(attribute_id)
    except redis.RedisError as exc:
        raise APIError("attributes_unavailable", f"attribute store: {exc}") from None


def cleanup_expired() -> int:
    """Remove expired attributes now (the DB back-end also does this by itself once a minute)."""
    return store().cleanup()
