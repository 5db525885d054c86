"""SDK/raw descriptor formats, aggregation and the distance -> similarity map."""
from __future__ import annotations

import base64
import struct

import numpy as np
import pytest

from inference.descriptor_format import (
    DEFAULT_DISTANCE_THRESHOLD,
    DEFAULT_DISTANCE_THRESHOLDS,
    DEFAULT_SIMILARITY_THRESHOLD,
    DESCRIPTOR_LENGTHS,
    DESCRIPTOR_VERSION,
    MIRRORED_VERSION,
    SIGNATURE,
    SIMILARITY_EXPONENT,
    SINGLE_PASS_VERSION,
    DescriptorFormatError,
    aggregate,
    decode_base64,
    decode_raw,
    distance_for_similarity,
    distance_threshold,
    encode_raw,
    pack,
    similarity,
    unpack,
)


@pytest.fixture()
def vector() -> np.ndarray:
    return np.random.default_rng(7).normal(0, 0.12, 128).astype(np.float32)


def test_sdk_layout_and_round_trip(vector: np.ndarray) -> None:
    data = pack(vector)
    assert len(data) == 8 + 4 * 128
    assert data[:4] == SIGNATURE
    assert struct.unpack("<I", data[4:8])[0] == DESCRIPTOR_VERSION
    version, back = unpack(data)
    assert version == DESCRIPTOR_VERSION and back.dtype == np.float32
    assert back.tobytes() == vector.tobytes()
    assert pack(back) == data  # bytes-identical


def test_raw_round_trip(vector: np.ndarray) -> None:
    text = encode_raw(vector)
    assert base64.b64decode(text) == vector.astype("<f4").tobytes()
    back = decode_raw(text)
    assert back.tobytes() == vector.tobytes()
    assert encode_raw(back) == text


def test_decode_base64_accepts_both_formats(vector: np.ndarray) -> None:
    sdk = base64.b64encode(pack(vector)).decode()
    assert decode_base64(sdk)[1].tobytes() == vector.tobytes()
    assert decode_base64(encode_raw(vector))[1].tobytes() == vector.tobytes()


def test_unknown_version_and_bad_signature(vector: np.ndarray) -> None:
    data = bytearray(pack(vector))
    data[4:8] = struct.pack("<I", 56)
    with pytest.raises(DescriptorFormatError, match="unknown descriptor version 56"):
        unpack(bytes(data))
    with pytest.raises(DescriptorFormatError, match="signature"):
        unpack(b"XXXX" + pack(vector)[4:])
    with pytest.raises(DescriptorFormatError, match="unknown descriptor version"):
        pack(vector, version=7)


@pytest.mark.parametrize("cut", [0, 5, 8, 8 + 511, 8 + 513])
def test_wrong_lengths(vector: np.ndarray, cut: int) -> None:
    data = (pack(vector) + b"\0")[:cut]
    with pytest.raises(DescriptorFormatError):
        unpack(data)


def test_raw_errors(vector: np.ndarray) -> None:
    with pytest.raises(DescriptorFormatError, match="base64"):
        decode_raw("not base64 !!")
    with pytest.raises(DescriptorFormatError, match="512 bytes"):
        decode_raw(base64.b64encode(vector.tobytes()[:-4]))
    with pytest.raises(DescriptorFormatError, match="128 values"):
        encode_raw(vector[:100])


def test_nan_rejected(vector: np.ndarray) -> None:
    bad = vector.copy()
    bad[3] = np.nan
    with pytest.raises(DescriptorFormatError, match="NaN"):
        pack(bad)
    raw = bytearray(pack(vector))
    raw[8:12] = np.array([np.inf], dtype="<f4").tobytes()
    with pytest.raises(DescriptorFormatError, match="NaN or infinite"):
        unpack(bytes(raw))


def test_values_whose_squared_norm_overflows_float32_are_rejected(vector: np.ndarray) -> None:
    """Finite values that matching cannot score: each is below float32's limit, their squares sum past it."""
    huge = np.full_like(vector, 3e38)
    with pytest.raises(DescriptorFormatError, match="too large"):
        pack(huge)
    with pytest.raises(DescriptorFormatError, match="too large"):
        decode_raw(base64.b64encode(huge.astype("<f4").tobytes()).decode())
    assert len(pack(vector * 1e18)) == len(pack(vector))  # large but scorable


