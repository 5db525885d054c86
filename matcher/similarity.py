"""Similarity in [0, 1] from the L2 distance between two dlib 128-d face descriptors.

dlib trained its metric network so that two faces are the same person when their descriptors are
closer than 0.6 (the margin threshold stored in the .dat, see shared/notes/dlib-dnn-format.md).
The mapping ``1 / (1 + (d / 0.6) ** 4)`` is 1 for identical descriptors, exactly 0.5 at that
threshold and falls towards 0 for far descriptors, strictly decreasing in ``d``; hence the default
similarity threshold 0.5 reproduces dlib's own decision rule, and ranking by similarity equals
ranking by distance. The exponent only sets how spread out the scores are on each side of 0.5
(same-person pairs sit around d = 0.3-0.5, i.e. similarity 0.94-0.67; different people around
d = 0.7-1.0, i.e. 0.35-0.07).
"""
from __future__ import annotations

import numpy as np

DISTANCE_THRESHOLD = 0.6
SIMILARITY_THRESHOLD = 0.5
_SHARPNESS = 4.0


def similarity(distance: np.ndarray | float) -> np.ndarray:
    """Map L2 distances (>= 0) to similarities in [0, 1]; ``SIMILARITY_THRESHOLD`` <=> 0.6."""
    d = np.asarray(distance, dtype=np.float64)
    if (d < 0).any() or not np.isfinite(d).all():
        raise ValueError("distances must be finite and non-negative")
    return 1.0 / (1.0 + (d / DISTANCE_THRESHOLD) ** _SHARPNESS)
