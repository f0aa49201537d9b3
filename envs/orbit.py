"""Orbit: a static scene seen from a camera the actions move, with loops that return exactly."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from worldsim.envs.base import SceneEnv, join_words, with_article
from worldsim.envs.camera import Camera
from worldsim.envs.colors import COLORS
from worldsim.envs.params import Choice, Uniform

# Per-frame steps at |action| = 1. Binary fractions: the camera offset is a running sum of
# action * step, which stays exact for binary-fraction actions, so a loop whose actions cancel
# lands on the identical pose and renders the identical frame.
YAW_STEP = 2.0**-4  # rad
PITCH_STEP = 2.0**-5  # rad
DOLLY_STEP = 2.0**-5  # m
PITCH_RANGE = (0.15, 1.2)  # rad above the horizon
DISTANCE_RANGE = (1.2, 3.0)  # m from the look-at point
LOOK_AT = (0.0, 0.0, 0.1)
GRID = 0.4  # m between object cells
SHAPE_NAMES = {"sphere": "ball", "box": "box", "cylinder": "cylinder"}


class OrbitEnv(SceneEnv):
    """Orbit a camera around a static scene of several objects.

    ## Description
    Three to six static objects stand on cells of a 3x3 grid. The camera looks at the scene
    center from ``yaw`` (around the vertical), ``pitch`` (above the horizon) and ``distance``;
    the actions change all three. Nothing in the scene moves, so any change between frames is
    the camera's: the ground truth for 3D consistency and loop closure.

    ## Action Space
    ``Box(-1, 1, (3,), float32)``: yaw, pitch and dolly rates; one frame moves
    ``action * (YAW_STEP, PITCH_STEP, DOLLY_STEP)`` = (1/16 rad, 1/32 rad, 1/32 m) at most.
    Pitch stays in ``PITCH_RANGE`` and distance in ``DISTANCE_RANGE`` (clipped). Actions made of
    binary fractions (0, +-0.25, +-0.5, +-1, ...) that sum to zero return to the identical pose.

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``: RGB frame.

    ## Rewards
    Always 0.

    ## Starting State
    Object cells, shapes, colors, sizes and the starting camera pose are sampled; see
    ``info["params"]``.

    ## Episode End
    Never terminates; ``gymnasium.make("worldsim/Orbit-v0")`` truncates after 64 steps.

    ## Arguments
    ``render_mode``, ``width``, ``height``, ``split``, ``frame_skip`` as in ``SceneEnv``.
    ``info["state"]`` adds ``camera_pose`` (3,) float32: yaw, pitch (rad), distance (m).

    ## Version History
    * v0: initial version.
    """

    params = {
        "count": Choice(id=[3, 4], ood=[5, 6]),
        "cell": Choice(id=list(range(9)), per_object=True, distinct=True),
        "shape": Choice(id=["sphere", "box", "cylinder"], per_object=True),
        "color": Choice(id=list(COLORS), per_object=True, distinct=True),
        "size": Uniform(id=(0.1, 0.13), ood=[(0.07, 0.1), (0.13, 0.15)], per_object=True),
        "yaw": Uniform(id=(-math.pi, math.pi)),
        "pitch": Uniform(id=(0.35, 0.7)),
        "distance": Uniform(id=(1.6, 2.0)),
    }
    max_objects = 6
    action_size = 3

    def build(self, params: dict[str, Any]) -> None:
        for i in range(params["count"]):
            row, column = divmod(params["cell"][i], 3)
            size = params["size"][i]
            # mass 0: static bodies cannot settle or jitter, so equal poses give equal frames.
            self.add_object(
                params["shape"][i], size, params["color"][i], ((column - 1) * GRID, (row - 1) * GRID, size), mass=0.0
            )
        self.base_pose = np.array([params["yaw"], params["pitch"], params["distance"]])
        self.offset = np.zeros(3)
        low = np.array([-np.inf, PITCH_RANGE[0], DISTANCE_RANGE[0]]) - self.base_pose
        high = np.array([np.inf, PITCH_RANGE[1], DISTANCE_RANGE[1]]) - self.base_pose
        self.offset_bounds = (low, high)

    def caption(self, params: dict[str, Any]) -> str:
        objects = [
            with_article(f"{color} {SHAPE_NAMES[shape]}") for color, shape in zip(params["color"], params["shape"])
        ]
        return f"the camera circles a still scene of {join_words(objects)}"

    def pose(self) -> np.ndarray:
        """(yaw, pitch, distance) now: the sampled start plus the exact running offset."""
        return self.base_pose + self.offset

    def camera(self) -> Camera:
        yaw, pitch, distance = self.pose()
        return Camera.orbit(LOOK_AT, yaw, pitch, distance)

    def apply_action(self, action: np.ndarray) -> None:
        # min/max return one of their operands, so clipping never rounds the offset.
        step = action.astype(np.float64) * (YAW_STEP, PITCH_STEP, DOLLY_STEP)
        self.offset = np.minimum(np.maximum(self.offset + step, self.offset_bounds[0]), self.offset_bounds[1])

    def extra_state(self) -> dict[str, np.ndarray]:
        return {"camera_pose": self.pose().astype(np.float32)}

    def scripted_policy(self) -> "LoopPolicy":
        return LoopPolicy()


class LoopPolicy:
    """Flies rectangular loops: action ``a`` for n frames, ``b`` for m, ``-a`` for n, ``-b`` for m.

    Action components are drawn from {-1, -0.5, 0, 0.5, 1}, so each loop returns the camera to
    the identical pose (see ``YAW_STEP``). Pitch and dolly legs that would hit a limit are dropped.
    """

    RATES = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.plan: list[np.ndarray] = []

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.plan = []

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if not self.plan:
            self.plan = self._loop(info["state"]["camera_pose"].astype(np.float64))
        return self.plan.pop(0)

    def _loop(self, pose: np.ndarray) -> list[np.ndarray]:
        a, b = self.rng.choice(self.RATES, 3), self.rng.choice(self.RATES, 3)
        a[0] = self.rng.choice([-1.0, 1.0])  # every loop moves, so it is never trivially closed
        n, m = int(self.rng.integers(3, 9)), int(self.rng.integers(3, 9))
        steps = np.array([YAW_STEP, PITCH_STEP, DOLLY_STEP])
        margin = 0.05
        for axis, (lo, hi) in ((1, PITCH_RANGE), (2, DISTANCE_RANGE)):
            corners = pose[axis] + np.array([a[axis] * n, a[axis] * n + b[axis] * m, b[axis] * m]) * steps[axis]
            if corners.min() < lo + margin or corners.max() > hi - margin:
                a[axis] = b[axis] = 0.0
        a, b = a.astype(np.float32), b.astype(np.float32)
        return [a] * n + [b] * m + [-a] * n + [-b] * m