def test_aggregate_is_normalised_mean() -> None:
    rng = np.random.default_rng(3)
    person = rng.normal(0, 0.12, 128)
    samples = np.stack([person + rng.normal(0, 0.04, 128) for _ in range(6)]).astype(np.float32)
    samples[0] *= 3  # a larger norm must not pull the mean towards that sample
    agg = aggregate(samples)
    assert agg.shape == (128,) and agg.dtype == np.float32
    unit = samples / np.linalg.norm(samples, axis=1, keepdims=True)
    expected_dir = unit.mean(axis=0) / np.linalg.norm(unit.mean(axis=0))
    assert np.allclose(agg / np.linalg.norm(agg), expected_dir, atol=1e-6)
    assert np.isclose(np.linalg.norm(agg), np.linalg.norm(samples, axis=1).mean(), rtol=1e-5)
    # the aggregate is closer to the person than a typical single sample is
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)  # noqa: E731
    assert cos(agg, person) > np.mean([cos(s, person) for s in samples])
    assert np.allclose(aggregate(samples[1:2]), samples[1], atol=1e-6)
    with pytest.raises(DescriptorFormatError):
        aggregate(np.zeros((0, 128)))
    with pytest.raises(DescriptorFormatError):
        aggregate(np.zeros((2, 128)))


@pytest.mark.parametrize("version", sorted(DEFAULT_DISTANCE_THRESHOLDS))
def test_similarity_is_monotone_and_calibrated(version: int) -> None:
    t = DEFAULT_DISTANCE_THRESHOLDS[version]
    d = np.linspace(0, 2, 401)
    s = similarity(d, version)
    assert np.all(np.diff(s) < 0)
    assert np.all((s >= 0) & (s <= 1))
    assert similarity(0.0, version) == 1.0  # exactly: a descriptor compared with itself
    assert similarity(t, version) == DEFAULT_SIMILARITY_THRESHOLD == 0.5  # exactly: the API's 0.5 is t
    # the log-logistic's own values: twice the threshold is 1 / (1 + 2^k), half of it 1 / (1 + 2^-k)
    assert similarity(2 * t, version) == pytest.approx(1 / (1 + 2**SIMILARITY_EXPONENT), rel=1e-12)
    assert similarity(t / 2, version) == pytest.approx(1 / (1 + 2**-SIMILARITY_EXPONENT), rel=1e-12)
    assert distance_for_similarity(0.5, version) == t
    for value in (1e-6, 0.1, 0.5, 0.9, 0.999999):
        assert similarity(distance_for_similarity(value, version), version) == pytest.approx(value, rel=1e-12)
    for distance in (0.05, 0.3, t, 0.9, 1.7):
        assert distance_for_similarity(similarity(distance, version), version) == pytest.approx(distance, rel=1e-9)
    assert similarity(1e6, version) == pytest.approx(0.0, abs=1e-40) and similarity(np.inf, version) == 0.0
    with pytest.raises(ValueError):
        distance_for_similarity(1.0, version)


def test_a_descriptor_against_itself_scores_one(vector: np.ndarray) -> None:
    for version in DESCRIPTOR_LENGTHS:
        _, back = unpack(pack(vector, version))
        assert similarity(float(np.linalg.norm(back - vector)), version) == 1.0


def test_each_version_has_its_own_map() -> None:
    assert DESCRIPTOR_VERSION == MIRRORED_VERSION  # the default is the more accurate version
    assert set(DEFAULT_DISTANCE_THRESHOLDS) == set(DESCRIPTOR_LENGTHS) == {MIRRORED_VERSION, SINGLE_PASS_VERSION}
    assert DEFAULT_DISTANCE_THRESHOLD == distance_threshold() == DEFAULT_DISTANCE_THRESHOLDS[DESCRIPTOR_VERSION]
    between = np.mean(list(DEFAULT_DISTANCE_THRESHOLDS.values()))
    low, high = sorted(DEFAULT_DISTANCE_THRESHOLDS, key=DEFAULT_DISTANCE_THRESHOLDS.get)
    assert low != high and similarity(between, low) < 0.5 < similarity(between, high)
    assert similarity(0.4) == similarity(0.4, DESCRIPTOR_VERSION)
    with pytest.raises(DescriptorFormatError, match="unknown descriptor version 56"):
        similarity(0.4, 56)
    with pytest.raises(DescriptorFormatError, match="unknown descriptor version 56"):
        distance_for_similarity(0.5, 56)
