"""Mouth state from face-mesh geometry: opened score and smile score.

- opened: the gap between the inner lips (mesh 13-14) over the mouth width (corners 61-291),
  through a logistic centred at 0.15. Closed mouths on the shared photos measure 0.00-0.09,
  open ones (surprise, laughter) 0.25-0.33.
- smile: the mouth width over the distance between the eye centres, through a logistic
  centred at 1.03. Smiling stretches the mouth sideways: 1.04-1.16 on the shared smiling
  faces against 0.78-0.93 for neutral, sad, angry, disgusted and surprised ones; a fearful
  grimace (1.00) also stretches it, which this geometry cannot tell from a smile.

Occlusion (hand, mask) is not reported: the mesh model always places lips, even behind an
occluder, and no shipped model gives a mouth-occlusion signal.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.models.face_mesh import EYE_CORNERS, Mesh

_CORNERS = (61, 291)
_INNER_LIPS = (13, 14)


@dataclass
class MouthResult:
    opened_ratio: float
    opened_score: float
    is_opened: bool
    smile_ratio: float
    smile_score: float
    is_smiling: bool


def _logistic(x: float, center: float, softness: float) -> float:
    return float(1.0 / (1.0 + np.exp(-(x - center) / softness)))


class MouthEstimator:
    def __init__(self, open_threshold: float = 0.15, smile_threshold: float = 1.03) -> None:
        self.open_threshold = open_threshold
        self.smile_threshold = smile_threshold

    def estimate(self, mesh: Mesh) -> MouthResult:
        p = mesh.points[:, :2].astype(np.float64)
        width = np.linalg.norm(p[_CORNERS[1]] - p[_CORNERS[0]])
        opened = float(np.linalg.norm(p[_INNER_LIPS[1]] - p[_INNER_LIPS[0]]) / max(width, 1e-6))
        (a, b), (c, d) = EYE_CORNERS
        eye_distance = np.linalg.norm((p[c] + p[d]) / 2 - (p[a] + p[b]) / 2)
        smile = float(width / max(eye_distance, 1e-6))
        o = _logistic(opened, self.open_threshold, 0.025)
        s = _logistic(smile, self.smile_threshold, 0.04)
        return MouthResult(opened, o, o > 0.5, smile, s, s > 0.5)


def load(device: str) -> MouthEstimator:  # noqa: ARG001 - geometry only, runs on the CPU
    return MouthEstimator()
