"""Occlusion: objects vanish behind a wall or out of view and come back, for object permanence."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from worldsim.envs.base import SHAPE_WORDS, SHAPES, SceneEnv, join_words, with_article
from worldsim.envs.camera import Camera
from worldsim.envs.colors import WALL
from worldsim.envs.params import Choice, Uniform

WALL_HALF = (0.3, 0.03, 0.3)  # m; hides about 0.8 m of the object lane from the camera
WALL_Y = -0.6  # the wall stands between the camera (y = -2.2) and the objects (y >= 0)
WALL_STEP = 0.0625  # m per frame at |action[0]| = 1 (about 1.9 m/s)
WALL_LIMIT = 1.5  # |wall x| never exceeds this
YAW_STEP = 0.0625  # rad per frame at |action[1]| = 1; a binary fraction so pans return exactly
YAW_LIMIT = math.pi / 2
EYE = (0.0, -2.2, 0.9)
LOOK_AT = (0.0, 0.0, 0.2)


class OcclusionEnv(SceneEnv):
    """Objects pass behind a wall, a wall slides over them, or the camera pans away and back.

    ## Description
    One to three objects stand or slide in a lane behind a gray wall. The episode ``mode``
    (sampled at reset, named in the caption) is one of:
    ``pass_behind``: the objects slide frictionlessly across the view, behind a static wall;
    ``occluder_slides``: the objects rest while the wall slides in front of them (action 0);
    ``camera_pan``: the objects rest while the camera turns away and back (action 1).
    ``info["state"]["object_visible"]`` says per object whether any pixel of it is visible,
    so steps with ``object_present & ~object_visible`` are the occluded ones. The caption tells
    what the scripted policy does; other policies may, of course, never bring objects back.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: wall velocity along x (``WALL_STEP`` m per frame at 1) and
    camera yaw rate (``YAW_STEP`` rad per frame at 1; the camera turns in place, positive left).

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``: RGB frame.

    ## Rewards
    Always 0.

    ## Starting State
    Objects in lanes 0.35 m apart in depth; see ``info["params"]``. The wall starts at the
    center (``pass_behind``), just out of view (``occluder_slides``) or to one side, clear of
    the objects (``camera_pan``).

    ## Episode End
    Never terminates; ``gymnasium.make("worldsim/Occlusion-v0")`` truncates after 64 steps.

    ## Arguments
    ``render_mode``, ``width``, ``height``, ``split``, ``frame_skip`` as in ``SceneEnv``.
    ``info["state"]`` adds ``occluder_position`` (3,) float32 and ``camera_yaw`` () float32.

    ## Version History
    * v0: initial version.
    """

    params = {
        "count": Choice(id=[1, 2], ood=[3]),
        "mode": Choice(id=["pass_behind", "occluder_slides", "camera_pan"]),
        "shape": Choice(id=["sphere", "box", "cylinder"], per_object=True),
        "color": Choice(
            id=["red", "green", "blue", "yellow"],
            ood=["orange", "cyan", "purple", "magenta"],
            per_object=True,
            distinct=True,
        ),
        "size": Uniform(id=(0.1, 0.13), ood=[(0.075, 0.1)], per_object=True),
        "speed": Uniform(id=(0.7, 0.9), ood=[(0.9, 1.1)]),
        "direction": Choice(id=["left", "right"]),
        "x": Uniform(id=(-0.2, 0.2), per_object=True),
        "wall_x": Uniform(id=(-0.05, 0.05)),
    }
    max_objects = 3
    action_size = 2
    default_camera = Camera(eye=EYE, target=LOOK_AT)

    def build(self, params: dict[str, Any]) -> None:
        mode, sign = params["mode"], 1.0 if params["direction"] == "right" else -1.0
        for i in range(params["count"]):
            size = params["size"][i]
            if mode == "pass_behind":
                # Start in view on one side (depth lanes keep them apart) and slide at constant
                # speed (no friction), so each one vanishes behind the wall and comes out.
                position, velocity = (-sign * (0.75 + 0.1 * i), 0.35 * i, size), (sign * params["speed"], 0.0, 0.0)
            else:
                position, velocity = (params["x"][i], 0.35 * i, size), (0.0, 0.0, 0.0)
            self.add_object(
                params["shape"][i],
                size,
                params["color"][i],
                position,
                mass=1.0,
                velocity=velocity,
                friction=0.0,
                restitution=0.0,
            )
        # The wall hides the lane center in pass_behind, waits out of view to slide in, or stands
        # aside as a landmark while the camera pans.
        wall_x = {"pass_behind": params["wall_x"], "occluder_slides": -sign * 1.0, "camera_pan": sign * 0.9}[mode]
        self.wall_position = np.array([wall_x, WALL_Y, WALL_HALF[2]])
        self.wall = self.add_scenery(WALL_HALF, WALL, tuple(self.wall_position))
        self.yaw = 0.0

    def caption(self, params: dict[str, Any]) -> str:
        objects = join_words(
            [
                with_article(f"{color} {SHAPE_WORDS[SHAPES[shape]]}")
                for color, shape in zip(params["color"], params["shape"])
            ]
        )
        mode = params["mode"]
        if mode == "pass_behind":
            verb = "passes" if params["count"] == 1 else "pass"
            return f"{objects} {verb} behind a gray wall, moving to the {params['direction']}"
        if mode == "occluder_slides":
            return f"a gray wall slides in front of {objects} and back"
        return f"the camera pans away from {objects} and back"

    def camera(self) -> Camera:
        # Turning in place: rotate the look direction about the vertical axis through the eye.
        dx, dy = LOOK_AT[0] - EYE[0], LOOK_AT[1] - EYE[1]
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return Camera(eye=EYE, target=(EYE[0] + c * dx - s * dy, EYE[1] + s * dx + c * dy, LOOK_AT[2]))

    def apply_action(self, action: np.ndarray) -> None:
        if action[0] != 0.0:
            self.wall_position[0] = np.clip(
                self.wall_position[0] + float(action[0]) * WALL_STEP, -WALL_LIMIT, WALL_LIMIT
            )
            self.client.resetBasePositionAndOrientation(self.wall, self.wall_position.tolist(), [0, 0, 0, 1])
        self.yaw = min(max(self.yaw + float(action[1]) * YAW_STEP, -YAW_LIMIT), YAW_LIMIT)

    def extra_state(self) -> dict[str, np.ndarray]:
        return {"occluder_position": self.wall_position.astype(np.float32), "camera_yaw": np.float32(self.yaw)}

    def scripted_policy(self) -> "OcclusionPolicy":
        return OcclusionPolicy()


class OcclusionPolicy:
    """Per mode: holds still (``pass_behind``), slides the wall over the objects, holds it and
    slides it back (``occluder_slides``), or pans the camera away, holds and pans back
    (``camera_pan``). Timing is drawn per episode from the seed given to ``reset``."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)
        self.plan: list[np.ndarray] = []

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.plan = []
        self.started = False

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if not self.started:
            self.started = True
            self.plan = self._plan(info)
        return self.plan.pop(0) if self.plan else np.zeros(2, np.float32)

    def _plan(self, info: dict[str, Any]) -> list[np.ndarray]:
        mode = info["params"]["mode"]
        hold = [np.zeros(2, np.float32)] * int(self.rng.integers(6, 12))
        if mode == "occluder_slides":
            # The wall starts 1 m to one side; 16 full steps bring it to the center.
            toward = -np.sign(info["state"]["occluder_position"][0])
            there = [np.array([toward, 0.0], np.float32)] * 16
            back = [np.array([-toward, 0.0], np.float32)] * 16
            return [*hold[:3], *there, *hold, *back]
        if mode == "camera_pan":
            turn = float(self.rng.choice([-1.0, 1.0]))
            away = [np.array([0.0, turn], np.float32)] * 16  # 1 rad: every object leaves the view
            back = [np.array([0.0, -turn], np.float32)] * 16
            return [*hold[:3], *away, *hold, *back]
        return []
