"""Image quality statistics on real face chips: each degradation lowers its own score."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from inference.align import face_chip
from inference.estimators.quality import Quality, QualityEstimator, face_mask


@pytest.fixture(scope="module")
def chips(reference_faces) -> list[np.ndarray]:
    out = []
    for image, shape in reference_faces[::3]:
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        out.append(face_chip(image, points))
    assert len(out) >= 12
    return out


@pytest.fixture(scope="module")
def estimator() -> QualityEstimator:
    return QualityEstimator()


def _pil(chip: np.ndarray, f) -> np.ndarray:
    return np.asarray(f(Image.fromarray(chip)))


def test_scores_are_qualities_in_unit_range(estimator, chips):
    for chip in chips:
        q = estimator.estimate(chip)
        for name in ("blur", "darkness", "lightness", "illumination", "specularity"):
            assert 0.0 <= getattr(q, name) <= 1.0, (name, q)
        assert 30 < q.mean_luma < 230


def test_blurred_copy_is_blurrier(estimator, chips):
    for chip in chips:
        sharp = estimator.estimate(chip)
        blurred = estimator.estimate(_pil(chip, lambda im: im.filter(ImageFilter.GaussianBlur(1.5))))
        assert blurred.blur < sharp.blur
        assert blurred.laplacian_variance < 0.5 * sharp.laplacian_variance
        # a chip cut from a 4x smaller image (a small, far face) is blurrier too
        small = _pil(chip, lambda im: im.resize((37, 37), Image.BILINEAR).resize((150, 150), Image.BILINEAR))
        assert estimator.estimate(small).blur < sharp.blur


def test_darkened_copy_is_darker_and_brightened_copy_lighter(estimator, chips):
    for chip in chips:
        q = estimator.estimate(chip)
        dark = estimator.estimate((chip * 0.3).astype(np.uint8))
        light = estimator.estimate((255 - (255 - chip.astype(np.float64)) * 0.25).astype(np.uint8))
        assert dark.darkness < q.darkness - 0.2 and dark.darkness < 0.7  # fails the ISO default
        assert dark.lightness >= q.lightness
        assert light.lightness < q.lightness - 0.2 and light.lightness < 0.7
        assert light.darkness >= q.darkness


def test_side_light_lowers_uniformity_and_mirroring_keeps_it(estimator, chips):
    # harsh light from one side: one half of the face at 35%, a short transition at the midline
    x = np.linspace(-1.0, 1.0, chips[0].shape[1])
    ramp = (0.35 + 0.65 / (1 + np.exp(-x / 0.05)))[None, :, None]
    for chip in chips:
        q = estimator.estimate(chip)
        mirrored = estimator.estimate(np.ascontiguousarray(chip[:, ::-1]))
        assert mirrored.illumination == pytest.approx(q.illumination, abs=1e-9)
        assert mirrored.laplacian_variance == pytest.approx(q.laplacian_variance, rel=1e-9)
        # darkening the already darker half of an unevenly lit face would even it out, so the
        # stronger of the two side lights is the one to judge by
        side = min(estimator.estimate((chip * r).astype(np.uint8)).illumination for r in (ramp, ramp[:, ::-1]))
        assert side < q.illumination - 0.15 and side < 0.6


def test_white_highlights_are_specular_bright_skin_is_not(estimator, chips):
    size = chips[0].shape[0]
    yy, xx = np.mgrid[:size, :size]
    spots = np.zeros((size, size), dtype=bool)
    for cx, cy in ((0.4, 0.45), (0.6, 0.45), (0.5, 0.7)):  # cheeks and chin, inside the face ellipse
        spots |= (xx - cx * size) ** 2 + (yy - cy * size) ** 2 <= (0.05 * size) ** 2
    assert (spots & face_mask(size)).sum() == spots.sum()
    for chip in chips:
        q = estimator.estimate(chip)
        shiny = chip.copy()
        shiny[spots] = (252, 250, 248)
        glare = estimator.estimate(shiny)
        assert glare.specularity < 0.95 and glare.specularity < q.specularity
        skin = chip.copy()
        skin[spots] = (250, 200, 160)  # bright but coloured: painting it can only remove highlights
        assert estimator.estimate(skin).specular_share <= q.specular_share


def test_registry_and_input_validation(estimator):
    from inference import registry

    assert isinstance(registry.get("image_quality"), QualityEstimator)
    with pytest.raises(ValueError):
        estimator.estimate(np.zeros((150, 120, 3), dtype=np.uint8))
    flat = estimator.estimate(np.full((150, 150, 3), 128, dtype=np.uint8))
    assert isinstance(flat, Quality)
    assert flat.blur == 0.0 and flat.illumination == 1.0 and flat.darkness == 1.0
