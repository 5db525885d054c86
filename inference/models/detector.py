"""Face detector: MTCNN (weights from ``facenet-pytorch``) behind the registry's ``face_detector``.

Chosen over MediaPipe's BlazeFace after measuring both on the shared annotated group photos:
BlazeFace's 128/192-pixel input loses the 37-pixel faces of a 500-pixel photo, while MTCNN's
image pyramid keeps them (figures in docs/models.md).

Box convention: MTCNN's regressed box is taller than wide and starts at the eyebrows; it is
mapped by one fixed similarity (centre shift and square side, fitted once on the annotated
photos) to dlib's detector convention, a square from the brows to the chin, because the 5-point
shape predictor that alignment runs inside this box was trained on dlib's boxes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from inference.models.mtcnn import MTCNN, Budget
from inference.types import Detection

# dlib-box = square of side SIDE * sqrt(w * h), centred at (cx + DX * w, cy + DY * h) of the
# MTCNN box (medians over the 42 matched faces of multi/face_boxes_dlib.csv).
_SIDE, _DX, _DY = 0.98, -0.013, 0.058
# Longer side, in pixels, above which an image is detected on an area-downscaled copy, and the
# face side where the pyramid starts on that copy. The pyramid from 20-pixel faces on a
# 5-megapixel photo cost 0.6 s per image, 80% of the pipeline; on the copy, faces under 2% of
# the longer side are not searched (figures in docs/models.md).
MAX_SIDE = 1024
_MIN_FACE_ON_COPY = 20


def _box_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """First source pixel and fixed-point weights (2^22 = 1) of each output pixel of PIL's BOX
    resampling from ``in_size`` to ``out_size`` pixels along one axis, computed as Pillow's
    ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` do (Resample.c), in the same double
    arithmetic; taps past an output pixel's support weigh 0."""
    scale = in_size / out_size
    support = 0.5 * max(scale, 1.0)
    centre = (np.arange(out_size) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    count = np.minimum((centre + support + 0.5).astype(np.int64), in_size) - first
    x = (np.arange(int(count.max()))[None, :] + first[:, None] - centre[:, None] + 0.5) * (1.0 / max(scale, 1.0))
    weights = np.where((x > -0.5) & (x <= 0.5) & (np.arange(x.shape[1])[None, :] < count[:, None]), 1.0, 0.0)
    weights /= weights.sum(axis=1, keepdims=True)
    return first, (0.5 + weights * (1 << 22)).astype(np.int32)


def box_resize(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """``box_resize_host`` of an (H, W, 3) uint8 tensor, in torch on its device, the same bytes:
    each pass a fixed-point sum of uint8 pixels rounded back to uint8 as Pillow computes it, in
    int32, whose sums are exact in any order."""
    for axis, size in ((1, width), (0, height)):
        if image.shape[axis] == size:
            continue
        first, weights = (torch.from_numpy(v).to(image.device) for v in _box_taps(image.shape[axis], size))
        shape = (1, -1, 1) if axis == 1 else (-1, 1, 1)
        total = torch.full((), 1 << 21, dtype=torch.int32, device=image.device)
        for tap in range(weights.shape[1]):
            index = (first + tap).clamp(max=image.shape[axis] - 1)
            total = total + image.index_select(axis, index).to(torch.int32) * weights[:, tap].view(shape)
        image = (total >> 22).clamp(0, 255).to(torch.uint8)
    return image


def box_resize_host(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """PIL's BOX resampling of an (H, W, 3) uint8 array, columns first, then rows: the order
    upstream Pillow takes, while the installed build takes rows first for some sizes (then 1 in
    ~2,000 values differ by one), so the two passes are asked for one at a time."""
    wide = Image.fromarray(image).resize((width, image.shape[0]), Image.BOX)
    return np.asarray(wide.resize((width, height), Image.BOX)).copy()

@dataclass
class DeviceDetections:
    """A batch's faces as tensors on the detector's device, ordered by image, then as ``detect``
    orders them: ``boxes`` (n, 4) float64 x, y, w, h in source pixels (dlib's box convention, the
    values of ``Detection.box``), ``scores`` (n,) and ``keypoints`` (n, 5, 2) (x, y) source
    pixels, float32, and ``inds`` (n,) long, each face's image in the batch."""

    boxes: torch.Tensor
    scores: torch.Tensor
    keypoints: torch.Tensor
    inds: torch.Tensor


class FaceDetector:
    """Batched face detection; ``detect`` takes RGB uint8 arrays and returns ``Detection``s,
    ``detect_tensors`` the same faces as tensors on the device.

    ``min_face`` is the smallest face side in source pixels: the pyramid starts there (smaller
    is slower: the pyramid grows) and smaller output boxes are dropped. An image whose longer
    side L exceeds ``max_side`` (None: never) is detected on a copy downscaled to ``max_side``,
    so there the smallest face searched is max(min_face, 20 * L / max_side) source pixels.
    ``score_threshold`` applies to O-Net's final face probability.
    Keypoints are MTCNN's five (x, y) points in source pixels: the eye on the image's left,
    the eye on the image's right, nose tip, mouth corner on the left, mouth corner on the right.
    ``budget`` (None: follow the device) is MTCNN's work per network call.
    """

    def __init__(self, device: str = "cpu", min_face: int = 20, score_threshold: float = 0.9, max_side: int | None = MAX_SIDE,
                 budget: Budget | None = None) -> None:
        self.device = torch.device(device)
        self.net = MTCNN(budget=budget).to(self.device)
        self.min_face = min_face
        self.score_threshold = score_threshold
        self.max_side = max_side

    def _working_copy(self, image: np.ndarray | torch.Tensor, min_face: float) -> tuple[torch.Tensor, float, float, float]:
        """The (H, W, 3) uint8 tensor the cascade runs on, its x and y scale to source pixels, and
        the pyramid's first face side in its pixels. A device image is downscaled there, into the
        bytes its host copy would give."""
        h, w = image.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            if isinstance(image, torch.Tensor):
                return image.to(self.device), 1.0, 1.0, min_face
            return torch.from_numpy(np.array(image, copy=True)).to(self.device), 1.0, 1.0, min_face  # from_numpy needs a writable array
        ratio = self.max_side / max(h, w)
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        if isinstance(image, torch.Tensor) and image.device.type != "cpu":
            small = box_resize(image.to(self.device), *size)
        else:  # Pillow on the host: several times faster than box_resize's torch ops on the CPU
            small = torch.from_numpy(box_resize_host(np.asarray(image), *size)).to(self.device)
        fx, fy = w / size[0], h / size[1]
        return small, fx, fy, max(min_face / max(fx, fy), _MIN_FACE_ON_COPY)

    def detect_tensors(self, images: list[np.ndarray | torch.Tensor], min_face: int | None = None,
                       score_threshold: float | None = None) -> DeviceDetections:
        """The batch's faces on the device: RGB uint8 (H, W, 3) arrays or tensors (on any device)
        in; no host copy of the results."""
        min_side = min_face or self.min_face
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not images:
            none = torch.zeros(0, device=self.device)
            return DeviceDetections(none.view(0, 4).double(), none, none.view(0, 5, 2), none.long())
        work = [self._working_copy(im, min_side) for im in images]
        boxes, points, image = self.net.detect([t for t, *_ in work], [m for *_, m in work])
        # pixel centres of each working copy back to those of the source, in float64 like the
        # Python floats this map was fitted in
        scale = torch.tensor([[fx, fy] for _, fx, fy, _ in work], dtype=torch.float64, device=self.device)[image]
        corners = (boxes[:, :4].double().view(-1, 2, 2) + 0.5) * scale[:, None] - 0.5
        points = ((points.double() + 0.5) * scale[:, None] - 0.5).float()
        size = corners[:, 1] - corners[:, 0]
        side = _SIDE * size.prod(dim=1).sqrt()
        centre = corners[:, 0] + size / 2 + torch.tensor([_DX, _DY], dtype=torch.float64, device=self.device) * size
        keep = (boxes[:, 4] >= threshold) & (side >= min_side)
        xywh = torch.cat([centre - side[:, None] / 2, side[:, None], side[:, None]], dim=1)
        return DeviceDetections(xywh[keep], boxes[keep, 4], points[keep], image[keep])

    @staticmethod
    def to_detections(found: DeviceDetections, count: int) -> list[list[Detection]]:
        """Per image of the ``count`` in the batch, its ``Detection``s: one host copy of all (float64
        holds the float32 values and the image indices exactly)."""
        host = torch.cat([found.boxes, found.scores[:, None], found.keypoints.flatten(1), found.inds[:, None]], dim=1)
        host = host.to(torch.float64).cpu().numpy()
        splits = np.cumsum(np.bincount(host[:, 15].astype(np.int64), minlength=count))[:-1]
        return [] if not count else [[Detection(tuple(row[:4].tolist()), float(row[4]), row[5:15].reshape(5, 2).astype(np.float32)) for row in rows]
                for rows in np.split(host, splits)]

    def detect(self, images: list[np.ndarray], min_face: int | None = None, score_threshold: float | None = None) -> list[list[Detection]]:
        return self.to_detections(self.detect_tensors(images, min_face, score_threshold), len(images))


def load(device: str) -> FaceDetector:
    return FaceDetector(device)
