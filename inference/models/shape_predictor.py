"""dlib's 5-point face landmark predictor (regression-tree cascade) in numpy.

Reproduces ``dlib.shape_predictor`` on ``shape_predictor_5_face_landmarks.dat`` (CC0, from the
``face_recognition_models`` package): the descriptor was trained on chips aligned with exactly
these points, so alignment quality depends on reproducing them, not on any "better" landmarks.
Points are returned as floats (dlib rounds them to whole pixels); ``np.floor(p + 0.5)`` gives
dlib's values. Each cascade level runs vectorised over all its trees and over all faces of a
batch of images; ``predict_device`` runs the same operations in torch on a device. The 5
points are: subject's left eye outer and inner corners, right eye outer and inner corners
(i.e. image right to left for a frontal face: 0 and 1 on the image's right side), and the
base of the nose.

The predictor was trained on dlib HOG detector boxes; boxes from another detector should go
through ``inference.align.predictor_box`` first.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from inference.align import similarity_coefficients
from inference.formats.dlib_dnn import face_recognition_models_file
from inference.formats.dlib_shape import ShapePredictorModel, read_shape_predictor

if TYPE_CHECKING:
    import torch

MODEL_FILE = "shape_predictor_5_face_landmarks.dat"

Box = tuple[float, float, float, float]


def _rotate(deltas: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Feature offsets (F, 2) under each face's rotation+scale [[a, -b], [b, a]], a and b (N,):
    (N, F, 2) float32.

    Products and sums spelled out rather than a matmul, whose BLAS kernel fuses them (FMA) and
    so rounds otherwise than the device path (:meth:`ShapePredictor.predict_device`), where the
    same elementwise operations run; one feature pixel rounded the other way can move a face by
    a pixel. Written into each output column: broadcasting strided slices cost 8x more."""
    dx, dy = np.ascontiguousarray(deltas.T)
    out = np.empty((len(a), len(deltas), 2), dtype=np.float32)
    np.multiply(dx, a[:, None], out=out[..., 0])
    out[..., 0] -= dy * b[:, None]
    np.multiply(dx, b[:, None], out=out[..., 1])
    out[..., 1] += dy * a[:, None]
    return out


