"""The torch landmark and chip paths (run on a GPU in the device pipeline) against the numpy ones.

Run here on the CPU's torch, they must give the numpy landmarks and chips exactly: the same
operations in the same order, the leaves of the cascade added one by one in float32 as dlib
does, the chip geometry shared. Faces come from real photos, several images in one batch,
including big faces (dlib's pyramid), faces cut by the image border and a chip wholly outside.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from inference import align, align_device
from inference.align_device import face_chips_device, sequential_sum


def box_of(shape: Any) -> tuple[int, int, int, int]:
    r = shape.rect
    return (r.left(), r.top(), r.width(), r.height())


@pytest.fixture(scope="module")
def batch(reference_faces: list) -> tuple[list[np.ndarray], list[list[tuple]]]:
    """The reference photos as one batch with their HOG boxes, plus copies of some cut so that
    faces touch or cross the image border, and an image without faces."""
    images: list[np.ndarray] = []
    boxes: list[list[tuple]] = []
    for image, shape in reference_faces:
        if not images or images[-1] is not image:
            images.append(image)
            boxes.append([])
        boxes[-1].append(box_of(shape))
    for image, shape in reference_faces[:12:3]:
        x, y, w, h = box_of(shape)
        left, top = max(x + w // 3, 0), max(y + h // 4, 0)  # the face's top-left third is cut off
        images.append(np.ascontiguousarray(image[top:, left:]))
        boxes.append([(x - left, y - top, w, h)])
        right, bottom = x + 2 * w // 3, y + 3 * h // 4  # and here its bottom-right part
        images.append(np.ascontiguousarray(image[:bottom, :right]))
        boxes.append([(x, y, w, h)])
    images.append(np.zeros((50, 70, 3), np.uint8))
    boxes.append([])
    return images, boxes


def as_device(images: list[np.ndarray], boxes: list[list[tuple]]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    tensors = [torch.from_numpy(image.copy()) for image in images]
    flat = torch.tensor([b for image_boxes in boxes for b in image_boxes], dtype=torch.float32)
    inds = torch.tensor([k for k, image_boxes in enumerate(boxes) for _ in image_boxes])
    return tensors, flat, inds


def test_sequential_sum_keeps_float32_order() -> None:
    steps = torch.full((2, 501, 3), 1e-8, dtype=torch.float32)
    steps[:, 0] = 1.0  # each later step is below half an ulp of 1.0 in float32: dlib's sum stays 1.0
    summed = sequential_sum(steps)
    assert summed.dtype == torch.float32 and summed.shape == (2, 3)
    assert (summed == 1.0).all()
    assert (steps.double().sum(dim=1).float() > 1.0).all()  # what a float64 sum would have given
    rng = np.random.default_rng(5)
    noise = rng.normal(size=(4, 200, 10)).astype(np.float32)
    expected = np.add.accumulate(noise, axis=1, dtype=np.float32)[:, -1]
    np.testing.assert_array_equal(sequential_sum(torch.from_numpy(noise)).numpy(), expected)


def test_predict_device_equals_numpy(shape_predictor: Any, batch: tuple) -> None:
    images, boxes = batch
    expected = np.concatenate(shape_predictor.predict_batch(images, boxes))
    tensors, flat, inds = as_device(images, boxes)
    points = shape_predictor.predict_device(tensors, flat, inds)
    assert points.dtype == torch.float32 and points.shape == (len(expected), 5, 2)
    # measured: identical on every face (the cascade rounds feature positions to whole pixels,
    # so one rounding apart can move a face by a pixel: nothing less than equality is safe)
    np.testing.assert_array_equal(points.numpy(), expected)
    assert shape_predictor.predict_device(tensors, flat[:0], inds[:0]).shape == (0, 5, 2)


def test_face_chips_device_equals_numpy(shape_predictor: Any, batch: tuple, descriptor: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(align_device, "SAMPLE_FACES", 7)  # several chunks of faces sampled in turn
    images, boxes = batch
    landmarks = shape_predictor.predict_batch(images, boxes)
    expected = np.concatenate([align.face_chips(image, points) for image, points in zip(images, landmarks)])
    tensors, _, inds = as_device(images, boxes)
    chips = face_chips_device(tensors, inds, torch.from_numpy(np.concatenate(landmarks)))
    assert chips.dtype == torch.uint8 and chips.shape == expected.shape
    np.testing.assert_array_equal(chips.numpy(), expected)  # measured: identical
    sizes = np.array([images[k].shape[:2] for k in inds.tolist()])
    plans = align.chip_plans(*align.chip_geometries(np.concatenate(landmarks)), sizes, align.FACE_CHIP_SIZE)
    assert (plans.levels == 0).sum() >= 20 and (plans.levels >= 1).sum() >= 3  # both paths of the warp
    assert ((plans.crops[:, :2] == 0).any(axis=1)).sum() >= 4  # chips reaching past the border
    assert (expected[-4:] == 0).all(axis=-1).any()  # black outside the image
    gap = np.linalg.norm(descriptor.extract(chips.numpy()) - descriptor.extract(expected), axis=1)
    assert gap.max() <= 0.01


def test_face_chips_device_pyramid_levels_and_outside(shape_predictor: Any, reference_faces: list) -> None:
    """Faces needing 0, 1, 2 and 3 pyramid steps in one batch (the image enlarged), one whose
    chip lies wholly outside its image, and one whose crop the pyramid shrinks to nothing (numpy
    raised on that before)."""
    image, shape = reference_faces[0]
    points = shape_predictor.predict(image, box_of(shape))
    big = np.ascontiguousarray(np.repeat(np.repeat(image, 6, axis=0), 6, axis=1))
    images = [image, big, image, np.ascontiguousarray(image[:12, :12])]
    landmarks = np.stack([points, points * 6 + 2.5, points * 2.5, points + 2.0, points - 1000.0,
                          (points - points.mean(axis=0)) * 8 + 6])
    image_of = [0, 1, 2, 1, 0, 3]
    expected = np.stack([align.face_chip(images[k], p) for k, p in zip(image_of, landmarks)])
    chips = face_chips_device([torch.from_numpy(im.copy()) for im in images], torch.tensor(image_of),
                              torch.from_numpy(landmarks.astype(np.float32)))
    np.testing.assert_array_equal(chips.numpy(), expected)
    sizes = np.array([images[k].shape[:2] for k in image_of])
    plans = align.chip_plans(*align.chip_geometries(landmarks.astype(np.float32)), sizes, align.FACE_CHIP_SIZE)
    assert {0, 1, 2}.issubset(set(plans.levels.tolist()))
    assert plans.levels[5] == 2 and (plans.crops[5] == (0, 0, 11, 11)).all()  # 12x12, then 4x4, then nothing
    assert (expected[4] == 0).all() and (expected[5] == 0).all() and expected[1].any()
    empty = face_chips_device([torch.from_numpy(image.copy())], torch.zeros(0, dtype=torch.long), torch.zeros((0, 5, 2)))
    assert empty.shape == (0, 150, 150, 3)
