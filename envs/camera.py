"""Pinhole camera: view/projection matrices, point projection and depth linearization.

Conventions (shared by every world and documented in ``info["state"]``):

- Matrices are standard row-major 4x4 numpy arrays, OpenGL style: ``clip = P @ V @ [x, y, z, 1]``,
  camera looks down its -z axis, NDC in [-1, 1]. PyBullet wants them column-major and flat,
  which ``bullet()`` gives.
- Pixel coordinates: ``x`` is the column, ``y`` the row (row 0 at the top), and integer
  coordinates are pixel *centers*, so the centroid of a segmentation mask is simply the mean
  of its column and row indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NEAR = 0.05
FAR = 20.0


@dataclass(frozen=True)
class Camera:
    """Where the camera is, what it looks at, and its vertical field of view in degrees."""

    eye: tuple[float, float, float]
    target: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)
    fov: float = 45.0

    @staticmethod
    def orbit(
        target: tuple[float, float, float], yaw: float, pitch: float, distance: float, fov: float = 45.0
    ) -> "Camera":
        """A camera ``distance`` from ``target``; yaw 0 looks along +y, pitch > 0 looks down (radians)."""
        cp = math.cos(pitch)
        offset = (-math.sin(yaw) * cp * distance, -math.cos(yaw) * cp * distance, math.sin(pitch) * distance)
        eye = (target[0] + offset[0], target[1] + offset[1], target[2] + offset[2])
        return Camera(eye=eye, target=tuple(target), fov=fov)

    def view(self) -> np.ndarray:
        """World -> camera (4, 4), row-major."""
        eye = np.asarray(self.eye, dtype=np.float64)
        forward = np.asarray(self.target, dtype=np.float64) - eye
        forward /= np.linalg.norm(forward)
        side = np.cross(forward, np.asarray(self.up, dtype=np.float64))
        side /= np.linalg.norm(side)
        up = np.cross(side, forward)
        view = np.eye(4)
        view[0, :3], view[1, :3], view[2, :3] = side, up, -forward
        view[:3, 3] = -view[:3, :3] @ eye
        return view

    def projection(self, width: int, height: int) -> np.ndarray:
        """Camera -> clip (4, 4), row-major, OpenGL perspective with NEAR/FAR planes."""
        f = 1.0 / math.tan(math.radians(self.fov) / 2)
        proj = np.zeros((4, 4))
        proj[0, 0] = f * height / width
        proj[1, 1] = f
        proj[2, 2] = (FAR + NEAR) / (NEAR - FAR)
        proj[2, 3] = 2 * FAR * NEAR / (NEAR - FAR)
        proj[3, 2] = -1.0
        return proj


def bullet(matrix: np.ndarray) -> list[float]:
    """Row-major (4, 4) -> the flat column-major list PyBullet's getCameraImage expects."""
    return matrix.T.reshape(-1).tolist()


def project(points: np.ndarray, view_projection: np.ndarray, width: int, height: int) -> np.ndarray:
    """World points (K, 3) -> pixel coordinates (K, 2) as (column, row), pixel centers at integers."""
    clip = np.c_[points, np.ones(len(points))] @ view_projection.T  # (K, 4)
    ndc = clip[:, :2] / clip[:, 3:4]
    # TinyRenderer rasterizes half a pixel right of and above the textbook OpenGL mapping
    # ((ndc + 1) * W / 2 - 0.5); matching it keeps projected centroids on their mask centroids.
    return np.stack([(ndc[:, 0] + 1) * (width / 2), (1 - ndc[:, 1]) * (height / 2) - 1.0], axis=1)


def linear_depth(zbuffer: np.ndarray) -> np.ndarray:
    """PyBullet's nonlinear z-buffer in [0, 1] -> distance along the viewing axis in meters."""
    return (FAR * NEAR / (FAR - (FAR - NEAR) * zbuffer)).astype(np.float32)
