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

from inference.models.mtcnn import MTCNN
from inference.types import Detection

# dlib-box = square of side SIDE * sqrt(w * h), centred at (cx + DX * w, cy + DY * h) of the
# MTCNN box (medians over the 42 matched faces of multi/face_boxes_dlib.csv).
_SIDE, _DX, _DY = 0.98, -0.013, 0.058


class FaceDetector:
    """Batched face detection; ``detect`` takes RGB uint8 arrays and returns ``Detection``s.

    ``min_face`` is the smallest face side in source pixels: the pyramid starts there (smaller
    is slower: the pyramid grows) and smaller output boxes are dropped; ``score_threshold`` applies to O-Net's final face probability.
    Keypoints are MTCNN's five (x, y) points in source pixels: the eye on the image's left,
    the eye on the image's right, nose tip, mouth corner on the left, mouth corner on the right.
    """

    def __init__(self, device: str = "cpu", min_face: int = 20, score_threshold: float = 0.9) -> None:
        self.device = torch.device(device)
        self.net = MTCNN(min_face=min_face).to(self.device)
        self.min_face = min_face
        self.score_threshold = score_threshold

    def detect(self, images: list[np.ndarray], min_face: int | None = None, score_threshold: float | None = None) -> list[list[Detection]]:
        min_side = min_face or self.min_face
        self.net.min_face = min_side
        threshold = self.score_threshold if score_threshold is None else score_threshold
        tensors = [torch.from_numpy(np.array(im, copy=True)).to(self.device).permute(2, 0, 1).float() for im in images]
        results = []
        for boxes, points in self.net.detect(tensors):
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
