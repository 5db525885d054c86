"""The torch rebuild of dlib's face descriptor network against dlib itself, and the whole pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.descriptor_format import (
    DEFAULT_DISTANCE_THRESHOLD,
    MIRRORED_VERSION,
    SINGLE_PASS_VERSION,
    distance_threshold,
)
from inference.formats.dlib_dnn import DlibFormatError, face_recognition_models_file, read_dnn
from inference.models.descriptor import MODEL_FILE, Descriptor, padded_add

from .conftest import load_rgb


@pytest.fixture(scope="module")
def chips(faces_dir: Path, reference_faces: list, dlib_reference: dict) -> np.ndarray:
    """dlib's example 150x150 chips plus dlib-cut chips of faces from real photos."""
    johns = [load_rgb(p) for p in sorted((faces_dir / "dlib_johns").glob("*/*.jpg"))[::3]]
    cut = [dlib_reference["dlib"].get_face_chip(image, shape, size=150, padding=0.25) for image, shape in reference_faces[::2]]
    return np.stack(johns + cut)


def test_file_structure() -> None:
    dnn = read_dnn(face_recognition_models_file(MODEL_FILE))
    assert dnn.loss == "loss_metric_2"
    assert dnn.distance_threshold == pytest.approx(0.6)
    assert dnn.input_size == (150, 150)
    assert dnn.input_mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    kinds = [layer.kind for layer in dnn.layers]
    assert kinds.count("con") == 29 and kinds.count("add_prev") == 14 and kinds[-1] == "fc"
    assert dnn.layers[-1].params["weight"].shape == (128, 256)


def test_truncated_file_rejected(tmp_path: Path) -> None:
    data = face_recognition_models_file(MODEL_FILE).read_bytes()
    path = tmp_path / "cut.dat"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DlibFormatError):
        read_dnn(path)


def test_padded_add_pads_the_smaller_operand_at_the_end() -> None:
    a = torch.ones(1, 2, 3, 3)
    b = torch.full((1, 4, 4, 4), 2.0)
    out = padded_add(a, b)
    assert out.shape == (1, 4, 4, 4)
    assert (out[:, :2, :3, :3] == 3).all()
    assert (out[:, 2:] == 2).all() and (out[:, :, 3] == 2).all() and (out[:, :, :, 3] == 2).all()


def test_matches_dlib(descriptor: Descriptor, chips: np.ndarray, dlib_reference: dict) -> None:
    ours = descriptor.extract(chips)  # one pass, no mirror: what dlib computes
    theirs = np.array([np.array(dlib_reference["descriptor"].compute_face_descriptor(c)) for c in chips])
    cos = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    gap = np.linalg.norm(ours - theirs, axis=1)
    # measured: cosine >= 0.99999992, L2 gap <= 1.3e-6 (dlib's own 0.6 rule is 5 orders larger)
    assert cos.min() >= 0.9999, cos.min()
    assert gap.max() < 1e-4, gap.max()
    assert len(chips) >= 30


def test_batches_and_mirror(descriptor: Descriptor, chips: np.ndarray) -> None:
    subset = chips[:5]
    batched = descriptor.extract(subset)
    single = np.concatenate([descriptor.extract(c[None]) for c in subset])
    assert np.allclose(batched, single, atol=1e-5)
    mirrored = descriptor.extract(subset, mirror=True)
    expected = (batched + descriptor.extract(np.ascontiguousarray(subset[:, :, ::-1]))) / 2
    assert np.allclose(mirrored, expected, atol=1e-5)
    assert not np.allclose(mirrored, batched, atol=1e-3)  # the network is not mirror-invariant
    assert descriptor.extract(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)
    with pytest.raises(ValueError):
        descriptor.extract(np.zeros((2, 112, 112, 3), np.uint8))


@pytest.mark.parametrize("version", [MIRRORED_VERSION, SINGLE_PASS_VERSION])
def test_identities_separate(descriptor: Descriptor, faces_dir: Path, version: int) -> None:
    """dlib's example chips of 5 people: every same-person distance below the version's threshold, none across."""
    paths = sorted((faces_dir / "dlib_johns").glob("*/*.jpg"))
    names = np.array([p.parent.name for p in paths])
    vectors = descriptor.extract(np.stack([load_rgb(p) for p in paths]), mirror=version == MIRRORED_VERSION)
    dist = np.linalg.norm(vectors[:, None] - vectors[None], axis=-1)
    same = names[:, None] == names[None]
    off_diagonal = ~np.eye(len(paths), dtype=bool)
    assert dist[same & off_diagonal].max() < distance_threshold(version)
    assert dist[~same].min() > distance_threshold(version)


def test_pipeline_end_to_end(faces_dir: Path) -> None:
    from inference import pipeline

    obama = sorted((faces_dir / "face_recognition").glob("*/obama*.jpg"))[:2]
    noface = sorted((faces_dir / "noface").glob("*.jpg"))[:1]
    biden = sorted((faces_dir / "face_recognition").glob("*/biden*.jpg"))[:1]
    images = [load_rgb(p) for p in obama + noface + biden]
    faces = pipeline.process(images)
    assert [len(f) for f in faces] == [1, 1, 0, 1]
    a, b, c = faces[0][0], faces[1][0], faces[3][0]
    assert a.chip.shape == (150, 150, 3) and a.descriptor.shape == (128,) and a.landmarks5.shape == (5, 2)
    x, y, w, h = a.detection.box
    assert ((a.landmarks5 >= [x, y]) & (a.landmarks5 <= [x + w, y + h])).all()
    assert np.linalg.norm(a.descriptor - b.descriptor) < DEFAULT_DISTANCE_THRESHOLD
    assert np.linalg.norm(a.descriptor - c.descriptor) > DEFAULT_DISTANCE_THRESHOLD
