"""The device pipeline (every stage in torch on the models' device), run on the CPU: the same faces
as the host path, and the batch size a device gets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference import pipeline, registry

from .conftest import load_rgb

GiB = 1 << 30


def test_batch_limit_follows_the_setting_then_the_device() -> None:
    assert pipeline.batch_limit(7, "cuda", memory_bytes=80 * GiB) == 7
    assert pipeline.batch_limit(0, "cpu") == pipeline.CPU_BATCH
    assert pipeline.batch_limit(0, "cuda", memory_bytes=8 * GiB) == 8 * GiB // 2 // pipeline.DEVICE_IMAGE_BYTES
    assert pipeline.batch_limit(0, "cuda", memory_bytes=80 * GiB) == pipeline.DEVICE_BATCH_MAX
    assert pipeline.batch_limit(0, "cuda", memory_bytes=GiB // 8) == 1


@pytest.fixture(scope="module")
def sample_images(faces_dir: Path) -> list[np.ndarray]:
    """LFW crops, group photos (small and border faces), large photos and a photo without a face."""
    paths = (sorted((faces_dir / "lfw").glob("*/*_0001.jpg"))[:6] + sorted((faces_dir / "multi").glob("*.jpg"))[:6]
             + sorted((faces_dir / "face_recognition").glob("*/*"))[:3] + sorted((faces_dir / "noface").glob("*"))[:1])
    return [load_rgb(p) for p in paths]


def test_device_path_finds_the_host_paths_faces(sample_images: list[np.ndarray]) -> None:
    registry.configure(device="cpu")
    host = pipeline.process(sample_images)
    device = pipeline.process_on_device(sample_images)
    assert sum(len(f) for f in host) >= 20
    for a, b in zip(host, device):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert np.abs(np.array(x.detection.box) - np.array(y.detection.box)).max() <= 0.5
            assert np.abs(x.landmarks5 - y.landmarks5).max() <= 0.5
            assert np.linalg.norm(x.descriptor - y.descriptor) <= 0.01
            assert x.chip.shape == y.chip.shape == (150, 150, 3)


def test_locate_on_a_batch_without_faces(sample_images: list[np.ndarray]) -> None:
    registry.configure(device="cpu")
    blank = np.zeros((64, 80, 3), np.uint8)
    assert pipeline.process_on_device([blank, blank]) == [[], []]
    (dets, points, chips), = pipeline.locate([blank])
    assert dets == [] and points.shape == (0, 5, 2) and chips.shape == (0, 150, 150, 3)
