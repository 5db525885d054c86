"""Registry of the neural networks and estimators a worker can run.

Each entry names a loader by import path, so importing this module loads nothing: a worker
loads a model the first time a task asks for it (after Celery has forked, so weights are never
shared across a fork), and keeps it for the life of the process.

Which entries may load is decided by :func:`configure` (the worker passes the
``enable_*`` settings); a disabled or broken entry raises :class:`EstimatorUnavailable`, which
the API reports as a clear error instead of silently skipping the estimate.
"""
from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)


class EstimatorUnavailable(RuntimeError):
    """The estimator is disabled by configuration, or its model could not be loaded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"estimator '{name}' is unavailable: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class Entry:
    name: str
    loader: str  # "module:function"; the function takes the torch device and returns the model
    description: str


ENTRIES: dict[str, Entry] = {
    e.name: e
    for e in [
        Entry("face_detector", "inference.models.detector:load", "face boxes, scores and 5 landmarks"),
        Entry("face_landmarks5", "inference.models.shape_predictor:load", "dlib 5-point landmarks used for alignment"),
        Entry("face_landmarks68", "inference.models.face_mesh:load_landmarks68", "dense landmarks (face mesh)"),
        Entry("face_descriptor", "inference.models.descriptor:load", "128-d face descriptor (dlib ResNet in torch)"),
        Entry("head_pose", "inference.estimators.head_pose:load", "yaw, pitch, roll from landmarks"),
        Entry("image_quality", "inference.estimators.quality:load", "blur, darkness, lightness, uniformity, specularity"),
        Entry("eyes", "inference.estimators.eyes:load", "eye state from landmarks"),
        Entry("gaze", "inference.estimators.gaze:load", "gaze direction from iris landmarks"),
        Entry("mouth", "inference.estimators.mouth:load", "mouth open / occluded / smile"),
        Entry("basic_attributes", "inference.models.age_gender:load", "age and gender"),
        Entry("emotions", "inference.models.emotions:load", "7-class emotion probabilities"),
        Entry("body_detector", "inference.models.body_detector:load", "person boxes"),
    ]
}

_lock = threading.Lock()
_loaded: dict[str, Any] = {}
_enabled: dict[str, bool] = {}
_default_enabled = True
_device = "cpu"


def configure(enabled: dict[str, bool] | None = None, default_enabled: bool = True, device: str | None = None) -> None:
    """Set which entries may load and on which device; drops models that became disabled."""
    global _default_enabled, _device
    with _lock:
        _enabled.clear()
        _enabled.update(enabled or {})
        _default_enabled = default_enabled
        if device is not None:
            _device = device
            if device.startswith("cuda"):
                _full_float32()
        for name in list(_loaded):
            if not is_enabled(name):
                del _loaded[name]


def _full_float32() -> None:
    """TF32 off for every CUDA matmul and convolution. cuDNN's default TF32 (10-bit mantissa)
    moved the cascade's scores and box offsets by about 1e-3 and the descriptors by up to L2 0.0012
    against the CPU: enough to tip thresholds and rankings, so a face enrolled on one kind of worker
    could come out of the other as different boxes and a descriptor past the match threshold. The
    networks are a small share of an image's device time, so full float32 costs little."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def device() -> str:
    """The torch device models load on."""
    return _device


def default_device() -> str:
    """CUDA when a GPU is visible, else the CPU; torch is imported only when asked."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def is_enabled(name: str) -> bool:
    return _enabled.get(name, _default_enabled)


def get(name: str) -> Any:
    """The loaded model for ``name``, loading it on first use."""
    if name not in ENTRIES:
        raise EstimatorUnavailable(name, "no such estimator")
    if not is_enabled(name):
        raise EstimatorUnavailable(name, "disabled by configuration")
    model = _loaded.get(name)
    if model is not None:
        return model
    with _lock:
        model = _loaded.get(name)
        if model is None:
            module_name, func_name = ENTRIES[name].loader.split(":")
            try:
                loader: Callable[[str], Any] = getattr(importlib.import_module(module_name), func_name)
                model = loader(_device)
            except (ImportError, FileNotFoundError, OSError) as exc:
                log.warning("cannot load %s: %s", name, exc)
                raise EstimatorUnavailable(name, f"model not installed ({exc})") from exc
            _loaded[name] = model
    return model


def availability() -> dict[str, dict[str, Any]]:
    """State of every entry without loading anything: enabled, loaded, description."""
    return {
        name: {"enabled": is_enabled(name), "loaded": name in _loaded, "description": e.description}
        for name, e in ENTRIES.items()
    }
