"""1:1 verification on LFW view 2, fold 1: our pipeline against dlib's own, same pairs, same run.

Ours: image -> ``inference.pipeline.process`` (registry face detector, dlib 5-point predictor in
numpy, dlib-exact face chip, descriptor network in torch), decided at
``inference.descriptor_format.DEFAULT_DISTANCE_THRESHOLD``, for both descriptor versions: the
default 102 (one pass) and 101 (averaged with the mirrored chip). The JSON line's figures are the
default version's; the ``_v101`` ones the mirrored version's.
dlib: HOG detector upsampled once, ``shape_predictor_5_face_landmarks``,
``compute_face_descriptor`` (no jitter), decided at dlib's 0.6.

Rules, identical for both pipelines:
- an image with several faces uses the one whose box centre is nearest the image centre (LFW
  images are centred on the labelled person);
- an image with no face makes its pairs "not the same person" (infinite distance): a deployed
  verifier cannot accept without a face, so a failed genuine pair is an error and a failed
  impostor pair is a correct rejection;
- TAR at FAR 1e-3: the largest threshold accepting at most 0.1% of the 300 impostor pairs, i.e.
  none of them, and the share of the 300 genuine pairs it accepts;
- the best threshold is searched over all pair distances of this fold (this fold is the one
  where tuning is allowed; the default threshold was chosen on it too).

    .venv/bin/python bench/verification.py

Last line: one JSON object.
"""
from __future__ import annotations

import csv
import functools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from inference import pipeline  # noqa: E402
from inference.descriptor_format import DEFAULT_DISTANCE_THRESHOLD, DESCRIPTOR_VERSION, MIRRORED_VERSION  # noqa: E402
from inference.formats.dlib_dnn import face_recognition_models_file  # noqa: E402

FACES = Path(os.environ.get("FACEGATE_SHARED_DIR", ROOT.parent / "shared")) / "faces"
FOLD = "lfw_view2_fold1"
DLIB_THRESHOLD = 0.6
BATCH = 32


def central(boxes: list[tuple[float, float, float, float]], shape: tuple[int, ...]) -> int | None:
    """Index of the box whose centre is nearest the image centre."""
    if not boxes:
        return None
    centre = np.array([shape[1] / 2, shape[0] / 2])
    return int(np.argmin([np.sum((np.array([x + w / 2, y + h / 2]) - centre) ** 2) for x, y, w, h in boxes]))


def ours(images: list[np.ndarray], version: int) -> list[np.ndarray | None]:
    out: list[np.ndarray | None] = []
    for start in range(0, len(images), BATCH):
        batch = images[start : start + BATCH]
        for image, faces in zip(batch, pipeline.process(batch, version)):
            pick = central([f.detection.box for f in faces], image.shape)
            out.append(None if pick is None else faces[pick].descriptor)
    return out


def dlib_pipeline(images: list[np.ndarray]) -> list[np.ndarray | None]:
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(face_recognition_models_file("shape_predictor_5_face_landmarks.dat")))
    net = dlib.face_recognition_model_v1(str(face_recognition_models_file("dlib_face_recognition_resnet_model_v1.dat")))
    out: list[np.ndarray | None] = []
    for image in images:
        rects = list(detector(image, 1))
        pick = central([(r.left(), r.top(), r.width(), r.height()) for r in rects], image.shape)
        if pick is None:
            out.append(None)
            continue
        shape = predictor(image, rects[pick])
        out.append(np.array(net.compute_face_descriptor(image, shape), dtype=np.float32))
    return out


def pair_distances(descriptors: list[np.ndarray | None], index: dict[str, int], pairs: list[dict]) -> np.ndarray:
    d = np.full(len(pairs), np.inf)
    for i, row in enumerate(pairs):
        a, b = descriptors[index[row["path_a"]]], descriptors[index[row["path_b"]]]
        if a is not None and b is not None:
            d[i] = float(np.linalg.norm(a - b))
    return d


