"""Descriptor formats (SDK binary and raw base64), aggregation, and distance -> similarity.

SDK format: 4-byte signature ``SIGNATURE``, 4-byte little-endian version, then the descriptor
as float32 little-endian. The version names the network (and its alignment) that produced the
vector: descriptors of different versions are not comparable, so unknown versions and wrong
lengths are rejected instead of guessed at.

Both versions are dlib's ``dlib_face_recognition_resnet_model_v1`` on 150x150 chips aligned with
the 5-point predictor (padding 0.25), not L2-normalised:

- 101: the mean of the chip's and its mirror image's outputs (two passes): the most accurate
  (LFW view 2 fold 1: 99.50% at the default threshold, TAR 98.0% at FAR 1e-3);
- 102 (``DESCRIPTOR_VERSION``, the default): the chip's output alone, one pass: 17% more images
  per second through the whole pipeline on the CPU, 99.17% (TAR 97.67%) on the same pairs.

They share the distance threshold (0.614 lies in the best-accuracy interval of both on fold 1)
but are still not mixed: matching compares descriptors of one version. Numbers below 100 are the
commercial platform's own networks (52, 54, 56, 59, ...), so ours start at 101: a foreign
descriptor can never pass for ours.

Raw format: base64 of the float32 little-endian bytes alone (the version is implied by context).
"""
from __future__ import annotations

import base64
import binascii
import math
import struct

import numpy as np

SIGNATURE = b"FGDS"  # "facegate descriptor, SDK layout"
MIRRORED_VERSION = 101
DESCRIPTOR_VERSION = 102  # the default (setting face_descriptor_version)
DESCRIPTOR_LENGTHS = {MIRRORED_VERSION: 128, DESCRIPTOR_VERSION: 128}  # floats per descriptor, by version

# Matching rule for both versions: same person when the L2 distance is below this. The midpoint
# of version 101's interval of best accuracy (0.610-0.618) on LFW view 2 fold 1 with this
# pipeline, inside version 102's (0.6139-0.6373); dlib's own rule is 0.6 for its pipeline (its
# alignment uses HOG boxes).
DEFAULT_DISTANCE_THRESHOLD = 0.614
DEFAULT_SIMILARITY_THRESHOLD = 0.5
# Slope of the logistic distance -> similarity map, per unit of distance. 11 spreads fold 1's
# distances over the scale: its median genuine-pair distance (0.42) maps to about 0.89, its
# median impostor distance (0.81) to about 0.10.
SIMILARITY_SLOPE = 11.0

_HEADER = struct.Struct("<4sI")


class DescriptorFormatError(ValueError):
    """Bytes or text that are not a valid descriptor of a known version."""


def _check_vector(vector: np.ndarray, version: int) -> np.ndarray:
    if version not in DESCRIPTOR_LENGTHS:
        raise DescriptorFormatError(f"unknown descriptor version {version} (known: {sorted(DESCRIPTOR_LENGTHS)})")
    values = np.asarray(vector, dtype=np.float32).reshape(-1)
    if values.size != DESCRIPTOR_LENGTHS[version]:
        raise DescriptorFormatError(
            f"descriptor version {version} has {DESCRIPTOR_LENGTHS[version]} values, got {values.size}"
        )
    if not np.isfinite(values).all():
        raise DescriptorFormatError("descriptor contains NaN or infinite values")
    with np.errstate(over="ignore"):
        squared_norm = np.dot(values, values)
    if not np.isfinite(squared_norm):  # matching scores in float32: such a vector never matches anything
        raise DescriptorFormatError("descriptor values too large")
    return values


def payload_bytes(vector: np.ndarray, version: int = DESCRIPTOR_VERSION) -> bytes:
    """The checked float32 little-endian payload: what the SDK format carries after its header,
    what the raw format encodes, and what the database stores."""
    return _check_vector(vector, version).astype("<f4").tobytes()


def pack(vector: np.ndarray, version: int = DESCRIPTOR_VERSION) -> bytes:
    """SDK binary format."""
    return _HEADER.pack(SIGNATURE, version) + payload_bytes(vector, version)


