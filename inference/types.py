"""Small value types shared by the detector, alignment, pipeline and estimators.

Kept dependency-free (numpy only) so any module in ``inference/`` can import them cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Detection:
    """One face found by a detector.

    ``box`` is (x, y, w, h) in source-image pixels (floats: detectors regress sub-pixel boxes).
    ``keypoints`` are the detector's own landmarks as a (K, 2) array of (x, y) source pixels, or
    None when the detector has none; alignment uses the 5-point shape predictor instead, so these
    are only hints (e.g. to build the predictor's box).
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None
