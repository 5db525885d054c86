"""dlib's 5-point face landmark predictor (regression-tree cascade) in numpy.

Reproduces ``dlib.shape_predictor`` on ``shape_predictor_5_face_landmarks.dat`` (CC0, from the
``face_recognition_models`` package): the descriptor was trained on chips aligned with exactly
these points, so alignment quality depends on reproducing them, not on any "better" landmarks.
Points are returned as floats (dlib rounds them to whole pixels); ``np.floor(p + 0.5)`` gives
dlib's values. Each cascade level runs vectorised over all its trees and over all faces of an
image. The 5 points are: subject's left eye outer and inner corners, right eye outer and inner
corners (i.e. image right to left for a frontal face: 0 and 1 on the image's right side), and
the base of the nose.

The predictor was trained on dlib HOG detector boxes; boxes from another detector should go
through ``inference.align.predictor_box`` first.
"""
from __future__ import annotations

import numpy as np

from inference.align import similarity_matrices
from inference.formats.dlib_dnn import face_recognition_models_file
from inference.formats.dlib_shape import ShapePredictorModel, read_shape_predictor

MODEL_FILE = "shape_predictor_5_face_landmarks.dat"

Box = tuple[float, float, float, float]


class ShapePredictor:
    def __init__(self, model: ShapePredictorModel) -> None:
        self.model = model
        self.num_points = len(model.initial_shape)

    def predict(self, image_rgb: np.ndarray, box: Box) -> np.ndarray:
        """Landmarks (P, 2) float32 in source pixels for the face in ``box`` = (x, y, w, h)."""
        return self.predict_many(image_rgb, [box])[0]

    def predict_many(self, image_rgb: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """Landmarks (N, P, 2) float32 for several faces of one image."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
        n = len(boxes)
        if n == 0:
            return np.zeros((0, self.num_points, 2), dtype=np.float32)
        height, width = image_rgb.shape[:2]
        box_arr = np.asarray(boxes, dtype=np.float64).reshape(n, 4)
        # dlib maps the normalised shape's [0,1] square onto the rectangle's corner pixels,
        # i.e. onto (left .. left + w - 1); its rectangles have inclusive right/bottom edges.
        origin = box_arr[:, None, :2]  # (N,1,2)
        extent = box_arr[:, None, 2:] - 1.0
        initial = self.model.initial_shape
        current = np.repeat(initial[None], n, axis=0).astype(np.float32)  # (N,P,2)
        faces = np.arange(n)[:, None]
        for level in self.model.cascades:
            tform = similarity_matrices(initial.astype(np.float64), current.astype(np.float64)).astype(np.float32)
            # feature pixels: the level's offsets, rotated/scaled like the current shape, from their anchors
            normalised = np.einsum("nij,fj->nfi", tform, level.deltas) + current[:, level.anchor]
            pixel = np.floor(origin + normalised.astype(np.float64) * extent + 0.5).astype(np.int64)
            x, y = pixel[..., 0], pixel[..., 1]
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            rgb = image_rgb[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)].astype(np.int32)
            features = np.where(inside, rgb.sum(axis=-1) // 3, 0).astype(np.float32)  # dlib's rgb intensity
            node = np.zeros((n, level.idx1.shape[0]), dtype=np.int64)
            trees = np.arange(level.idx1.shape[0])[None, :]
            n_splits = level.idx1.shape[1]
            while True:
                internal = node < n_splits
                if not internal.any():
                    break
                at = np.minimum(node, n_splits - 1)
                diff = features[faces, level.idx1[trees, at]] - features[faces, level.idx2[trees, at]]
                step = np.where(diff > level.thresh[trees, at], 1, 2)
                node = np.where(internal, 2 * node + step, node)
            # dlib adds the leaves one by one in float32; a sequential accumulate keeps its rounding,
            # which matters because later levels round feature positions to whole pixels
            steps = np.concatenate([current.reshape(n, 1, -1), level.leaves[trees, node - n_splits]], axis=1)
            current = np.add.accumulate(steps, axis=1, dtype=np.float32)[:, -1].reshape(n, self.num_points, 2)
        return (origin + current.astype(np.float64) * extent).astype(np.float32)


def load(device: str = "cpu") -> ShapePredictor:
    """Registry loader for ``face_landmarks5``; numpy on the CPU whatever the device (the trees are tiny)."""
    return ShapePredictor(read_shape_predictor(face_recognition_models_file(MODEL_FILE)))
