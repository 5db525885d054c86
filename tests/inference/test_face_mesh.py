"""TF Lite reader and the face mesh / iris models on real faces.

There is no TF Lite runtime to compare against here, so the checks are structural (graph
shapes, batch consistency, no unsupported ops) and anatomical on real photos.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.formats.tflite import TFLiteModule, read_graph
from inference.models.detector import FaceDetector
from inference.models.face_mesh import FaceMesh, weights_dir

SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))
FACES = SHARED / "faces"
# The 68-point scheme's left/right mirror permutation.
MIRROR_68 = (
    list(range(16, -1, -1)) + list(range(26, 16, -1)) + [27, 28, 29, 30] + [35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65]
)


def _rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector("cpu")


@pytest.fixture(scope="module")
def mesh_model() -> FaceMesh:
    return FaceMesh("cpu")


def test_graph_structure_and_batching() -> None:
    graph = read_graph(weights_dir() / "face_landmark.tflite")
    assert {op.kind for op in graph.ops} <= {"CONV_2D", "DEPTHWISE_CONV_2D", "PRELU", "ADD", "MAX_POOL_2D", "PAD"}
    module = TFLiteModule(graph).eval()
    assert module.input_shape == (1, 192, 192, 3)
    x = torch.rand(3, 3, 192, 192)
    with torch.no_grad():
        landmarks, flag = module(x)
        single = module(x[1:2])[0]
    assert landmarks.shape == (3, 1, 1, 1404) and flag.shape == (3, 1, 1, 1)
    assert torch.allclose(landmarks[1:2], single, atol=1e-3)


def test_mesh_plausible_on_real_faces(detector: FaceDetector, mesh_model: FaceMesh) -> None:
    files = sorted((FACES / "single_unlabeled").glob("*.jpg")) + sorted((FACES / "lfw").glob("*/*.jpg"))[::25]
    for path in files:
        image = _rgb(path)
        det = max(detector.detect([image])[0], key=lambda d: d.box[2])
        mesh = mesh_model.run(image, det)
        x, y, w, h = det.box
        assert mesh.points.shape == (468, 3) and mesh.score > 0.9, path.name
        inside = (mesh.points[:, 0] > x - 0.2 * w) & (mesh.points[:, 0] < x + 1.2 * w) & (mesh.points[:, 1] > y - 0.3 * h) & (mesh.points[:, 1] < y + 1.2 * h)
        assert inside.mean() > 0.97, path.name
        p = mesh.points
        eyes_y = (p[159, 1] + p[386, 1]) / 2
        assert eyes_y < p[1, 1] < p[13, 1] < p[152, 1], path.name  # eyes, nose tip, lips, chin
        assert p[33, 0] < p[133, 0] < p[362, 0] < p[263, 0], path.name
        assert mesh.iris is not None and mesh.iris.shape == (2, 5, 2)
        for (a, b), iris in zip(((33, 133), (362, 263)), mesh.iris):
            assert p[a, 0] < iris[0, 0] < p[b, 0], path.name
            assert abs(iris[0, 1] - (p[a, 1] + p[b, 1]) / 2) < 0.3 * (p[b, 0] - p[a, 0]), path.name


def test_mirror_symmetry(detector: FaceDetector, mesh_model: FaceMesh) -> None:
    for path in sorted((FACES / "single_unlabeled").glob("*.jpg"))[:4]:
        image = _rgb(path)
        mirrored = image[:, ::-1].copy()
        a = mesh_model.run(image, max(detector.detect([image])[0], key=lambda d: d.box[2])).landmarks68
        b = mesh_model.run(mirrored, max(detector.detect([mirrored])[0], key=lambda d: d.box[2])).landmarks68
        b = b[MIRROR_68]
        b[:, 0] = image.shape[1] - b[:, 0]
        scale = np.linalg.norm(a[45] - a[36])
        assert np.median(np.linalg.norm(a - b, axis=1)) < 0.06 * scale, path.name


def test_batched_run_matches_single(detector: FaceDetector, mesh_model: FaceMesh) -> None:
    image = _rgb(FACES / "multi" / "face_recognition_obama_and_biden.jpg")
    dets = detector.detect([image])[0]
    assert len(dets) >= 2
    many = mesh_model.run_many([(image, d) for d in dets])
    for d, m in zip(dets, many):
        one = mesh_model.run(image, d)
        assert np.allclose(one.points, m.points, atol=0.05) and np.allclose(one.iris, m.iris, atol=0.05)
