"""Body detector (MediaPipe BlazePose detector) on real people photos, and the body warp."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.models.body_detector import BODY_SAMPLE_SIZE, BodyDetector, body_warp, ssd_anchors

SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))
FACES = SHARED / "faces"


def _rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> BodyDetector:
    return BodyDetector("cpu")


def test_anchor_count_matches_graph(detector: BodyDetector) -> None:
    assert len(ssd_anchors(224, [8, 16, 32, 32, 32])) == 2254 == len(detector.anchors)


def test_people_found_on_body_photos(detector: BodyDetector) -> None:
    files = sorted((FACES / "bodies").glob("*.jpg"))
    assert len(files) == 21
    found = detector.detect([_rgb(p) for p in files])
    with_person = sum(1 for dets in found if dets)
    assert with_person >= 17, with_person
    upright = [d for dets in found for d in dets]
    # mid-hip keypoint below mid-shoulder for (nearly all) upright people
    assert np.mean([d.keypoints[0, 1] > d.keypoints[2, 1] for d in upright]) >= 0.9


def test_no_people_on_noface_images(detector: BodyDetector) -> None:
    files = sorted((FACES / "noface").glob("*.jpg"))
    found = detector.detect([_rgb(p) for p in files])
    assert {p.name: len(d) for p, d in zip(files, found) if d} == {}


def test_body_warp(detector: BodyDetector) -> None:
    image = _rgb(FACES / "bodies" / "yolov5_bus.jpg")
    dets = detector.detect([image])[0]
    assert dets
    sample = body_warp(image, dets[0].box)
    assert sample.shape == (BODY_SAMPLE_SIZE[1], BODY_SAMPLE_SIZE[0], 3) and sample.dtype == np.uint8
    assert sample.std() > 10  # a real crop of the photo, not padding
    assert body_warp(image, (0, 0, 100, 100), size=(64, 32)).shape == (32, 64, 3)
