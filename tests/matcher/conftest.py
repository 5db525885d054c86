"""Shared fixtures for matcher tests: real dlib descriptors computed once per session."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FACEGATE_SHARED_DIR", ROOT.parent / "shared"))
IMAGES_PER_PERSON = 6


@pytest.fixture(scope="session")
def real_descriptors(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, list[str]]:
    """dlib ResNet descriptors of LFW photos (IMAGES_PER_PERSON per person), computed once per
    session with dlib itself and cached in a session temp dir. Returns (descriptors, identities)."""
    cache = tmp_path_factory.getbasetemp() / "dlib_lfw_descriptors.npz"
    if cache.exists():
        data = np.load(cache)
        return data["x"], data["who"].tolist()
    import dlib
    import face_recognition_models as frm
    from PIL import Image

    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    net = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    rows, who = [], []
    for person in sorted((SHARED / "faces" / "lfw").iterdir()):
        for path in sorted(person.glob("*.jpg"))[:IMAGES_PER_PERSON]:
            img = np.asarray(Image.open(path).convert("RGB"))
            faces = detector(img, 1)
            if not faces:
                continue
            face = max(faces, key=lambda r: r.area())
            rows.append(np.asarray(net.compute_face_descriptor(img, shapes(img, face)), dtype=np.float32))
            who.append(person.name)
    x = np.stack(rows)
    np.savez(cache, x=x, who=np.array(who))
    return x, who
