"""Head pose (yaw, pitch, roll in degrees) from the face mesh's own 3-D points.

The mesh model regresses x, y and a relative depth z for 468 points (weak perspective, z in
the same pixel units as x and y), so the head's axes can be read from it directly, with no
canonical 3-D face or camera model to fit: the left-right axis runs between the outer eye
corners and the cheek contour points, the up axis from chin to forehead; both are
orthonormalised and the face normal is their cross product.

Signs (image-based, so they flip with a mirrored photo): yaw > 0 when the face turns towards
the image's right, pitch > 0 when the face tilts up, roll > 0 when the head leans so that the
image-right eye is lower than the other (clockwise in the image).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.models.face_mesh import Mesh

# Pairs (image-left, image-right) whose difference points along the head's left-right axis.
_LR_PAIRS = ((33, 263), (234, 454), (127, 356), (58, 288))
_CHIN, _FOREHEAD = 152, 10
# The mesh's chin-to-forehead line leans back from the face's frontal plane; this fixed tilt
# (the median pitch measured over the 100 shared LFW news photos, which are close to frontal)
# is rotated out so that a frontal face reads pitch ~ 0.
_NEUTRAL_TILT = np.radians(7.7)


@dataclass
class HeadPose:
    yaw: float
    pitch: float
    roll: float


def head_axes(mesh: Mesh) -> np.ndarray:
    """3x3 rotation with columns (right, up, normal-towards-camera) in camera axes (x right,
    y down, z away from the camera)."""
    p = mesh.points.astype(np.float64)
    right = sum(p[b] - p[a] for a, b in _LR_PAIRS)
    right /= np.linalg.norm(right)
    up = p[_FOREHEAD] - p[_CHIN]
    up -= up.dot(right) * right
    up /= np.linalg.norm(up)
    normal = np.cross(right, up)
    c, s = np.cos(_NEUTRAL_TILT), np.sin(_NEUTRAL_TILT)
    return np.stack([right, c * up - s * normal, c * normal + s * up], axis=1)


def pose_from_axes(axes: np.ndarray) -> HeadPose:
    right, normal = axes[:, 0], axes[:, 2]
    yaw = np.degrees(np.arctan2(normal[0], -normal[2]))
    pitch = np.degrees(np.arctan2(-normal[1], np.hypot(normal[0], normal[2])))
    roll = np.degrees(np.arctan2(right[1], right[0]))
    return HeadPose(float(yaw), float(pitch), float(roll))


class HeadPoseEstimator:
    def estimate(self, mesh: Mesh) -> HeadPose:
        return pose_from_axes(head_axes(mesh))


def load(device: str) -> HeadPoseEstimator:  # noqa: ARG001 - geometry only, runs on the CPU
    return HeadPoseEstimator()
