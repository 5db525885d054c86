"""1:1 verification, both descriptor versions and dlib's own pipeline, on two pair sets in one run.

Pair sets (``../shared/faces/pairs.csv``):
- ``fold1``: LFW view 2 fold 1 (300 same, 300 different), where the earlier shared threshold
  0.614 was tuned;
- ``generated``: 600 same and 600 different pairs of every identity folder outside ``lfw_dev/``,
  which nothing was tuned on: each version's threshold is calibrated here.

Ours: image -> ``inference.pipeline.process`` (registry face detector, dlib 5-point predictor in
numpy, dlib-exact face chip, descriptor network in torch). Version 101 (mirrored, the default)
comes from the pipeline; version 102 (one pass) from the same chips through
``pipeline.extract``: the detections are the same either way, so only the network differs.
dlib: HOG detector upsampled once, ``shape_predictor_5_face_landmarks``,
``compute_face_descriptor`` (no jitter), decided at dlib's 0.6.

Rules, identical for all pipelines:
- an image with several faces uses the one whose box centre is nearest the image centre (the
  labelled person is the central face);
- an image with no face makes its pairs "not the same person" (infinite distance): a deployed
  verifier cannot accept without a face, so a failed genuine pair is an error and a failed
  impostor pair is a correct rejection;
- TAR at FAR 1e-3: the largest threshold accepting at most 0.1% of the impostor pairs (300 or
  600: none of them), and the share of the genuine pairs it accepts;
- calibration, per version on ``generated``: ``calibrated`` is the equal-prior boundary of normal
  fits to the genuine and impostor distances (where the densities cross; the method behind
  ``DEFAULT_DISTANCE_THRESHOLDS``), ``best_mid`` the midpoint of the widest best-accuracy
  interval (it rests on the handful of pairs near the boundary).

JSON keys: ``accuracy_<version>_<set>`` at the version's ``DEFAULT_DISTANCE_THRESHOLDS`` entry
(``threshold_<version>``), ``accuracy_0.614_<version>_<set>`` at the fold-1-tuned 0.614,
``accuracy_best_mid_<version>_<set>`` at ``best_mid_<version>``,
``tar_at_far_1e-3_<version>_<set>``, the same for ``dlib`` at 0.6, and the calibrations
(``calibrated_<version>``, ``best_mid_<version>``).

    .venv/bin/python bench/verification.py

Last line: one JSON object.
"""
from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference import pipeline  # noqa: E402
from inference.descriptor_format import (  # noqa: E402
    DEFAULT_DISTANCE_THRESHOLDS,
    DESCRIPTOR_VERSION,
    MIRRORED_VERSION,
    SINGLE_PASS_VERSION,
    similarity,
)
from inference.formats.dlib_dnn import face_recognition_models_file  # noqa: E402

FACES = Path(os.environ.get("FACEGATE_SHARED_DIR", ROOT.parent / "shared")) / "faces"
SETS = {"fold1": "lfw_view2_fold1", "generated": "generated"}
CALIBRATION_SET = "generated"
FOLD1_THRESHOLD = 0.614  # the shared threshold tuned on fold 1 before per-version calibration
DLIB_THRESHOLD = 0.6
BATCH = 32

Descriptors = list[np.ndarray | None]


def central(boxes: list[tuple[float, float, float, float]], shape: tuple[int, ...]) -> int | None:
    """Index of the box whose centre is nearest the image centre."""
    if not boxes:
        return None
    centre = np.array([shape[1] / 2, shape[0] / 2])
    return int(np.argmin([np.sum((np.array([x + w / 2, y + h / 2]) - centre) ** 2) for x, y, w, h in boxes]))


def ours(images: list[np.ndarray]) -> dict[int, Descriptors]:
    """Both versions' descriptors of each image's central face (None without a face)."""
    out: dict[int, Descriptors] = {MIRRORED_VERSION: [], SINGLE_PASS_VERSION: []}
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        picked = []
        for image, faces in zip(batch, pipeline.process(batch, MIRRORED_VERSION)):
            pick = central([f.detection.box for f in faces], image.shape)
            picked.append(None if pick is None else faces[pick])
        found = [f for f in picked if f is not None]
        single = iter(pipeline.extract([f.chip[None] for f in found], SINGLE_PASS_VERSION))
        for face in picked:
            out[MIRRORED_VERSION].append(None if face is None else face.descriptor)
            out[SINGLE_PASS_VERSION].append(None if face is None else next(single)[0])
    return out


def dlib_pipeline(images: list[np.ndarray]) -> Descriptors:
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(face_recognition_models_file("shape_predictor_5_face_landmarks.dat")))
    net = dlib.face_recognition_model_v1(str(face_recognition_models_file("dlib_face_recognition_resnet_model_v1.dat")))
    out: Descriptors = []
    for image in images:
        rects = list(detector(image, 1))
        pick = central([(r.left(), r.top(), r.width(), r.height()) for r in rects], image.shape)
        if pick is None:
            out.append(None)
            continue
        shape = predictor(image, rects[pick])
        out.append(np.array(net.compute_face_descriptor(image, shape), dtype=np.float32))
    return out


