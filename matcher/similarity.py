"""Distance -> similarity for matcher results.

The mapping is calibrated per descriptor version, so it lives with the descriptor format in
``inference.descriptor_format`` (a log-logistic in the L2 distance: exactly 1 at distance 0,
exactly 0.5 at the version's default distance threshold); the matcher re-exports it rather than
keeping a second copy. Ranking by similarity equals ranking by distance because the map is
strictly decreasing.
"""
from __future__ import annotations

from inference.descriptor_format import (
    DEFAULT_DISTANCE_THRESHOLD,
    DEFAULT_DISTANCE_THRESHOLDS,
    DEFAULT_SIMILARITY_THRESHOLD,
    DESCRIPTOR_VERSION,
    distance_for_similarity,
    distance_threshold,
    similarity,
)

__all__ = ["DEFAULT_DISTANCE_THRESHOLD", "DEFAULT_DISTANCE_THRESHOLDS", "DEFAULT_SIMILARITY_THRESHOLD",
           "DESCRIPTOR_VERSION", "distance_for_similarity", "distance_threshold", "similarity"]
