"""Shared fixtures for the inference tests: the shared face data and models loaded once per session.

dlib (the ``dlib-bin`` wheel) is used here only as the reference our torch/numpy ports must match.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from inference.formats.dlib_dnn import face_recognition_models_file


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    shared = Path(os.environ.get("FACEGATE_SHARED_DIR", Path(__file__).resolve().parents[2].parent / "shared"))
    faces = shared / "faces"
    if not (faces / "pairs.csv").is_file():
        pytest.fail(f"shared face data not found at {faces} (set FACEGATE_SHARED_DIR)")
    return faces


def bench_paths(count: int) -> list[Path]:
    """The bench images (``bench/shared_faces.py``, which bench/gpu.py and bench/pipeline.py run
    on), loaded by path: with bench/ on sys.path, ``tasks`` would name bench/tasks.py for every
    later test of the session."""
    spec = importlib.util.spec_from_file_location("shared_faces", Path(__file__).resolve().parents[2] / "bench" / "shared_faces.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.bench_paths(count)


def load_rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="session")
def descriptor() -> Any:
    from inference.models.descriptor import load

    return load("cpu")


@pytest.fixture(scope="session")
def shape_predictor() -> Any:
    from inference.models.shape_predictor import load

    return load("cpu")


@pytest.fixture(scope="session")
def dlib_reference() -> dict[str, Any]:
    """dlib's HOG detector, 5-point predictor and descriptor, built from the same model files."""
    import dlib

    return {
        "dlib": dlib,
        "hog": dlib.get_frontal_face_detector(),
        "shape": dlib.shape_predictor(str(face_recognition_models_file("shape_predictor_5_face_landmarks.dat"))),
        "descriptor": dlib.face_recognition_model_v1(
            str(face_recognition_models_file("dlib_face_recognition_resnet_model_v1.dat"))
        ),
    }


@pytest.fixture(scope="session")
def reference_faces(faces_dir: Path, dlib_reference: dict[str, Any]) -> list[tuple[np.ndarray, Any]]:
    """(image, dlib full_object_detection) for every HOG face in a varied set of real photos.

    LFW portraits, group photos (small faces) and large portraits (whose chips go through
    dlib's image pyramid), so alignment is checked in every code path.
    """
    paths = (
        sorted((faces_dir / "lfw_dev").glob("*/*.jpg"))[:24]
        + sorted((faces_dir / "multi").glob("dlib_*.jpg"))[:3]
        + sorted((faces_dir / "face_recognition").glob("*/*.jpg"))
    )
    out = []
    for path in paths:
        image = load_rgb(path)
        upsample = 1 if max(image.shape) < 800 else 0  # small faces need it; big photos would be slow
        for rect in dlib_reference["hog"](image, upsample):
            out.append((image, dlib_reference["shape"](image, rect)))
    assert len(out) >= 40
    return out
