"""Eye state (open / closed) per eye from the face mesh's eyelid aperture.

The score is the eye aspect ratio (Soukupova & Cech 2016) on mesh points: the mean of three
upper-to-lower eyelid distances over the corner-to-corner width, passed through a logistic
centred on ``threshold``. Open eyes on the shared photos (LFW, face-api.js expressions) measure
0.21-0.38; the default threshold 0.15 sits below that range. The shared set has no labelled
closed eyes, so the threshold is a geometric choice, not one fitted on closed-eye data.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.models.face_mesh import Mesh

# (outer/inner corners as seen left-to-right, then three upper/lower lid pairs) for the eye on
# the image's left and on its right.
EYE_POINTS = (
    ((33, 133), ((160, 144), (159, 145), (158, 153))),
    ((362, 263), ((385, 380), (386, 374), (387, 373))),
)


@dataclass
class EyeState:
    aperture: float  # eye aspect ratio
    score: float  # 0..1, above 0.5 = open
    is_open: bool


@dataclass
class EyesResult:
    left: EyeState  # the eye on the image's left
    right: EyeState


def eye_aspect_ratio(points: np.ndarray, corners: tuple[int, int], lids: tuple[tuple[int, int], ...]) -> float:
    width = np.linalg.norm(points[corners[1]] - points[corners[0]])
    return float(np.mean([np.linalg.norm(points[a] - points[b]) for a, b in lids]) / max(width, 1e-6))


class EyesEstimator:
    def __init__(self, threshold: float = 0.15, softness: float = 0.02) -> None:
        self.threshold = threshold
        self.softness = softness

    def _state(self, ear: float) -> EyeState:
        score = float(1.0 / (1.0 + np.exp(-(ear - self.threshold) / self.softness)))
        return EyeState(ear, score, score > 0.5)

    def estimate(self, mesh: Mesh) -> EyesResult:
        p = mesh.points[:, :2].astype(np.float64)
        left, right = (self._state(eye_aspect_ratio(p, c, lids)) for c, lids in EYE_POINTS)
        return EyesResult(left, right)


def load(device: str) -> EyesEstimator:  # noqa: ARG001 - geometry only, runs on the CPU
    return EyesEstimator()
