"""Emotions: the torch replay of fer's Keras model against Keras itself, and plausibility on the
shared face-api.js expression samples (their file names give the expression)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from inference.formats.keras_h5 import same_padding
from inference.models.emotions import EMOTIONS, EmotionsEstimator, weights_file

FILE_EXPRESSIONS = {
    "angry": "anger",
    "disgusted": "disgust",
    "fearful": "fear",
    "happy": "happiness",
    "neutral": "neutral",
    "sad": "sadness",
    "surprised": "surprise",
}

# Keras 3 on its torch backend loads the Keras 2 .hdf5 itself; run it in a child process so its
# backend setup cannot touch this process's torch state.
_KERAS_REFERENCE = """
import os, sys, numpy as np
os.environ["KERAS_BACKEND"] = "torch"
import keras
model = keras.models.load_model(sys.argv[1], compile=False)
x = np.load(sys.argv[2])
np.save(sys.argv[3], np.asarray(model.predict(x, verbose=0)))
"""


@pytest.fixture(scope="module")
def estimator() -> EmotionsEstimator:
    return EmotionsEstimator("cpu")


@pytest.fixture(scope="module")
def samples(faces_dir: Path) -> list[tuple[str, np.ndarray, tuple[float, float, float, float]]]:
    """(expected emotion, image, face box) for each face-api.js expression sample."""
    from inference import registry

    detector = registry.get("face_detector")
    out = []
    for path in sorted((faces_dir / "single_unlabeled").glob("faceapi_*.jpg")):
        image = np.asarray(Image.open(path).convert("RGB"))
        dets = detector.detect([image])[0]
        assert dets, path
        box = max(dets, key=lambda d: d.box[2]).box
        out.append((FILE_EXPRESSIONS[path.stem.split("_", 1)[1]], image, box))
    assert len(out) == 7
    return out


def test_same_padding_is_tensorflows():
    assert same_padding(64, 3, 1) == (1, 1)
    assert same_padding(64, 3, 2) == (0, 1)  # the odd pixel goes after, unlike torch's symmetric padding
    assert same_padding(63, 3, 2) == (1, 1)
    assert same_padding(64, 1, 2) == (0, 0)


def test_network_matches_keras(estimator, samples, tmp_path):
    with torch.inference_mode():
        inputs = torch.cat([estimator.crops(image, [box]) for _, image, box in samples])
        mirrored = torch.flip(inputs, dims=[3])
    batch = torch.cat([inputs, mirrored]).numpy()
    np.save(tmp_path / "x.npy", batch.transpose(0, 2, 3, 1))  # Keras takes NHWC
    env = dict(os.environ, KERAS_BACKEND="torch", CUDA_VISIBLE_DEVICES="")
    subprocess.run(
        [sys.executable, "-c", _KERAS_REFERENCE, str(weights_file()), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
        check=True,
        env=env,
        timeout=300,
    )
    reference = np.load(tmp_path / "y.npy")
    ours = estimator.probabilities(torch.from_numpy(batch))
    assert ours.shape == reference.shape == (14, len(EMOTIONS))
    assert np.abs(ours - reference).max() < 1e-4
    np.testing.assert_allclose(ours.sum(axis=1), 1.0, atol=1e-5)


def test_expression_samples_agree_with_their_names(estimator, samples):
    results = estimator.estimate_many([(image, [box]) for _, image, box in samples])
    predicted = [r[0].predominant for r in results]
    expected = [e for e, _, _ in samples]
    agreement = sum(p == e for p, e in zip(predicted, expected))
    # measured 6 of 7 (disgust read as anger); the model reaches ~66% on FER-2013 per its authors
    assert agreement >= 5, list(zip(expected, predicted))
    happy = next(r[0] for r, e in zip(results, expected) if e == "happiness")
    assert happy.probabilities["happiness"] > 0.9


def test_mirrored_faces_read_the_same(estimator, samples):
    """The mirror of an expression is the same expression: most samples keep their reading.

    Measured: 5 of 7 keep the predominant emotion (the disgust and sad samples are borderline
    for this model), and the mirrored samples agree with their names 5 times of 7.
    """
    same = agree = 0
    for expected, image, (x, y, w, h) in samples:
        mirrored = np.ascontiguousarray(image[:, ::-1])
        a = estimator.estimate(image, [(x, y, w, h)])[0]
        b = estimator.estimate(mirrored, [(image.shape[1] - x - w, y, w, h)])[0]
        same += a.predominant == b.predominant
        agree += b.predominant == expected
        json.dumps(b.probabilities)  # plain floats, ready for the API
    assert same >= 5 and agree >= 4, (same, agree)


def test_batching_and_empty_input(estimator, samples):
    _, image, box = samples[0]
    single = estimator.estimate(image, [box])[0].probabilities
    batched = estimator.estimate_many([(image, []), (image, [box, box])])
    assert batched[0] == []
    assert len(batched[1]) == 2
    for k in EMOTIONS:
        assert abs(batched[1][1].probabilities[k] - single[k]) < 1e-5
