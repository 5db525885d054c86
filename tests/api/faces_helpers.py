"""Descriptors and shortcuts shared by the faces, lists, attributes and change-feed tests."""
from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from PIL import Image

from inference import descriptor_format as fmt

_rng = np.random.default_rng(20261125)


def vector(version: int = fmt.DESCRIPTOR_VERSION) -> np.ndarray:
    """A random unit descriptor of the size ``version`` needs."""
    v = _rng.standard_normal(fmt.DESCRIPTOR_LENGTHS[version]).astype("<f4")
    return v / np.linalg.norm(v)


def sdk(vec: np.ndarray | None = None, version: int = fmt.DESCRIPTOR_VERSION) -> str:
    vec = vector(version) if vec is None else vec
    return base64.b64encode(fmt.pack(vec, version)).decode()


def raw(vec: np.ndarray) -> str:
    return fmt.encode_raw(vec)


def new_list(client: Any, account: Any, user_data: str = "") -> str:
    r = client.post("/lists", json={"user_data": user_data}, headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["list_id"]


def new_face(client: Any, account: Any, **body: Any) -> str:
    r = client.post("/faces", json=body, headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["face_id"]


def face_with_descriptor(client: Any, account: Any, **body: Any) -> str:
    return new_face(client, account, descriptors=[{"descriptor": sdk()}], **body)


def face_sample(client: Any, account: Any) -> str:
    """A stored face sample of ``account``: faces and attributes only name samples their owner can read.
    The default local store gets the platform's buckets first, as ``facegate buckets create`` would."""
    from app.image_store import service as image_store

    image_store.create_platform_buckets()
    data = io.BytesIO()
    Image.fromarray(_rng.integers(0, 255, (250, 250, 3), dtype=np.uint8)).save(data, "JPEG")
    r = client.post("/samples/faces", data=data.getvalue(), content_type="image/jpeg", headers=account.auth)
    assert r.status_code == 201, r.json
    return r.json["sample_id"]