def pair_distances(descriptors: Descriptors, index: dict[str, int], pairs: list[dict]) -> np.ndarray:
    d = np.full(len(pairs), np.inf)
    for i, row in enumerate(pairs):
        a, b = descriptors[index[row["path_a"]]], descriptors[index[row["path_b"]]]
        if a is not None and b is not None:
            d[i] = float(np.linalg.norm(a - b))
    return d


def accuracy(d: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(((d < threshold) == same).mean())


def tar_at_far_1e3(d: np.ndarray, same: np.ndarray) -> float:
    allowed = int(math.floor(1e-3 * (same == 0).sum()))  # impostor pairs that may be accepted
    cut = np.sort(d[same == 0])[allowed]
    return float((d[same == 1] < cut).mean())


def best_mid(d: np.ndarray, same: np.ndarray) -> float:
    """Midpoint of the widest threshold interval of best accuracy."""
    finite = np.sort(d[np.isfinite(d)])
    bounds = np.concatenate([[0.0], finite, [finite[-1] + 1e-6]])  # interval k: [bounds[k], bounds[k + 1])
    accuracies = np.array([accuracy(d, same, t) for t in (bounds[:-1] + bounds[1:]) / 2])
    tied = np.flatnonzero(accuracies == accuracies.max())
    widest = tied[np.argmax(bounds[tied + 1] - bounds[tied])]
    return float((bounds[widest] + bounds[widest + 1]) / 2)


def normal_boundary(d: np.ndarray, same: np.ndarray) -> float:
    """Where normal fits to the genuine and impostor distances have equal density, between their means."""
    g, i = d[np.isfinite(d) & (same == 1)], d[np.isfinite(d) & (same == 0)]
    (m1, s1), (m2, s2) = (g.mean(), g.std()), (i.mean(), i.std())
    roots = np.roots([1 / s1**2 - 1 / s2**2, -2 * (m1 / s1**2 - m2 / s2**2),
                      m1**2 / s1**2 - m2**2 / s2**2 + 2 * math.log(s1 / s2)])
    return float(next(r.real for r in roots if abs(r.imag) < 1e-12 and m1 < r.real < m2))


def main() -> None:
    rows = list(csv.DictReader(open(FACES / "pairs.csv")))
    pairs = {name: [r for r in rows if r["set"] == label] for name, label in SETS.items()}
    same = {name: np.array([int(r["same"]) for r in p]) for name, p in pairs.items()}
    paths = sorted({r[k] for p in pairs.values() for r in p for k in ("path_a", "path_b")})
    index = {p: i for i, p in enumerate(paths)}
    images = [np.asarray(Image.open(FACES / p).convert("RGB")) for p in paths]
    print(", ".join(f"{name}: {len(p)} pairs ({same[name].sum()} same)" for name, p in pairs.items())
          + f"; {len(images)} images")

    start = time.perf_counter()
    descriptors: dict[str, Descriptors] = {f"v{v}": d for v, d in ours(images).items()}
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    descriptors["dlib"] = dlib_pipeline(images)
    dlib_s = time.perf_counter() - start
    print(f"ours (both versions): {1000 * ours_s / len(images):.0f} ms/image, dlib {1000 * dlib_s / len(images):.0f} ms/image")

    thresholds = {f"v{v}": t for v, t in DEFAULT_DISTANCE_THRESHOLDS.items()} | {"dlib": DLIB_THRESHOLD}
    out: dict[str, object] = {"bench": "verification", "descriptor_version": DESCRIPTOR_VERSION}
    for name, found in descriptors.items():
        failures = sum(d is None for d in found)
        out[f"detect_failures_{name}"] = failures
        out[f"threshold_{name}"] = thresholds[name]
        distances = {set_name: pair_distances(found, index, pairs[set_name]) for set_name in SETS}
        if name != "dlib":
            d, s = distances[CALIBRATION_SET], same[CALIBRATION_SET]
            out[f"calibrated_{name}"] = round(normal_boundary(d, s), 4)
            out[f"best_mid_{name}"] = round(best_mid(d, s), 4)
            print(f"{name}: calibrated on {CALIBRATION_SET} {out[f'calibrated_{name}']}, best_mid {out[f'best_mid_{name}']}")
        for set_name, d in distances.items():
            s = same[set_name]
            figures = {"accuracy": accuracy(d, s, thresholds[name]), "tar_at_far_1e-3": tar_at_far_1e3(d, s)}
            if name != "dlib":
                figures[f"accuracy_{FOLD1_THRESHOLD}"] = accuracy(d, s, FOLD1_THRESHOLD)
                figures["accuracy_best_mid"] = accuracy(d, s, out[f"best_mid_{name}"])
            for key, value in figures.items():
                out[f"{key}_{name}_{set_name}"] = round(value, 4)
            line = f"{name:5s} {set_name:9s} " + "  ".join(f"{k} {v:.4f}" for k, v in figures.items())
            if name != "dlib":
                version = int(name[1:])
                genuine, impostor = (np.median(d[np.isfinite(d) & (s == k)]) for k in (1, 0))
                line += (f"  median distance genuine {genuine:.3f} -> similarity {similarity(genuine, version):.3f},"
                         f" impostor {impostor:.3f} -> {similarity(impostor, version):.3f}"
                         f"  (normal boundary here {normal_boundary(d, s):.4f})")
            print(line + f"  no face: {failures}/{len(images)} images, {int((~np.isfinite(d)).sum())} pairs")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
