"""Face pipeline without any web framework: detect -> 5 landmarks -> aligned chip -> descriptor.

Used by the Celery ``gpu`` tasks and by the benches. Every stage takes a batch of images and
keeps per-image lists, so the networks see whole batches (all faces of all images at once for
the descriptor) while callers still get results image by image. Models come from
``inference.registry``, loaded once per worker process.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from inference import descriptor_format, parallel, registry
from inference.align import FACE_CHIP_SIZE, face_chips
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


# Images per batch when the inference_batch_max setting is 0. The CPU's 32 keeps two shards'
# working sets cache-sized (docs/sdk.md). A device takes as many images as half its memory holds
# at DEVICE_IMAGE_BYTES each: a bound on one image's peak through the device pipeline (a
# 5-megapixel upload of 15 MB, the int32 summed-area tables of its 1024-pixel working copy, 12.6 MB,
# P-Net's first pyramid level and the chips), with the rest of the memory left to the models and
# to torch's allocator; at most DEVICE_BATCH_MAX, past which a batch only adds latency.
CPU_BATCH = 32
DEVICE_IMAGE_BYTES = 64 << 20
DEVICE_BATCH_MAX = 256


def batch_limit(setting: int, device: str | None = None, memory_bytes: int | None = None) -> int:
    """Images per batch of the models: ``setting`` (``inference_batch_max``) when positive, else
    what ``device`` (None: the models') holds; ``memory_bytes`` is its memory (None: asked of torch)."""
    if setting > 0:
        return setting
    device = device or registry.device()
    if device == "cpu":
        return CPU_BATCH
    if memory_bytes is None:
        import torch

        memory_bytes = torch.cuda.get_device_properties(torch.device(device)).total_memory
    return max(1, min(DEVICE_BATCH_MAX, memory_bytes // 2 // DEVICE_IMAGE_BYTES))


def locate(images: list[np.ndarray]) -> list[tuple[list[Detection], np.ndarray, np.ndarray]]:
    """Detections, (N_i, 5, 2) landmarks and (N_i, 150, 150, 3) chips of each image: the pipeline
    up to the descriptor, which callers run by version (``extract``). On a device every stage runs
    there. Not sharded here: the worker shards whole analyses (``tasks.inference``), and a shard
    waiting on shards of the same pool would wait for ever."""
    if registry.device() != "cpu":
        located, _ = _locate_on_device(images)
        return located
    return _locate(images)


def process(images: list[np.ndarray], version: int = descriptor_format.DESCRIPTOR_VERSION) -> list[list[Face]]:
    """The whole pipeline for a batch of images: every detected face with its descriptor of
    ``version``. On the CPU the batch runs as shards side by side (``inference.parallel``); on
    another device the chips stay there for the descriptor network."""
    device = registry.device()
    if device == "cpu":
        return parallel.run(partial(_process, version=version), images, [cost(image) for image in images], device)
    return process_on_device(images, version)


def process_on_device(images: list[np.ndarray], version: int = descriptor_format.DESCRIPTOR_VERSION) -> list[list[Face]]:
    """``process`` with every stage in torch on the models' device, whole batch at once: images
    uploaded once, detection (pyramid, crops, NMS), landmarks, warp and descriptor there, one copy
    back at the end. Public so that the CPU can run it too: tests hold it to the host path's faces."""
    if version not in descriptor_format.DESCRIPTOR_LENGTHS:
        raise descriptor_format.DescriptorFormatError(f"unknown descriptor version {version}")
    located, chips = _locate_on_device(images)
    if chips is None:
        return [[] for _ in images]
    mirror = version == descriptor_format.MIRRORED_VERSION
    descriptors = registry.get("face_descriptor").extract_tensor(chips, mirror=mirror).cpu().numpy()
    counts = [len(dets) for dets, _, _ in located]
    return _faces(located, np.split(descriptors, np.cumsum(counts)[:-1]))


def _locate_on_device(images: list[np.ndarray]) -> tuple[list[tuple[list[Detection], np.ndarray, np.ndarray]], Any]:
    """``locate`` on the models' device, and the chips as one device tensor (None without faces)."""
    import torch

    from inference.align_device import face_chips_device

    detector = registry.get("face_detector")
    # uploaded once for every stage: the detector downscales a large photo's working copy on the
    # device into the bytes Pillow would give on the host
    tensors = [torch.from_numpy(np.require(image, requirements=["C", "W"])).to(detector.device) for image in images]
    found = detector.detect_tensors(tensors)
    detections = detector.to_detections(found, len(images))
    if not len(found.inds):
        empty = (np.zeros((0, 5, 2), np.float32), np.zeros((0, FACE_CHIP_SIZE, FACE_CHIP_SIZE, 3), np.uint8))
        return [([], *empty) for _ in images], None
    points = registry.get("face_landmarks5").predict_device(tensors, found.boxes, found.inds)
    chips = face_chips_device(tensors, found.inds, points)
    counts = np.cumsum([len(dets) for dets in detections])[:-1]
    host_points, host_chips = np.split(points.cpu().numpy(), counts), np.split(chips.cpu().numpy(), counts)
    return list(zip(detections, host_points, host_chips)), chips


def _locate(images: list[np.ndarray]) -> list[tuple[list[Detection], np.ndarray, np.ndarray]]:
    detections = detect(images)
    points = landmarks5(images, detections)
    return list(zip(detections, points, warp(images, points)))


def _process(images: list[np.ndarray], version: int) -> list[list[Face]]:
    located = _locate(images)
    return _faces(located, extract([chips for _, _, chips in located], version))


def _faces(located: list[tuple[list[Detection], np.ndarray, np.ndarray]], descriptors: list[np.ndarray]) -> list[list[Face]]:
    """Each image's ``Face``s from what ``locate`` found and its (N_i, 128) descriptors."""
    return [
        [Face(d, p, c, v) for d, p, c, v in zip(dets, pts, chs, descs)]
        for (dets, pts, chs), descs in zip(located, descriptors)
    ]
