"""Gaze direction (yaw, pitch in degrees, camera frame) from the iris model's iris centres.

Eye-in-head angles come from where each iris centre sits between its eye corners: its offset
from the corners' midpoint, along and across the corner line, as a fraction of the corner
distance, read as the sine of the eyeball's rotation with an eyeball radius of 0.41 corner
widths (about 12 mm over a 29 mm palpebral fissure in adult anatomy). The two eyes are averaged,
which also cancels the fissure's nasal/temporal asymmetry, and the head pose from the mesh is
added, so a person facing away but looking at the camera reads close to 0. Expect errors of
the order of 10 degrees: this is geometry on landmarks, not a trained gaze regressor.

Signs follow :mod:`inference.estimators.head_pose`: yaw > 0 towards the image's right,
pitch > 0 upwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.estimators.head_pose import HeadPoseEstimator
from inference.models.face_mesh import EYE_CORNERS, Mesh

EYEBALL_RADIUS = 0.41  # in eye-corner widths


@dataclass
class Gaze:
    yaw: float
    pitch: float
    eye_yaw: float  # eye-in-head part
    eye_pitch: float


class GazeEstimator:
    def __init__(self) -> None:
        self.head_pose = HeadPoseEstimator()

    def estimate(self, mesh: Mesh) -> Gaze:
        if mesh.iris is None:
            raise ValueError("gaze needs the iris landmarks: run the face mesh with iris enabled")
        p = mesh.points[:, :2].astype(np.float64)
        offsets = []
        for (a, b), iris in zip(EYE_CORNERS, mesh.iris.astype(np.float64)):
            width = np.linalg.norm(p[b] - p[a])
            along = (p[b] - p[a]) / width
            down = np.array([-along[1], along[0]])
            rel = iris[0] - (p[a] + p[b]) / 2
            offsets.append((rel @ along / width, rel @ down / width))
        dx, dy = np.mean(offsets, axis=0) / EYEBALL_RADIUS
        eye_yaw = float(np.degrees(np.arcsin(np.clip(dx, -1, 1))))
        eye_pitch = float(-np.degrees(np.arcsin(np.clip(dy, -1, 1))))
        head = self.head_pose.estimate(mesh)
        return Gaze(head.yaw + eye_yaw, head.pitch + eye_pitch, eye_yaw, eye_pitch)


def load(device: str) -> GazeEstimator:  # noqa: ARG001 - geometry only, runs on the CPU
    return GazeEstimator()
