"""Reader for dlib's ``shape_predictor`` files (``shape_predictor_5_face_landmarks.dat``).

A shape predictor (Kazemi & Sullivan's ensemble of regression trees) is serialized by dlib as:
integer version 1; the initial shape (a float column matrix, x0 y0 x1 y1 ...); the forests (one
vector of trees per cascade level; a tree is its splits, each (idx1, idx2, threshold), in
breadth-first order, and its leaf vectors); per cascade level, each feature pixel's anchor
landmark index and its offset from that landmark in the normalised initial shape.

Trees are stored as arrays per cascade level so the cascade can run vectorised over trees.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.formats.dlib_dnn import DlibFormatError, DlibStream


@dataclass
class Cascade:
    """One cascade level: ``T`` complete trees with ``S`` splits and ``S + 1`` leaves each."""

    idx1: np.ndarray  # (T, S) int64 feature indices
    idx2: np.ndarray  # (T, S) int64
    thresh: np.ndarray  # (T, S) float32
    leaves: np.ndarray  # (T, S + 1, 2P) float32 shape increments
    anchor: np.ndarray  # (F,) int64 landmark each feature pixel is attached to
    deltas: np.ndarray  # (F, 2) float32 offset from that landmark, normalised-shape units


@dataclass
class ShapePredictorModel:
    initial_shape: np.ndarray  # (P, 2) float32, coordinates normalised to the face box
    cascades: list[Cascade]


def _matrix(s: DlibStream) -> np.ndarray:
    rows, cols = s.integer(), s.integer()
    # dlib writes negated sizes (the newer, array2d-compatible layout); older files positive ones.
    rows, cols = abs(rows), abs(cols)
    return s.floats(rows * cols).astype(np.float32)


def read_shape_predictor(path: str | Path) -> ShapePredictorModel:
    """Parse a dlib shape predictor ``.dat`` file."""
    s = DlibStream(Path(path).read_bytes())
    if s.integer() != 1:
        raise DlibFormatError("unsupported shape_predictor version")
    initial = _matrix(s)
    n_points = initial.size // 2
    forests = []
    for _ in range(s.integer()):
        trees = []
        for _ in range(s.integer()):
            splits = [(s.integer(), s.integer(), s.floating()) for _ in range(s.integer())]
            leaves = [_matrix(s) for _ in range(s.integer())]
            if len(leaves) != len(splits) + 1 or any(leaf.size != initial.size for leaf in leaves):
                raise DlibFormatError("shape predictor tree is not complete")
            trees.append((splits, leaves))
        forests.append(trees)
    anchors = [np.array([s.integer() for _ in range(s.integer())], dtype=np.int64) for _ in range(s.integer())]
    deltas = []
    for _ in range(s.integer()):
        count = s.integer()
        deltas.append(s.floats(2 * count).astype(np.float32).reshape(count, 2))
    if not s.at_end():
        raise DlibFormatError(f"{len(s.data) - s.pos} unexpected trailing bytes in shape predictor")
    if not (len(forests) == len(anchors) == len(deltas)):
        raise DlibFormatError("shape predictor cascade counts disagree")
    cascades = []
    for trees, anchor, delta in zip(forests, anchors, deltas):
        if {len(splits) for splits, _ in trees} != {len(trees[0][0])}:
            raise DlibFormatError("trees of one cascade level differ in depth")
        splits = np.array([[list(sp) for sp in tree_splits] for tree_splits, _ in trees], dtype=np.float64)
        idx1, idx2 = splits[..., 0].astype(np.int64), splits[..., 1].astype(np.int64)
        if idx1.max() >= len(anchor) or idx2.max() >= len(anchor) or anchor.max() >= n_points:
            raise DlibFormatError("shape predictor feature index out of range")
        cascades.append(
            Cascade(
                idx1=idx1,
                idx2=idx2,
                thresh=splits[..., 2].astype(np.float32),
                leaves=np.array([leaves for _, leaves in trees], dtype=np.float32),
                anchor=anchor,
                deltas=delta,
            )
        )
    return ShapePredictorModel(initial.reshape(n_points, 2), cascades)
