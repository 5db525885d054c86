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

from dataclasses import dataclass
from typing import Any

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


def similarity_coefficients(src: Any, dst: Any) -> tuple[Any, Any]:
    """Least-squares rotation+scale (no reflection) taking centred ``src`` (P,2) to each centred ``dst`` (N,P,2):
    (a, b), each (N,), of the matrices [[a, -b], [b, a]].

    The closed form of the 2-D Umeyama fit that dlib's ``find_similarity_transform`` computes
    with an SVD (both minimise the same objective over proper similarities). Written for numpy
    arrays and torch tensors alike: the device landmarks (``ShapePredictor.predict_device``)
    run the very same operations.
    """
    s = src - src.mean(axis=0)
    d = dst - dst.mean(axis=1, keepdims=True)
    norm = (s**2).sum()
    a = (s[None, :, 0] * d[..., 0] + s[None, :, 1] * d[..., 1]).sum(axis=1) / norm
    b = (s[None, :, 0] * d[..., 1] - s[None, :, 1] * d[..., 0]).sum(axis=1) / norm
    return a, b


@dataclass(frozen=True)
class ChipGeometry:
    """dlib's ``chip_details``: the source rectangle (before rotation), its rotation and chip size."""

    rect: Rect
    rotation: tuple[float, float]  # cosine and sine of the angle
    size: int


