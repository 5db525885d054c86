"""Face detector on real photos: recall on dlib's annotated group photos, no faces on animals."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.models.detector import FaceDetector

SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))
FACES = SHARED / "faces"


def _rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector("cpu")


@pytest.fixture(scope="module")
def annotated() -> dict[str, list[tuple[float, ...]]]:
    boxes: dict[str, list[tuple[float, ...]]] = {}
    with open(FACES / "multi" / "face_boxes_dlib.csv") as f:
        for row in csv.DictReader(f):
            boxes.setdefault(row["path"], []).append(tuple(float(row[k]) for k in "xywh"))
    return boxes


def test_recall_on_annotated_faces(detector: FaceDetector, annotated: dict) -> None:
    paths = sorted(annotated)
    found = detector.detect([_rgb(FACES / p) for p in paths])
    total = hits = 0
    for path, dets in zip(paths, found):
        for gt in annotated[path]:
            total += 1
            hits += any(_iou(d.box, gt) >= 0.4 for d in dets)
    assert total == 43
    assert hits / total >= 0.95, f"recall {hits}/{total}"


def test_no_faces_on_noface_images(detector: FaceDetector) -> None:
    files = sorted((FACES / "noface").glob("*.jpg"))
    assert len(files) >= 6
    found = detector.detect([_rgb(p) for p in files])
    assert {p.name: len(d) for p, d in zip(files, found) if d} == {}


def test_images_smaller_than_the_first_window(detector: FaceDetector) -> None:
    """An image too small for P-Net's 12-pixel window at the first scale has no pyramid level at
    all: no faces, alone or beside an image that has some."""
    tiny = [np.full((1, 1, 3), 128, np.uint8), np.full((8, 30, 3), 200, np.uint8)]
    assert detector.detect(tiny) == [[], []]
    portrait = _rgb(FACES / "lfw/Colin_Powell/Colin_Powell_0001.jpg")
    found = detector.detect([tiny[0], portrait])
    assert found[0] == [] and len(found[1]) >= 1


def test_many_faces_and_keypoints_inside_boxes(detector: FaceDetector, annotated: dict) -> None:
    path = "multi/dlib_2007_007763.jpg"
    dets = detector.detect([_rgb(FACES / path)])[0]
    assert len(dets) >= len(annotated[path]) - 1 >= 6
    for d in dets:
        x, y, w, h = d.box
        assert d.keypoints is not None and d.keypoints.shape == (5, 2)
        assert np.all((d.keypoints[:, 0] > x) & (d.keypoints[:, 0] < x + w))
        assert np.all((d.keypoints[:, 1] > y) & (d.keypoints[:, 1] < y + h))
        left_eye, right_eye, _, mouth_l, mouth_r = d.keypoints
        assert left_eye[0] < right_eye[0] and max(left_eye[1], right_eye[1]) < min(mouth_l[1], mouth_r[1])


def test_min_face_and_score_threshold(detector: FaceDetector) -> None:
    image = _rgb(FACES / "multi" / "dlib_2007_007763.jpg")  # faces of 37-45 px
    large = detector.detect([image], min_face=44)[0]
    assert all(d.box[2] >= 44 for d in large)
    assert 0 < len(large) < len(detector.detect([image])[0])
    assert detector.detect([image], score_threshold=1.01) == [[]]


def test_batch_matches_single_images(detector: FaceDetector) -> None:
    files = sorted((FACES / "lfw").glob("*/*.jpg"))[:3]  # same size: one batched P-Net pass
    images = [_rgb(p) for p in files]
    batched = detector.detect(images)
    for image, dets in zip(images, batched):
        single = detector.detect([image])[0]
        assert len(single) == len(dets) >= 1
        for a, b in zip(single, dets):
            assert np.allclose(a.box, b.box, atol=1e-2) and abs(a.score - b.score) < 1e-4


def test_large_images_detected_on_a_downscaled_copy_match_full_resolution() -> None:
    """The cap changes the pyramid, not the answer: same faces, boxes and keypoints in source
    pixels (MTCNN's regression jitters by a few % of the box between pyramid samplings)."""
    capped, full = FaceDetector("cpu", max_side=800), FaceDetector("cpu", max_side=None)
    for path in ("multi/dlib_bald_guys.jpg", "multi/face_recognition_obama_and_biden.jpg"):  # 1280 and 2000 px, 24 and 3 faces
        image = _rgb(FACES / path)
        assert max(image.shape[:2]) > 800
        reference, found = full.detect([image])[0], capped.detect([image])[0]
        assert len(found) == len(reference) >= 3, path
        for ref in reference:
            best = max(found, key=lambda d: _iou(d.box, ref.box))
            assert _iou(best.box, ref.box) >= 0.75, (path, ref.box, best.box)
            assert np.abs(best.keypoints - ref.keypoints).mean() < 0.05 * ref.box[2], path
