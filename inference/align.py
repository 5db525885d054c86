"""Face alignment: dlib's ``get_face_chip`` (150x150, padding 0.25) from the 5-point landmarks.

The descriptor network was trained on chips cut exactly this way, so this module reproduces
dlib's ``get_face_chip_details`` + ``extract_image_chip`` step by step rather than using a
generic warp: the chip rectangle is the chip's square scaled and rotated by the least-squares
similarity from dlib's 5-point template to the landmarks; when that rectangle is more than
twice the chip size, dlib first shrinks the (cropped) image with its 5-tap pyramid, and it
samples bilinearly with truncation to uint8 and black outside the image. Different
interpolation (e.g. plain bilinear from full resolution, or rounding) shifts descriptors by a
few hundredths, which is visible in verification accuracy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FACE_CHIP_SIZE = 150
FACE_CHIP_PADDING = 0.25

# dlib's 5-point template (get_face_chip_details) in unit-square face coordinates, in the
# predictor's landmark order.
TEMPLATE5 = np.array(
    [
        [0.8595674595992, 0.2134981538014],
        [0.6460604764104, 0.2289674387677],
        [0.1205750620789, 0.2137274526848],
        [0.3340850613712, 0.2290642403242],
        [0.4901123135679, 0.6277975316475],
    ]
)

Rect = tuple[float, float, float, float]  # dlib drectangle: left, top, right, bottom (inclusive)


def similarity_matrices(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation+scale (no reflection) taking centred ``src`` (P,2) to each centred ``dst`` (N,P,2).

    The closed form of the 2-D Umeyama fit that dlib's ``find_similarity_transform`` computes
    with an SVD (both minimise the same objective over proper similarities). Returns (N, 2, 2).
    """
    s = src - src.mean(axis=0)
    d = dst - dst.mean(axis=1, keepdims=True)
    norm = (s**2).sum()
    a = (s[None, :, 0] * d[..., 0] + s[None, :, 1] * d[..., 1]).sum(axis=1) / norm
    b = (s[None, :, 0] * d[..., 1] - s[None, :, 1] * d[..., 0]).sum(axis=1) / norm
    return np.stack([np.stack([a, -b], axis=-1), np.stack([b, a], axis=-1)], axis=1)


@dataclass(frozen=True)
class ChipGeometry:
    """dlib's ``chip_details``: the source rectangle (before rotation), its rotation and chip size."""

    rect: Rect
    angle: float
    size: int


