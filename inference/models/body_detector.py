"""Person detection with MediaPipe's BlazePose detector, and the body warp (sample).

Weights: ``modules/pose_detection/pose_detection.tflite`` from ``mediapipe==0.10.21`` (Apache-2.0;
the last release whose wheel ships the ``.tflite`` files). Only the file is read: mediapipe
itself pins numpy<2 and is never imported. The graph runs through
:mod:`inference.formats.tflite`.

The BlazePose detector finds a person by the face and regresses four keypoints: the mid-hip
centre, a point on the circle enclosing the whole body, the mid-shoulder point and a point on
the circle enclosing the upper body. The reported box is MediaPipe's own body ROI: the square
circumscribing the full-body circle (centre mid-hip, radius to the scale point), so it is as
tall as the person but wider than a tight box. Decoding follows MediaPipe's
``pose_detection_cpu`` graph: SSD anchors (strides 8, 16, 32, 32, 32 on a 224x224 letterboxed
input in -1..1), sigmoid scores, weighted NMS at IoU 0.3.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from inference.formats.tflite import TFLiteModule
from inference.packages import package_dir
from inference.types import Detection

BODY_SAMPLE_SIZE = (128, 256)  # width, height of a body warp


def model_path() -> Path:
    path = package_dir("mediapipe", "mediapipe==0.10.21") / "modules" / "pose_detection" / "pose_detection.tflite"
    if not path.exists():
        raise FileNotFoundError(f"{path} missing: only mediapipe<=0.10.21 ships the .tflite models")
    return path


def ssd_anchors(size: int, strides: list[int], per_location: int = 2) -> np.ndarray:
    """Anchor centres (n, 2) in 0..1, MediaPipe's SsdAnchorsCalculator with fixed anchor size:
    consecutive layers of equal stride share one grid with their anchors concatenated."""
    out = []
    i = 0
    while i < len(strides):
        j = i
        while j < len(strides) and strides[j] == strides[i]:
            j += 1
        grid = -(-size // strides[i])
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(centres, per_location * (j - i), axis=0))
        i = j
    return np.concatenate(out).astype(np.float32)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, extra: np.ndarray, iou: float) -> list[tuple[np.ndarray, float, np.ndarray]]:
    """MediaPipe's weighted NMS: each kept detection is the score-weighted mean of the
    candidates overlapping it, which steadies boxes and keypoints. ``boxes`` are x1 y1 x2 y2."""
    order = list(np.argsort(-scores))
    kept = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        top = order[0]
        rest = np.array(order)
        ix = np.clip(np.minimum(boxes[rest, 2], boxes[top, 2]) - np.maximum(boxes[rest, 0], boxes[top, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[rest, 3], boxes[top, 3]) - np.maximum(boxes[rest, 1], boxes[top, 1]), 0, None)
        inter = ix * iy
        overlap = inter / np.maximum(area[rest] + area[top] - inter, 1e-9)
        group = rest[overlap > iou]
        w = scores[group][:, None]
        kept.append(((boxes[group] * w).sum(0) / w.sum(), float(scores[top]), (extra[group] * w).sum(0) / w.sum()))
        order = rest[overlap <= iou].tolist()
    return kept


class BodyDetector:
    """``detect`` returns, per image, ``Detection``s whose keypoints are the four BlazePose
    points (mid-hip, full-body scale point, mid-shoulder, upper-body scale point) in pixels."""

    def __init__(self, device: str = "cpu", score_threshold: float = 0.6) -> None:
        self.device = torch.device(device)
        self.net = TFLiteModule.from_file(model_path()).eval().to(self.device)
        self.size = self.net.input_shape[1]
        self.anchors = ssd_anchors(self.size, [8, 16, 32, 32, 32])
        self.score_threshold = score_threshold

    def _letterbox(self, image: np.ndarray) -> tuple[torch.Tensor, float, float, float]:
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        nh, nw = round(h * scale), round(w * scale)
        t = torch.from_numpy(np.array(image, copy=True)).to(self.device).permute(2, 0, 1).float()[None]
        t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
        top, left = (self.size - nh) // 2, (self.size - nw) // 2
        t = F.pad(t / 127.5 - 1.0, (left, self.size - nw - left, top, self.size - nh - top))
        return t, scale, left, top

    @torch.inference_mode()
    def detect(self, images: list[np.ndarray], score_threshold: float | None = None) -> list[list[Detection]]:
        if not images:
            return []
        threshold = self.score_threshold if score_threshold is None else score_threshold
        boxed = [self._letterbox(im) for im in images]
        raw, logits = self.net(torch.cat([b[0] for b in boxed]))
        raw, scores = raw.cpu().numpy(), torch.sigmoid(logits.clamp(-100, 100)).cpu().numpy()[..., 0]
        results = []
        for (_, scale, left, top), r, s in zip(boxed, raw, scores):
            keep = s >= threshold
            if not keep.any():
                results.append([])
                continue
            r, s, anchors = r[keep] / self.size, s[keep], self.anchors[keep]
            centre = r[:, :2] + anchors
            half = r[:, 2:4] / 2
            face = np.concatenate([centre - half, centre + half], axis=1)
            kps = r[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
            dets = []
            for _, score, kp in weighted_nms(face, s, kps.reshape(len(kps), -1), 0.3):
                kp = (kp.reshape(4, 2) * self.size - (left, top)) / scale
                radius = float(np.linalg.norm(kp[1] - kp[0]))
                box = (float(kp[0, 0] - radius), float(kp[0, 1] - radius), 2 * radius, 2 * radius)
                dets.append(Detection(box, score, kp.astype(np.float32)))
            results.append(dets)
        return results


def body_warp(image: np.ndarray, box: tuple[float, float, float, float], size: tuple[int, int] = BODY_SAMPLE_SIZE) -> np.ndarray:
    """Body sample: an upright crop as tall as ``box`` and of ``size``'s aspect, centred on the
    box, resized to ``size`` (width, height); parts outside the image are black.

    The crop's width follows from the box height (not its width) so that MediaPipe's square
    body ROI and a tight person box give the same framing of the person.
    """
    x, y, w, h = box
    cw = h * size[0] / size[1]
    cx = x + w / 2
    crop = Image.fromarray(image).crop((round(cx - cw / 2), round(y), round(cx + cw / 2), round(y + h)))
    return np.asarray(crop.resize(size, Image.BILINEAR))


def load(device: str) -> BodyDetector:
    return BodyDetector(device)
