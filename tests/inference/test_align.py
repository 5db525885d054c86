"""5-point landmarks and face chips against dlib itself, on real photos.

Our numpy shape predictor must give dlib's points (dlib rounds to whole pixels, we keep the
float), and our chip must be dlib's ``get_face_chip`` pixel for pixel, including chips cut from
big faces (dlib's pyramid path) and chips reaching outside the image.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from inference.align import FACE_CHIP_SIZE, chip_geometry, face_chip, face_chips, pyramid_down
from inference.formats.dlib_dnn import DlibFormatError, face_recognition_models_file
from inference.formats.dlib_shape import read_shape_predictor


def dlib_points(shape: Any) -> np.ndarray:
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)


def test_shape_predictor_file_structure() -> None:
    model = read_shape_predictor(face_recognition_models_file("shape_predictor_5_face_landmarks.dat"))
    assert model.initial_shape.shape == (5, 2)
    assert len(model.cascades) == 15
    level = model.cascades[0]
    assert level.idx1.shape == (500, 15) and level.leaves.shape == (500, 16, 10)
    assert level.anchor.max() < 5 and len(level.anchor) == len(level.deltas)


def test_truncated_shape_predictor_rejected(tmp_path: Any) -> None:
    data = face_recognition_models_file("shape_predictor_5_face_landmarks.dat").read_bytes()
    path = tmp_path / "cut.dat"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DlibFormatError):
        read_shape_predictor(path)


def test_landmarks_match_dlib(shape_predictor: Any, reference_faces: list) -> None:
    mismatched = 0
    for image, shape in reference_faces:
        rect = shape.rect
        ours = shape_predictor.predict(image, (rect.left(), rect.top(), rect.width(), rect.height()))
        theirs = dlib_points(shape)
        assert np.abs(ours - theirs).max() <= 0.5 + 1e-3  # dlib rounds our float points
        mismatched += int(not np.array_equal(np.floor(ours + 0.5), theirs))
    assert mismatched == 0, f"{mismatched} of {len(reference_faces)} faces differ from dlib after rounding"


def test_predict_many_equals_single(shape_predictor: Any, reference_faces: list) -> None:
    image, shape = reference_faces[0]
    r = shape.rect
    boxes = [(r.left(), r.top(), r.width(), r.height()), (r.left() + 3, r.top() - 2, r.width() + 6, r.height() + 4)]
    many = shape_predictor.predict_many(image, boxes)
    assert many.shape == (2, 5, 2)
    for box, points in zip(boxes, many):
        assert np.allclose(shape_predictor.predict(image, box), points, atol=1e-4)
    assert shape_predictor.predict_many(image, []).shape == (0, 5, 2)


def test_predict_batch_equals_per_image(shape_predictor: Any, reference_faces: list) -> None:
    """Faces of different images (different sizes, one image without faces) in one batch give
    exactly the per-image results."""
    chosen = reference_faces[:4]
    images = [image for image, _ in chosen]
    images.insert(2, np.zeros((40, 60, 3), np.uint8))
    boxes = [[(s.rect.left(), s.rect.top(), s.rect.width(), s.rect.height())] for _, s in chosen]
    boxes[1].append((boxes[1][0][0] + 5, boxes[1][0][1], boxes[1][0][2], boxes[1][0][3]))
    boxes.insert(2, [])
    batch = shape_predictor.predict_batch(images, boxes)
    assert [len(points) for points in batch] == [1, 2, 0, 1, 1]
    for image, image_boxes, points in zip(images, boxes, batch):
        np.testing.assert_array_equal(points, shape_predictor.predict_many(image, image_boxes))
    assert [p.shape for p in shape_predictor.predict_batch([images[2]], [[]])] == [(0, 5, 2)]


def test_chips_match_dlib_get_face_chip(reference_faces: list, dlib_reference: dict) -> None:
    dlib = dlib_reference["dlib"]
    diffs = []
    pyramid_faces = 0
    for image, shape in reference_faces:
        points = dlib_points(shape)
        theirs = dlib.get_face_chip(image, shape, size=FACE_CHIP_SIZE, padding=0.25)
        ours = face_chip(image, points)
        assert ours.shape == (150, 150, 3) and ours.dtype == np.uint8
        diffs.append(np.abs(ours.astype(int) - theirs.astype(int)))
        rect = chip_geometry(points).rect
        pyramid_faces += int(rect[2] - rect[0] > 2 * FACE_CHIP_SIZE + 2)
    diffs = np.stack(diffs)
    # measured: mean 0.0, max 0 on these faces (exact reproduction)
    assert diffs.mean() < 0.01 and diffs.max() <= 1, (diffs.mean(), diffs.max())
    assert pyramid_faces >= 3  # the downsampling path was exercised


def test_chip_reaching_outside_image_matches_dlib(reference_faces: list, dlib_reference: dict) -> None:
    dlib = dlib_reference["dlib"]
    image, shape = reference_faces[0]
    points = dlib_points(shape)
    left, top = points.min(axis=0)
    crop = np.ascontiguousarray(image[int(top) :, int(left) :])  # face now touches the top-left corner
    shifted = points - [int(left), int(top)]
    det = dlib.full_object_detection(
        dlib.rectangle(0, 0, crop.shape[1] - 1, crop.shape[0] - 1), [dlib.point(int(x), int(y)) for x, y in shifted]
    )
    theirs = dlib.get_face_chip(crop, det, size=150, padding=0.25)
    ours = face_chip(crop, shifted)
    assert (ours[:5, :5] == 0).all()  # black outside the image
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_face_chips_batch(reference_faces: list) -> None:
    image, shape = reference_faces[0]
    points = dlib_points(shape)
    chips = face_chips(image, np.stack([points, points + 1.5]))
    assert chips.shape == (2, 150, 150, 3)
    assert np.array_equal(chips[0], face_chip(image, points))
    assert not np.array_equal(chips[0], chips[1])


def test_pyramid_down_filter() -> None:
    flat = np.full((20, 30, 3), 200, dtype=np.uint8)
    down = pyramid_down(flat)
    assert down.shape == (8, 13, 3)
    assert (down == 200).all()  # the [1 4 6 4 1]^2 / 256 filter keeps a flat image
    assert pyramid_down(np.zeros((8, 30, 3), dtype=np.uint8)).shape == (0, 0, 3)