def chip_landmarks(size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> np.ndarray:
    """(5, 2): where the 5 landmarks lie on an aligned chip, the places the warp maps them to."""
    return (padding + TEMPLATE5) / (2 * padding + 1) * size


def chip_geometry(points5: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> ChipGeometry:
    """Where dlib cuts the face chip for these 5 landmarks (source pixels)."""
    points = np.asarray(points5, dtype=np.float64).reshape(5, 2)
    template = chip_landmarks(size, padding)
    m = similarity_matrices(template, points[None])[0]
    t = points.mean(axis=0) - m @ template.mean(axis=0)
    a, b = m[0, 0], m[1, 0]  # the transform applied to (1, 0)
    cx, cy = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * math.hypot(a, b) - 1) / 2  # dlib's centered_drect: width counts both end pixels
    return ChipGeometry((cx - half, cy - half, cx + half, cy + half), math.atan2(b, a), size)


def _area(rect: Rect) -> float:
    left, top, right, bottom = rect
    if left > right or top > bottom:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _rect_down(rect: Rect) -> Rect:
    """dlib's ``pyramid_down<2>::rect_down`` (its point_down is p / 2 - (1.25, 0.75))."""
    left, top, right, bottom = rect
    return (left / 2 - 1.25, top / 2 - 0.75, right / 2 - 1.25, bottom / 2 - 0.75)


def _rotate(center: tuple[float, float], x: float, y: float, angle: float) -> tuple[float, float]:
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = x - center[0], y - center[1]
    return (c * dx - s * dy + center[0], s * dx + c * dy + center[1])


def _corners(rect: Rect, angle: float) -> list[tuple[float, float]]:
    """Top-left, top-right, bottom-left, bottom-right corners rotated about the rect's centre."""
    left, top, right, bottom = rect
    center = ((left + right) / 2, (top + bottom) / 2)
    return [_rotate(center, x, y, angle) for x, y in ((left, top), (right, top), (left, bottom), (right, bottom))]


def pyramid_down(image: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>``: separable [1 4 6 4 1] filter, every other pixel, integer /256."""
    rows, cols = image.shape[:2]
    if rows <= 8 or cols <= 8:
        return np.zeros((0, 0, 3), dtype=np.uint8)
    x = image.astype(np.uint16)  # 16 * 16 * 255 = 65280: the filter's sums fit exactly
    out_cols = (cols - 3) // 2
    taps = [x[:, k : k + 2 * out_cols : 2] for k in range(5)]
    horizontal = taps[0] + 4 * taps[1] + 6 * taps[2] + 4 * taps[3] + taps[4]
    out_rows = (rows - 3) // 2
    taps = [horizontal[k : k + 2 * out_rows : 2] for k in range(5)]
    return ((taps[0] + 4 * taps[1] + 6 * taps[2] + 4 * taps[3] + taps[4]) // 256).astype(np.uint8)


def _bilinear(source: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """dlib's ``interpolate_bilinear`` on RGB: black where a 2x2 neighbourhood leaves the image, truncation."""
    rows, cols = source.shape[:2]
    left = np.floor(xs).astype(np.int64)
    top = np.floor(ys).astype(np.int64)
    valid = (left >= 0) & (top >= 0) & (left + 1 < cols) & (top + 1 < rows)
    left_c = np.clip(left, 0, max(cols - 2, 0))
    top_c = np.clip(top, 0, max(rows - 2, 0))
    fx = (xs - left)[..., None]
    fy = (ys - top)[..., None]
    # Flat row lookups of only the pixels needed: converting the whole source to float64 and
    # indexing it in 2-D cost 3x more per chip.
    flat = np.ascontiguousarray(source).reshape(-1, 3)
    at = top_c * cols + left_c
    tl, tr, bl, br = (np.take(flat, at + offset, axis=0).astype(np.float64) for offset in (0, 1, cols, cols + 1))
    value = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    out = np.clip(value, 0, 255).astype(np.uint8)  # C++ cast to unsigned char truncates
    out[~valid] = 0
    return out


def extract_chip(image: np.ndarray, geometry: ChipGeometry) -> np.ndarray:
    """Cut the (size, size, 3) uint8 chip described by ``geometry`` out of an RGB image, as dlib does."""
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) RGB image, got shape {image.shape}")
    height, width = image.shape[:2]
    size = geometry.size
    chip_area = size * size
    # how far dlib's pyramid would go, which sets the margin of the crop it works on
    grow = 2.0
    rect = _rect_down(geometry.rect)
    while _area(rect) > chip_area:
        rect = _rect_down(rect)
        grow = grow * 2 + 2
    corners = np.array(_corners(geometry.rect, geometry.angle))
    lo = np.maximum(corners.min(axis=0) - grow, 0.0)
    hi = np.minimum(corners.max(axis=0) + grow, [width - 1.0, height - 1.0])
    chip = np.zeros((size, size, 3), dtype=np.uint8)
    if (lo > hi).any():
        return chip  # the chip lies entirely outside the image
    x0, y0 = (int(v) for v in np.floor(lo + 0.5))
    x1, y1 = (int(v) for v in np.floor(hi + 0.5))
    source = image[y0 : y1 + 1, x0 : x1 + 1]
    left, top, right, bottom = geometry.rect
    rect = (left - x0, top - y0, right - x0, bottom - y0)
    while _area(_rect_down(rect)) > chip_area:
        rect = _rect_down(rect)
        source = pyramid_down(source)
    # chip pixel (c, r) -> source point: the chip's corners land on the rotated rect's corners
    tl, tr, bl, _ = (np.array(p) for p in _corners(rect, geometry.angle))
    steps = np.arange(size, dtype=np.float64) / (size - 1)
    points = tl + steps[None, :, None] * (tr - tl) + steps[:, None, None] * (bl - tl)
    return _bilinear(source, points[..., 0], points[..., 1])


def resize_chip(chip: np.ndarray, size: int = FACE_CHIP_SIZE) -> np.ndarray:
    """An aligned square chip of another size (a face sample saved from elsewhere) at ``size``."""
    height, width = chip.shape[:2]
    if (height, width) == (size, size):
        return chip
    return extract_chip(chip, ChipGeometry((0.0, 0.0, width - 1.0, height - 1.0), 0.0, size))


def face_chip(image: np.ndarray, points5: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> np.ndarray:
    """``dlib.get_face_chip`` for one face's 5 landmarks."""
    return extract_chip(image, chip_geometry(points5, size, padding))


def face_chips(image: np.ndarray, landmarks: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> np.ndarray:
    """Chips (N, size, size, 3) for the (N, 5, 2) landmarks of faces in one image."""
    chips = np.zeros((len(landmarks), size, size, 3), dtype=np.uint8)
    for i, points in enumerate(landmarks):
        chips[i] = face_chip(image, points, size, padding)
    return chips
