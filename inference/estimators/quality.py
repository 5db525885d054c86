"""Image quality of a face sample: pure image statistics on the aligned face chip, no learned model.

All five scores are qualities in [0, 1], 1 = good, computed on the luma Y = 0.299 R + 0.587 G +
0.114 B (0..255) of the pixels inside a fixed face ellipse of the dlib-style chip (padding 0.25,
as cut by :mod:`inference.align`; the ellipse covers brows to chin and cheek to cheek, so the
background and hair weigh little):

- ``blur`` = V / (V + BLUR_K): V is the variance of the 4-neighbour Laplacian of Y (the classic
  variance-of-Laplacian focus measure, Pech-Pacheco et al. 2000). BLUR_K = 100 grey levels^2, the
  usual "blurry below" cut-off of that measure, maps to 0.5.
- ``darkness`` = 1 - mean(clip((DARK_LEVEL - Y) / DARK_LEVEL, 0, 1)): how far pixels sink below
  DARK_LEVEL = 100 (well below mid-grey), averaged; 1 when no pixel is that dark.
- ``lightness`` = 1 - mean(clip((Y - LIGHT_LEVEL) / (255 - LIGHT_LEVEL), 0, 1)), LIGHT_LEVEL = 170:
  the same for over-exposure.
- ``illumination`` = min(Y_left, Y_right) / max(Y_left, Y_right): mean luma of the face's two
  halves (the chip is aligned, so the midline is the chip's vertical centre line); 1 = evenly lit,
  low under side lighting, which ISO/IEC 19794-5 asks to avoid.
- ``specularity`` = 1 - share of specular pixels, a pixel being specular when it is near white
  and colourless: max(R, G, B) >= 240 and (max - min) / max < 0.15 (highlights on skin or
  glasses, as opposed to merely bright skin, which keeps its hue).

Raw statistics (Laplacian variance, mean luma, specular share) are returned alongside.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLUR_K = 100.0
DARK_LEVEL = 100.0
LIGHT_LEVEL = 170.0
SPECULAR_MIN = 240.0
SPECULAR_MAX_CHROMA = 0.15
# Face ellipse in chip coordinates (fractions of the side): centre and semi-axes. With dlib's
# template at padding 0.25 the eyes sit at y ~ 0.31, the nose tip at ~ 0.59 and the eye corners
# span x ~ 0.25-0.74 of the chip.
_ELLIPSE = (0.5, 0.55, 0.30, 0.36)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class Quality:
    blur: float
    darkness: float
    lightness: float
    illumination: float
    specularity: float
    laplacian_variance: float
    mean_luma: float
    specular_share: float


def face_mask(size: int) -> np.ndarray:
    """Boolean (size, size) mask of the face ellipse on a chip of that size."""
    cx, cy, ax, ay = _ELLIPSE
    c = (np.arange(size) + 0.5) / size
    return ((c[None, :] - cx) / ax) ** 2 + ((c[:, None] - cy) / ay) ** 2 <= 1.0


def _laplacian(y: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian; edge rows/columns are dropped (returned one pixel smaller each side)."""
    return y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]


class QualityEstimator:
    def estimate(self, chip: np.ndarray) -> Quality:
        """Quality of one aligned RGB uint8 face chip (square, dlib layout)."""
        if chip.ndim != 3 or chip.shape[2] != 3 or chip.shape[0] != chip.shape[1] or chip.shape[0] < 16:
            raise ValueError(f"expected a square (S, S, 3) face chip, got {chip.shape}")
        rgb = chip.astype(np.float64)
        y = rgb @ _LUMA
        size = chip.shape[0]
        mask = face_mask(size)
        face = y[mask]

        lap_var = float(_laplacian(y)[mask[1:-1, 1:-1]].var())
        darkness = 1.0 - float(np.clip((DARK_LEVEL - face) / DARK_LEVEL, 0, 1).mean())
        lightness = 1.0 - float(np.clip((face - LIGHT_LEVEL) / (255.0 - LIGHT_LEVEL), 0, 1).mean())

        half = size // 2
        left = y[:, :half][mask[:, :half]].mean()
        right = y[:, size - half :][mask[:, size - half :]].mean()
        illumination = float(min(left, right) / max(left, right, 1e-6))

        hi = rgb.max(axis=2)[mask]
        lo = rgb.min(axis=2)[mask]
        specular = (hi >= SPECULAR_MIN) & ((hi - lo) < SPECULAR_MAX_CHROMA * hi)
        share = float(specular.mean())
        return Quality(
            blur=lap_var / (lap_var + BLUR_K),
            darkness=darkness,
            lightness=lightness,
            illumination=illumination,
            specularity=1.0 - share,
            laplacian_variance=lap_var,
            mean_luma=float(face.mean()),
            specular_share=share,
        )

    def estimate_many(self, chips: np.ndarray) -> list[Quality]:
        return [self.estimate(c) for c in chips]


def load(device: str) -> QualityEstimator:  # noqa: ARG001 - image statistics, numpy on the CPU
    return QualityEstimator()
