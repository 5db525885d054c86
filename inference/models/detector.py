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

import numpy as np
import torch
from PIL import Image

from inference.models.mtcnn import MTCNN
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


class FaceDetector:
    """Batched face detection; ``detect`` takes RGB uint8 arrays and returns ``Detection``s.

    ``min_face`` is the smallest face side in source pixels: the pyramid starts there (smaller
    is slower: the pyramid grows) and smaller output boxes are dropped. An image whose longer
    side L exceeds ``max_side`` (None: never) is detected on a copy downscaled to ``max_side``,
    so there the smallest face searched is max(min_face, 20 * L / max_side) source pixels.
    ``score_threshold`` applies to O-Net's final face probability.
    Keypoints are MTCNN's five (x, y) points in source pixels: the eye on the image's left,
    the eye on the image's right, nose tip, mouth corner on the left, mouth corner on the right.
    """

    def __init__(self, device: str = "cpu", min_face: int = 20, score_threshold: float = 0.9, max_side: int | None = MAX_SIDE) -> None:
        self.device = torch.device(device)
        self.net = MTCNN().to(self.device)
        self.min_face = min_face
        self.score_threshold = score_threshold
        self.max_side = max_side

    def _working_copy(self, image: np.ndarray, min_face: float) -> tuple[torch.Tensor, float, float, float]:
        """The (H, W, 3) uint8 tensor the cascade runs on, its x and y scale to source pixels, and
        the pyramid's first face side in its pixels."""
        h, w = image.shape[:2]
        if self.max_side is None or max(h, w) <= self.max_side:
            small = np.array(image, copy=True)  # from_numpy needs a writable array
            fx = fy = 1.0
        else:
            ratio = self.max_side / max(h, w)
            size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.BOX)).copy()
            fx, fy = w / size[0], h / size[1]
            min_face = max(min_face / max(fx, fy), _MIN_FACE_ON_COPY)
        tensor = torch.from_numpy(small).to(self.device)
        return tensor, fx, fy, min_face

    def detect(self, images: list[np.ndarray], min_face: int | None = None, score_threshold: float | None = None) -> list[list[Detection]]:
        min_side = min_face or self.min_face
        threshold = self.score_threshold if score_threshold is None else score_threshold
        work = [self._working_copy(im, min_side) for im in images]
        results = []
        found = self.net.detect([t for t, *_ in work], [m for *_, m in work])
        for (boxes, points), (_, fx, fy, _) in zip(found, work):
            if fx != 1.0 or fy != 1.0:  # pixel centres of the copy back to those of the source
                boxes = torch.cat([(boxes[:, :4] + 0.5) * torch.tensor([fx, fy, fx, fy]) - 0.5, boxes[:, 4:]], dim=1)
                points = (points + 0.5) * torch.tensor([fx, fy]) - 0.5
            dets = []
            for (x1, y1, x2, y2, score), kp in zip(boxes.tolist(), points.numpy()):
                w, h = x2 - x1, y2 - y1
                side = _SIDE * (w * h) ** 0.5
                if score < threshold or side < min_side:
                    continue
                cx, cy = x1 + w / 2 + _DX * w, y1 + h / 2 + _DY * h
                dets.append(Detection((cx - side / 2, cy - side / 2, side, side), float(score), kp.astype(np.float32)))
            results.append(dets)
        return results


def load(device: str) -> FaceDetector:
    return FaceDetector(device)