class ShapePredictor:
    def __init__(self, model: ShapePredictorModel) -> None:
        self.model = model
        self.num_points = len(model.initial_shape)
        self._on_device: dict[str, dict[str, Any]] = {}  # the model's arrays per torch device

    def predict(self, image_rgb: np.ndarray, box: Box) -> np.ndarray:
        """Landmarks (P, 2) float32 in source pixels for the face in ``box`` = (x, y, w, h)."""
        return self.predict_many(image_rgb, [box])[0]

    def predict_many(self, image_rgb: np.ndarray, boxes: list[Box]) -> np.ndarray:
        """Landmarks (N, P, 2) float32 for several faces of one image."""
        return self.predict_batch([image_rgb], [boxes])[0]

    def predict_batch(self, images: list[np.ndarray], boxes: list[list[Box]]) -> list[np.ndarray]:
        """Landmarks (N_i, P, 2) float32 per image for the faces in its boxes. Every face of every
        image goes through each cascade level together: per image, the per-level numpy calls cost
        more than the arithmetic (11 of 13 ms per LFW photo when run image by image)."""
        for image_rgb in images:
            if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
                raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
        counts = [len(b) for b in boxes]
        n = sum(counts)
        if n == 0:
            return [np.zeros((0, self.num_points, 2), dtype=np.float32) for _ in images]
        spans = [(k, a, a + c) for k, (a, c) in enumerate(zip(np.cumsum([0, *counts[:-1]]), counts)) if c]
        pixels = {k: np.ascontiguousarray(images[k]).reshape(-1, 3) for k, _, _ in spans}  # (H * W, 3) views
        sizes = np.repeat([image.shape[:2] for image in images], counts, axis=0)[:, None, :]  # (N, 1, 2)
        height, width = sizes[..., 0], sizes[..., 1]
        box_arr = np.asarray([b for image_boxes in boxes for b in image_boxes], dtype=np.float64).reshape(n, 4)
        # dlib maps the normalised shape's [0,1] square onto the rectangle's corner pixels,
        # i.e. onto (left .. left + w - 1); its rectangles have inclusive right/bottom edges.
        origin = box_arr[:, None, :2]  # (N,1,2)
        extent = box_arr[:, None, 2:] - 1.0
        initial = self.model.initial_shape
        current = np.repeat(initial[None], n, axis=0).astype(np.float32)  # (N,P,2)
        for level in self.model.cascades:
            a, b = similarity_coefficients(initial.astype(np.float64), current.astype(np.float64))
            # feature pixels: the level's offsets, rotated/scaled like the current shape, from their anchors
            normalised = _rotate(level.deltas, a.astype(np.float32), b.astype(np.float32)) + current[:, level.anchor]
            pixel = np.floor(origin + normalised.astype(np.float64) * extent + 0.5).astype(np.int64)
            x, y = pixel[..., 0], pixel[..., 1]
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            flat = np.minimum(np.maximum(y, 0), height - 1) * width + np.minimum(np.maximum(x, 0), width - 1)
            rgb = np.empty((*flat.shape, 3), dtype=np.uint8)
            for k, a, b in spans:  # 2-D fancy indexing of the images instead: 5x slower
                np.take(pixels[k], flat[a:b], axis=0, out=rgb[a:b])
            features = np.where(inside, rgb.sum(axis=-1, dtype=np.int32) // 3, 0).astype(np.float32)  # dlib's rgb intensity
            # Complete trees (S = 2^depth - 1 splits): every face walks every tree down ``depth``
            # levels, children of node i being 2i+1 (diff > threshold) and 2i+2. Flat np.take
            # lookups: 2-D fancy indexing cost 4x more here.
            n_trees, n_splits = level.idx1.shape
            tree_base = np.arange(n_trees)[None, :] * n_splits
            face_base = np.arange(n)[:, None] * features.shape[1]
            node = np.zeros((n, n_trees), dtype=np.int64)
            for _ in range(n_splits.bit_length()):
                at = tree_base + node
                diff = np.take(features, face_base + np.take(level.idx1, at)) - np.take(features, face_base + np.take(level.idx2, at))
                node = 2 * node + np.where(diff > np.take(level.thresh, at), 1, 2)
            # dlib adds the leaves one by one in float32; a sequential accumulate keeps its rounding,
            # which matters because later levels round feature positions to whole pixels
            leaves = np.take(level.leaves.reshape(-1, level.leaves.shape[2]), tree_base // n_splits * (n_splits + 1) + node - n_splits, axis=0)
            steps = np.concatenate([current.reshape(n, 1, -1), leaves], axis=1)
            current = np.add.accumulate(steps, axis=1, dtype=np.float32)[:, -1].reshape(n, self.num_points, 2)
        points = (origin + current.astype(np.float64) * extent).astype(np.float32)
        return np.split(points, np.cumsum(counts)[:-1])

    def _device_arrays(self, device: torch.device) -> dict[str, Any]:
        """The cascade's arrays stacked by level, uploaded once per device."""
        import torch

        key = str(device)
        if key not in self._on_device:
            levels = self.model.cascades
            n_trees, n_splits = levels[0].idx1.shape

            def stack(name: str) -> np.ndarray:
                return np.stack([getattr(level, name) for level in levels])

            self._on_device[key] = {
                "trees": n_trees,
                "splits": n_splits,
                "initial": torch.as_tensor(self.model.initial_shape, device=device),
                "initial64": torch.as_tensor(self.model.initial_shape.astype(np.float64), device=device),
                "pairs": torch.as_tensor(np.stack([stack("idx1"), stack("idx2")], axis=-1).reshape(len(levels), -1), device=device),
                "thresh": torch.as_tensor(stack("thresh").reshape(len(levels), -1), device=device),
                "leaves": torch.as_tensor(stack("leaves").reshape(len(levels), -1, 2 * self.num_points), device=device),
                "anchor": torch.as_tensor(stack("anchor"), device=device),
                "deltas": torch.as_tensor(stack("deltas"), device=device),
            }
        return self._on_device[key]

    def predict_device(self, images: list[torch.Tensor], boxes: torch.Tensor, inds: torch.Tensor) -> torch.Tensor:
        """Landmarks (N, P, 2) float32 on the images' device for faces in ``boxes`` (N, 4) x, y, w, h
        of ``images[inds]`` ((H, W, 3) uint8 tensors), every face and tree of a level at once.

        :meth:`predict_batch` in torch, the same operations in the same order, so the same points:
        the leaves are added one by one in float32 as dlib does (:func:`sequential_sum`), since
        a parallel or float64 sum moved 3 of 31 faces by up to 1.3 px (feature pixels that round
        the other way send later levels down other branches)."""
        import torch

        from inference.align_device import sequential_sum, stack_images

        device = boxes.device
        n = int(boxes.shape[0])
        if n == 0:
            return torch.zeros((0, self.num_points, 2), dtype=torch.float32, device=device)
        arrays = self._device_arrays(device)
        table, starts, sizes = stack_images(images)
        inds = inds.to(device=device, dtype=torch.int64)
        height, width = sizes[inds, 0][:, None], sizes[inds, 1][:, None]  # (N, 1)
        first = starts[inds][:, None]
        box = boxes.to(dtype=torch.float64)
        origin, extent = box[:, None, :2], box[:, None, 2:] - 1.0  # see predict_batch
        n_trees, n_splits = arrays["trees"], arrays["splits"]
        tree_base = torch.arange(n_trees, device=device)[None, :] * n_splits
        current = arrays["initial"].expand(n, -1, -1)
        for k in range(len(self.model.cascades)):
            a, b = (v.float()[:, None] for v in similarity_coefficients(arrays["initial64"], current.double()))
            # numpy's _rotate, elementwise (a TF32 matmul would also drop bits)
            dx, dy = arrays["deltas"][k].T
            rotated = torch.stack([dx * a - dy * b, dx * b + dy * a], dim=-1)
            normalised = rotated + current[:, arrays["anchor"][k]]
            pixel = torch.floor(origin + normalised.double() * extent + 0.5).long()
            x, y = pixel[..., 0], pixel[..., 1]
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            at = first + torch.minimum(y.clamp(min=0), height - 1) * width + torch.minimum(x.clamp(min=0), width - 1)
            intensity = torch.div(table[at].int().sum(dim=-1), 3, rounding_mode="floor")  # dlib's rgb intensity
            features = torch.where(inside, intensity, 0).float()
            # every split of every tree decided at once (the same comparisons as numpy's walk,
            # a few kernels instead of a dozen per depth), then the walk only looks them up
            pair = features[:, arrays["pairs"][k]].view(n, -1, 2)
            right = (pair[..., 0] - pair[..., 1] <= arrays["thresh"][k]).long()  # (N, T * S)
            node = torch.zeros((n, n_trees), dtype=torch.int64, device=device)
            for _ in range(n_splits.bit_length()):
                node = 2 * node + 1 + right.gather(1, tree_base + node)
            leaves = arrays["leaves"][k][tree_base // n_splits * (n_splits + 1) + node - n_splits]  # (N, T, 2P)
            steps = torch.cat([current.reshape(n, 1, -1), leaves], dim=1)
            current = sequential_sum(steps).reshape(n, self.num_points, 2)
        return (origin + current.double() * extent).float()


def load(device: str = "cpu") -> ShapePredictor:
    """Registry loader for ``face_landmarks5``: the model's arrays stay numpy (``predict_batch`` on the
    host); ``predict_device`` uploads them to the device of the images it is given, once."""
    return ShapePredictor(read_shape_predictor(face_recognition_models_file(MODEL_FILE)))
