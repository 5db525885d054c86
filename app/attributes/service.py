"""Temporary attributes: descriptors, basic attributes and sample ids that live for a TTL.

They are kept in Redis (``redis_url``; the embedded platform runs its own server), one JSON
document per key whose own TTL frees it, so nothing expired outlives its TTL and no sweep is needed.

:func:`create_attribute` is the entry point for every producer: the REST handler with external
data, and extraction tasks with the descriptors they computed.
"""
from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import redis

from app import settings
from app.db import redis_client
from app.errors import APIError
from app.image_store import service as image_store
from app.scope import Scope
from inference import descriptor_format as fmt


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


_PREFIX = "facegate:attribute:"


@contextmanager
def _store() -> Iterator[None]:
    """Redis errors as the API's 503 (its client waits dependency_timeout_s at most); the cause is
    kept for the log line, never shown (app.errors)."""
    try:
        yield
    except redis.RedisError as exc:
        raise APIError("attributes_unavailable", f"attribute store: {type(exc).__name__}") from exc


def _ttl(ttl: int | None) -> int:
    s = settings.current()
    if ttl is None:
        return s.attribute_ttl_default_s
    if not 1 <= ttl <= s.attribute_ttl_max_s:
        raise APIError("validation", f"ttl: must be between 1 and {s.attribute_ttl_max_s} seconds")
    return ttl


def stored_basic(basic: Mapping[str, Any]) -> dict[str, float]:
    """Estimated basic attributes (their JSON form, ``analysis.basic_json``) as temporary attributes
    and faces keep them: the age, and the gender as P(male) like external data gives it."""
    return {"age": float(basic["age"]), "gender": float(basic["gender_score"])}


def check_samples(scope: Scope, sample_ids: Iterable[uuid.UUID]) -> None:
    """Sample ids a client names must be face samples its scope can read: a face or attribute that
    points at another account's sample would hand that image to whoever reads the face."""
    kind = image_store.KINDS[image_store.SAMPLE_KINDS["face"]]
    for sample_id in dict.fromkeys(sample_ids):
        try:
            image_store.head(kind, scope, sample_id)
        except APIError as exc:
            if exc.kind == "object_not_found":
                raise APIError("object_not_found", f"sample_ids: face sample {sample_id} not found or expired") from None
            raise


def create_attribute(scope: Scope, *, descriptors: Mapping[int, bytes | np.ndarray] | None = None,
                     basic_attributes: Mapping[str, Any] | None = None,
                     sample_ids: Iterable[uuid.UUID] = (), ttl: int | None = None,
                     attribute_id: uuid.UUID | None = None) -> AttributeRecord:
    """Store a temporary attribute; descriptors map model version to a float32 vector or its bytes.

    Tasks pass an ``attribute_id`` derived from their task id, so a redelivered task overwrites its
    own attribute instead of leaving a second one behind.
    """
    ttl_s = _ttl(ttl)
    now = datetime.now(timezone.utc)
    record = AttributeRecord(
        attribute_id=attribute_id or uuid.uuid4(), account_id=scope.owner, create_time=now,
        expire_time=now + timedelta(seconds=ttl_s),
        descriptors={v: to_float32_bytes(d, v) for v, d in (descriptors or {}).items()},
        basic_attributes=dict(basic_attributes) if basic_attributes else None,
        sample_ids=list(sample_ids))
    with _store():
        redis_client().set(_PREFIX + str(record.attribute_id), json.dumps(record.to_json()), ex=ttl_s)
    return record


def get_attribute(scope: Scope, attribute_id: uuid.UUID) -> AttributeRecord:
    """The live attribute; one out of ``scope`` is as absent as an expired one."""
    with _store():
        raw = redis_client().get(_PREFIX + str(attribute_id))
    record = AttributeRecord.from_json(json.loads(raw)) if raw is not None else None
    if record is None or not scope.allows(record.account_id):
        raise APIError("attribute_not_found", f"attribute {attribute_id} not found or expired")
    return record


def delete_attribute(scope: Scope, attribute_id: uuid.UUID) -> None:
    get_attribute(scope, attribute_id)
    with _store():
        redis_client().delete(_PREFIX + str(attribute_id))