def metrics(d: np.ndarray, same: np.ndarray, threshold: float) -> dict[str, float]:
    finite = np.sort(d[np.isfinite(d)])
    cuts = np.concatenate([[0.0], (finite[:-1] + finite[1:]) / 2, [finite[-1] + 1e-6]])
    accuracies = np.array([((d < t) == same).mean() for t in cuts])
    best = int(np.argmax(accuracies))
    tied = np.flatnonzero(accuracies == accuracies[best])
    min_impostor = d[same == 0].min()
    # cut k lies between finite[k - 1] and finite[k]: any threshold in that interval decides alike
    bounds = np.concatenate([[0.0], finite, [np.inf]])
    return {
        "accuracy": float(((d < threshold) == same).mean()),
        "accuracy_best": float(accuracies[best]),
        "best_from": float(bounds[tied[0]]),
        "best_to": float(bounds[tied[-1] + 1]),
        "tar_at_far_1e-3": float((d[same == 1] < min_impostor).mean()),
        "failed_pairs": int((~np.isfinite(d)).sum()),
    }


def main() -> None:
    pairs = [row for row in csv.DictReader(open(FACES / "pairs.csv")) if row["set"] == FOLD]
    paths = sorted({row["path_a"] for row in pairs} | {row["path_b"] for row in pairs})
    index = {p: i for i, p in enumerate(paths)}
    same = np.array([int(row["same"]) for row in pairs])
    images = [np.asarray(Image.open(FACES / p).convert("RGB")) for p in paths]
    print(f"{FOLD}: {len(pairs)} pairs ({same.sum()} same), {len(images)} images")

    results = {}
    runs = (("ours", functools.partial(ours, version=DESCRIPTOR_VERSION), DEFAULT_DISTANCE_THRESHOLD),
            (f"v{MIRRORED_VERSION}", functools.partial(ours, version=MIRRORED_VERSION), DEFAULT_DISTANCE_THRESHOLD),
            ("dlib", dlib_pipeline, DLIB_THRESHOLD))
    for name, run, threshold in runs:
        start = time.perf_counter()
        descriptors = run(images)
        elapsed = time.perf_counter() - start
        m = metrics(pair_distances(descriptors, index, pairs), same, threshold)
        m["detect_failures"] = sum(d is None for d in descriptors)
        results[name] = m
        print(
            f"{name:5s} accuracy@{threshold:.3f} {m['accuracy']:.4f}  best {m['accuracy_best']:.4f} "
            f"(thresholds {m['best_from']:.3f}-{m['best_to']:.3f})  TAR@FAR1e-3 {m['tar_at_far_1e-3']:.4f}  "
            f"no face: {m['detect_failures']}/{len(images)} images, {m['failed_pairs']} pairs  "
            f"{1000 * elapsed / len(images):.0f} ms/image"
        )
    o, mirrored, r = results["ours"], results[f"v{MIRRORED_VERSION}"], results["dlib"]
    print(
        f"ours - dlib: accuracy {o['accuracy'] - r['accuracy']:+.4f}, best {o['accuracy_best'] - r['accuracy_best']:+.4f}, "
        f"TAR {o['tar_at_far_1e-3'] - r['tar_at_far_1e-3']:+.4f}, dlib TAR {r['tar_at_far_1e-3']:.4f}, "
        f"no-face images {o['detect_failures'] - r['detect_failures']:+d}"
    )
    print(
        json.dumps(
            {
                "bench": "verification",
                "accuracy": round(o["accuracy"], 4),
                "accuracy_best": round(o["accuracy_best"], 4),
                "dlib_accuracy": round(r["accuracy"], 4),
                "dlib_accuracy_best": round(r["accuracy_best"], 4),
                "tar_at_far_1e-3": round(o["tar_at_far_1e-3"], 4),
                "threshold": DEFAULT_DISTANCE_THRESHOLD,
                "detect_failures": o["detect_failures"],
                "descriptor_version": DESCRIPTOR_VERSION,
                "accuracy_v101": round(mirrored["accuracy"], 4),
                "accuracy_best_v101": round(mirrored["accuracy_best"], 4),
                "tar_at_far_1e-3_v101": round(mirrored["tar_at_far_1e-3"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
