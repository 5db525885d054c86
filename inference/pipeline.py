"""Face pipeline without any web framework: detect -> 5 landmarks -> aligned chip -> descriptor.

Used by the Celery ``gpu`` tasks and by the benches. Every stage takes a batch of images and
keeps per-image lists, so the networks see whole batches (all faces of all images at once for
the descriptor) while callers still get results image by image. Models come from
``inference.registry``, loaded once per worker process.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from inference import descriptor_format, parallel, registry
from inference.align import face_chips
from inference.types import Detection


@dataclass
class Face:
    detection: Detection
    landmarks5: np.ndarray  # (5, 2) float32, source pixels
    chip: np.ndarray  # (150, 150, 3) uint8 aligned sample ("warp")
    descriptor: np.ndarray  # (128,) float32


def detect(images: list[np.ndarray]) -> list[list[Detection]]:
    """Faces in each RGB uint8 image (the registry's ``face_detector``)."""
    if not images:
        return []
    return registry.get("face_detector").detect(images)


def landmarks5(images: list[np.ndarray], detections: list[list[Detection]]) -> list[np.ndarray]:
    """(N_i, 5, 2) landmarks per image, from dlib's 5-point predictor run in each detection box."""
    return registry.get("face_landmarks5").predict_batch(images, [[d.box for d in dets] for dets in detections])


def warp(images: list[np.ndarray], landmarks: list[np.ndarray]) -> list[np.ndarray]:
    """(N_i, 150, 150, 3) aligned chips per image."""
    return [face_chips(image, points) for image, points in zip(images, landmarks)]


def extract(chips: list[np.ndarray], version: int = descriptor_format.DESCRIPTOR_VERSION) -> list[np.ndarray]:
    """(N_i, 128) descriptors of ``version`` per image; all images' chips go through the network
    as one batch."""
    if version not in descriptor_format.DESCRIPTOR_LENGTHS:
        raise descriptor_format.DescriptorFormatError(f"unknown descriptor version {version}")
    counts = [len(c) for c in chips]
    if sum(counts) == 0:
        return [np.zeros((0, 128), dtype=np.float32) for _ in chips]
    descriptors = registry.get("face_descriptor").extract(
        np.concatenate([c for c in chips if len(c)]), mirror=version == descriptor_format.MIRRORED_VERSION)
    return np.split(descriptors, np.cumsum(counts)[:-1])


def cost(image: np.ndarray) -> float:
    """Relative cost of one image through the pipeline, to balance shards: the pixels of the
    detector's working copy plus a fixed part (the cascade's refining nets, about one face's
    landmarks, chip and descriptor). Fitted on the 200 bench images, one at a time on one CPU
    thread: 0.25 us per working-copy pixel + 57 ms. Replayed with those measured times, two
    shards of 32-image batches idle 3.4% of the time with this estimate, 4.8% with the earlier
    one (pixels capped at 1 MP + 64k) and 0.6% with the exact times (faces per image vary)."""
    from inference.models.detector import MAX_SIDE  # torch stays out of the API process

    h, w = image.shape[:2]
    shrink = min(1.0, MAX_SIDE / max(h, w))
    return h * w * shrink * shrink + 220_000


def process(images: list[np.ndarray], version: int = descriptor_format.DESCRIPTOR_VERSION) -> list[list[Face]]:
    """The whole pipeline for a batch of images: every detected face with its descriptor of
    ``version``; on the CPU the batch runs as shards side by side (``inference.parallel``)."""
    return parallel.run(partial(_process, version=version), images, [cost(image) for image in images], registry.device())


def _process(images: list[np.ndarray], version: int) -> list[list[Face]]:
    detections = detect(images)
    points = landmarks5(images, detections)
    chips = warp(images, points)
    descriptors = extract(chips, version)
    return [
        [Face(d, p, c, v) for d, p, c, v in zip(dets, pts, chs, descs)]
        for dets, pts, chs, descs in zip(detections, points, chips, descriptors)
    ]