def unpack(data: bytes) -> tuple[int, np.ndarray]:
    """SDK binary format -> (version, float32 vector)."""
    if len(data) < _HEADER.size:
        raise DescriptorFormatError(f"descriptor of {len(data)} bytes is shorter than its {_HEADER.size}-byte header")
    signature, version = _HEADER.unpack_from(data)
    if signature != SIGNATURE:
        raise DescriptorFormatError(f"bad descriptor signature {signature!r} (expected {SIGNATURE!r})")
    if version not in DESCRIPTOR_LENGTHS:
        raise DescriptorFormatError(f"unknown descriptor version {version} (known: {sorted(DESCRIPTOR_LENGTHS)})")
    payload = data[_HEADER.size :]
    if len(payload) != 4 * DESCRIPTOR_LENGTHS[version]:
        raise DescriptorFormatError(
            f"descriptor version {version} needs {4 * DESCRIPTOR_LENGTHS[version]} payload bytes, got {len(payload)}"
        )
    return version, _check_vector(np.frombuffer(payload, dtype="<f4"), version)


def encode_raw(vector: np.ndarray, version: int = DESCRIPTOR_VERSION) -> str:
    """Raw format: base64 of the float32 little-endian bytes."""
    return base64.b64encode(payload_bytes(vector, version)).decode("ascii")


def b64decode(text: str | bytes) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DescriptorFormatError(f"descriptor is not valid base64: {exc}") from exc


def decode_raw(text: str | bytes, version: int = DESCRIPTOR_VERSION) -> np.ndarray:
    """Raw format -> float32 vector of the given version."""
    if version not in DESCRIPTOR_LENGTHS:
        raise DescriptorFormatError(f"unknown descriptor version {version} (known: {sorted(DESCRIPTOR_LENGTHS)})")
    data = b64decode(text)
    if len(data) != 4 * DESCRIPTOR_LENGTHS[version]:
        raise DescriptorFormatError(
            f"raw descriptor version {version} needs {4 * DESCRIPTOR_LENGTHS[version]} bytes, got {len(data)}"
        )
    return _check_vector(np.frombuffer(data, dtype="<f4"), version)


def decode_base64(text: str | bytes) -> tuple[int, np.ndarray]:
    """A client's base64 descriptor in either format: SDK if it carries our signature, else raw of the default version."""
    data = b64decode(text)
    if data[: len(SIGNATURE)] == SIGNATURE:
        return unpack(data)
    return DESCRIPTOR_VERSION, decode_raw(text)


def aggregate(descriptors: np.ndarray) -> np.ndarray:
    """One descriptor for several images of one person: the normalised mean.

    Each descriptor is scaled to unit length before averaging so that no single image weighs
    more because of its norm (which carries no identity); the mean direction is the estimate
    of the person. It is then scaled back to the inputs' mean norm because matching compares
    raw (unnormalised) descriptors against a distance threshold fixed on that scale.
    """
    values = np.asarray(descriptors, dtype=np.float64)
    if values.ndim != 2 or len(values) == 0:
        raise DescriptorFormatError("aggregation needs a non-empty (N, D) array of descriptors")
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    if not np.isfinite(values).all() or (norms == 0).any():
        raise DescriptorFormatError("cannot aggregate zero, NaN or infinite descriptors")
    mean = (values / norms).mean(axis=0)
    length = np.linalg.norm(mean)
    if length == 0:
        raise DescriptorFormatError("descriptors cancel out; no mean direction")
    return (mean / length * norms.mean()).astype(np.float32)


def similarity(distance: np.ndarray | float) -> np.ndarray | float:
    """Map L2 distance to a similarity in [0, 1]: ``1 / (1 + exp(SLOPE * (d - DEFAULT_DISTANCE_THRESHOLD)))``.

    Strictly decreasing in distance, so thresholding similarity is thresholding distance, and
    the default distance threshold (0.614) maps to exactly ``DEFAULT_SIMILARITY_THRESHOLD`` =
    0.5. Distance 0 maps to 0.999, distance 1 to 0.014; dlib's 0.6 maps to 0.538.
    """
    d = np.asarray(distance, dtype=np.float64)
    out = 0.5 * (1.0 - np.tanh(0.5 * SIMILARITY_SLOPE * (d - DEFAULT_DISTANCE_THRESHOLD)))  # overflow-free logistic
    return float(out) if out.ndim == 0 else out


def distance_for_similarity(value: float) -> float:
    """Inverse of ``similarity``: the distance threshold equivalent to a similarity threshold."""
    if not 0.0 < value < 1.0:
        raise ValueError("similarity threshold must be strictly between 0 and 1")
    return DEFAULT_DISTANCE_THRESHOLD + math.log(1.0 / value - 1.0) / SIMILARITY_SLOPE