def chip_landmarks(size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> np.ndarray:
    """(5, 2): where the 5 landmarks lie on an aligned chip, the places the warp maps them to."""
    return (padding + TEMPLATE5) / (2 * padding + 1) * size


def chip_geometries(landmarks: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> tuple[np.ndarray, np.ndarray]:
    """Where dlib cuts the chips of (N, 5, 2) landmarks: rectangles (N, 4) left, top, right, bottom
    in source pixels and rotations (N, 2) cosine, sine.

    The rotation is the similarity's normalised first column rather than dlib's cos(atan2()):
    the same angle to an ulp, and made of correctly rounded operations only, so the host and the
    device paths (:mod:`inference.align_device`), which share these numbers, sample alike."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5, 2)
    template = chip_landmarks(size, padding)
    a, b = similarity_coefficients(template, points)  # a, b: the transform applied to (1, 0)
    m = np.stack([np.stack([a, -b], axis=-1), np.stack([b, a], axis=-1)], axis=1)
    t = points.mean(axis=1) - m @ template.mean(axis=0)
    length = np.sqrt(a * a + b * b)
    center = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * length - 1) / 2  # dlib's centered_drect: width counts both end pixels
    rects = np.stack([center[:, 0] - half, center[:, 1] - half, center[:, 0] + half, center[:, 1] + half], axis=1)
    return rects, np.stack([a / length, b / length], axis=1)


def chip_geometry(points5: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> ChipGeometry:
    """Where dlib cuts the face chip for these 5 landmarks (source pixels)."""
    rects, rotations = chip_geometries(points5, size, padding)
    return ChipGeometry(tuple(rects[0].tolist()), tuple(rotations[0].tolist()), size)


def _area(rects: np.ndarray) -> np.ndarray:
    left, top, right, bottom = rects.T
    return np.where((left > right) | (top > bottom), 0.0, (right - left + 1) * (bottom - top + 1))


def _rect_down(rects: np.ndarray) -> np.ndarray:
    """dlib's ``pyramid_down<2>::rect_down`` (its point_down is p / 2 - (1.25, 0.75))."""
    return rects / 2 - np.array([1.25, 0.75, 1.25, 0.75])


def _corners(rects: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """(N, 4, 2): top-left, top-right, bottom-left, bottom-right corners rotated about each rect's centre."""
    left, top, right, bottom = (v[:, None] for v in rects.T)
    c, s = rotations[:, 0, None], rotations[:, 1, None]
    cx, cy = (left + right) / 2, (top + bottom) / 2
    dx = np.concatenate([left, right, left, right], axis=1) - cx
    dy = np.concatenate([top, top, bottom, bottom], axis=1) - cy
    return np.stack([c * dx - s * dy + cx, s * dx + c * dy + cy], axis=-1)


@dataclass(frozen=True)
class ChipPlans:
    """How each chip is cut: the part of its image dlib works on, how many times that crop goes
    through ``pyramid_down``, and where the chip's corners land on the reduced crop. Computed on
    the host for the numpy and the device warps alike, so both sample the same points."""

    crops: np.ndarray  # (N, 4) int64 x0, y0, x1, y1 inclusive image pixels; x0 > x1: nothing to cut
    levels: np.ndarray  # (N,) int64 pyramid_down steps
    corners: np.ndarray  # (N, 3, 2) float64 top-left, top-right, bottom-left chip corners in the reduced crop


def chip_plans(rects: np.ndarray, rotations: np.ndarray, image_sizes: np.ndarray, size: int) -> ChipPlans:
    """Plans for chips of ``size`` from rects (N, 4) and rotations (N, 2) in images of (N, 2) height, width."""
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 2)
    image_sizes = np.asarray(image_sizes, dtype=np.int64).reshape(-1, 2)
    chip_area = size * size
    # how far dlib's pyramid would go, which sets the margin of the crop it works on
    grow = np.full(len(rects), 2.0)
    reduced = _rect_down(rects)
    while (more := _area(reduced) > chip_area).any():
        reduced = np.where(more[:, None], _rect_down(reduced), reduced)
        grow = np.where(more, grow * 2 + 2, grow)
    corners = _corners(rects, rotations)
    lo = np.maximum(corners.min(axis=1) - grow[:, None], 0.0)
    hi = np.minimum(corners.max(axis=1) + grow[:, None], image_sizes[:, ::-1] - 1.0)
    crops = np.floor(np.concatenate([lo, hi], axis=1) + 0.5).astype(np.int64)
    crops[(lo > hi).any(axis=1)] = (0, 0, -1, -1)  # the chip lies entirely outside the image
    rects = rects - np.concatenate([crops[:, :2], crops[:, :2]], axis=1)
    levels = np.zeros(len(rects), dtype=np.int64)
    while (more := _area(_rect_down(rects)) > chip_area).any():
        rects = np.where(more[:, None], _rect_down(rects), rects)
        levels += more
    return ChipPlans(crops, levels, _corners(rects, rotations)[:, :3])


def chip_grid(corners: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Source x and y (N, size, size) of every chip pixel: the chip's corners land on ``corners``."""
    steps = np.arange(size, dtype=np.float64) / (size - 1)
    tl, tr, bl = (corners[:, None, None, k] for k in range(3))
    points = tl + steps[None, None, :, None] * (tr - tl) + steps[None, :, None, None] * (bl - tl)
    return points[..., 0], points[..., 1]


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
    if rows < 2 or cols < 2:
        return np.zeros((*xs.shape, 3), dtype=np.uint8)  # no 2x2 neighbourhood inside
    left = np.floor(xs).astype(np.int64)
    top = np.floor(ys).astype(np.int64)
    valid = (left >= 0) & (top >= 0) & (left + 1 < cols) & (top + 1 < rows)
    left_c = np.clip(left, 0, cols - 2)
    top_c = np.clip(top, 0, rows - 2)
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


def _cut(image: np.ndarray, crop: np.ndarray, levels: int, corners: np.ndarray, size: int) -> np.ndarray:
    x0, y0, x1, y1 = crop.tolist()
    source = image[y0 : y1 + 1, x0 : x1 + 1]
    for _ in range(levels):
        source = pyramid_down(source)
    xs, ys = chip_grid(corners[None], size)
    return _bilinear(source, xs[0], ys[0])


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) RGB image, got shape {image.shape}")


def extract_chip(image: np.ndarray, geometry: ChipGeometry) -> np.ndarray:
    """Cut the (size, size, 3) uint8 chip described by ``geometry`` out of an RGB image, as dlib does."""
    _check_image(image)
    plans = chip_plans(np.array([geometry.rect]), np.array([geometry.rotation]), np.array([image.shape[:2]]), geometry.size)
    return _cut(image, plans.crops[0], int(plans.levels[0]), plans.corners[0], geometry.size)


def resize_chip(chip: np.ndarray, size: int = FACE_CHIP_SIZE) -> np.ndarray:
    """An aligned square chip of another size (a face sample saved from elsewhere) at ``size``."""
    height, width = chip.shape[:2]
    if (height, width) == (size, size):
        return chip
    return extract_chip(chip, ChipGeometry((0.0, 0.0, width - 1.0, height - 1.0), (1.0, 0.0), size))


def face_chip(image: np.ndarray, points5: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> np.ndarray:
    """``dlib.get_face_chip`` for one face's 5 landmarks."""
    return face_chips(image, np.asarray(points5)[None], size, padding)[0]


def face_chips(image: np.ndarray, landmarks: np.ndarray, size: int = FACE_CHIP_SIZE, padding: float = FACE_CHIP_PADDING) -> np.ndarray:
    """Chips (N, size, size, 3) for the (N, 5, 2) landmarks of faces in one image."""
    _check_image(image)
    chips = np.zeros((len(landmarks), size, size, 3), dtype=np.uint8)
    if len(landmarks) == 0:
        return chips
    rects, rotations = chip_geometries(landmarks, size, padding)
    plans = chip_plans(rects, rotations, np.repeat([image.shape[:2]], len(landmarks), axis=0), size)
    for i in range(len(landmarks)):
        chips[i] = _cut(image, plans.crops[i], int(plans.levels[i]), plans.corners[i], size)
    return chips
