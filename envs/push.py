"""Push: an agent-controlled pusher pushes a target object into a goal region on a table."""

from __future__ import annotations

import math
import reprlib
from typing import Any

import numpy as np
import pybullet

from worldsim.envs.base import SHAPE_WORDS, SHAPES, SceneEnv, with_article
from worldsim.envs.camera import Camera
from worldsim.envs.colors import FLOOR, GOAL, GROUND
from worldsim.envs.params import Choice, Uniform

TABLE_HALF = 0.45  # m; the table top spans [-TABLE_HALF, TABLE_HALF]^2 at z = 0
PUSHER_RADIUS = 0.04
PUSHER_SPEED = 0.5  # m/s at |action| = 1
GOAL_RADIUS = 0.05  # success when the target's center is this close to the goal center
PROGRESS_SCALE = 10.0  # reward per meter of target-goal distance closed
SUCCESS_BONUS = 5.0
FALL_PENALTY = -1.0
TARGET, PUSHER = 0, 1  # tracked slots
STARTS = ("random", "behind")


class PushEnv(SceneEnv):
    """Push the target onto the goal patch with a velocity-controlled pusher.

    ## Description
    A square table top (z = 0) stands above a dark floor. A target (box or cylinder, tracked
    slot 0) and a blue cylindrical pusher (tracked slot 1) rest on it; a flat white square
    (no collision) marks the goal. The pusher is held upright at table height by a constraint and
    follows the commanded planar velocity, so it can push but not lift the target.

    ## Action Space
    ``Box(-1, 1, (2,), float32)``: pusher velocity (x, y) in units of ``PUSHER_SPEED`` = 0.5 m/s.
    The pusher cannot leave the table top.

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``: RGB frame from a fixed camera in front of and above
    the table (+x is screen right, +y away from the camera).

    ## Rewards
    ``PROGRESS_SCALE`` (10) times the decrease of the target-goal distance in meters each step,
    plus ``SUCCESS_BONUS`` (5) on success and ``FALL_PENALTY`` (-1) if the target leaves the table.

    ## Starting State
    Target within 0.2 m of the table center, goal 0.15-0.3 m from it (clipped to the table),
    pusher 0.22 m from the target: in a random direction (``start="random"``, the default), or
    on the far side from the goal (``start="behind"``, where pushing straight at the goal moves
    the target onto it: a task PPO learns in tens of thousands of steps, where the random start
    needs far more); see ``info["params"]``.

    ## Episode End
    Terminates on success (target center within ``GOAL_RADIUS`` of the goal) or when the target
    leaves the table top. ``gymnasium.make("worldsim/Push-v0")`` truncates after 128 steps.

    ## Arguments
    ``render_mode``, ``width``, ``height``, ``split``, ``frame_skip`` as in ``SceneEnv``; ``start``
    ("random" or "behind") as above. Both starts draw the same parameters from the same seed, so
    a seed gives the same target, goal and object in either.
    ``info["state"]`` adds ``goal_position`` (3,) float32 and ``target_goal_distance`` () float32.

    ## Version History
    * v0: initial version.
    """

    params = {
        "shape": Choice(id=["box", "cylinder"]),
        "color": Choice(id=["red", "green", "yellow"], ood=["orange", "cyan", "magenta"]),
        "size": Uniform(id=(0.05, 0.065), ood=[(0.04, 0.05), (0.065, 0.075)]),
        "mass": Uniform(id=(0.2, 0.6), ood=[(0.6, 1.2)]),
        "friction": Uniform(id=(0.3, 0.6), ood=[(0.6, 0.8)]),
        "target_x": Uniform(id=(-0.2, 0.2)),
        "target_y": Uniform(id=(-0.2, 0.2)),
        "goal_distance": Uniform(id=(0.15, 0.3)),
        "goal_angle": Uniform(id=(-math.pi, math.pi)),
        "pusher_angle": Uniform(id=(-math.pi, math.pi)),
    }
    max_objects = 2
    action_size = 2
    ground = False
    default_camera = Camera(eye=(0.0, -0.75, 1.05), target=(0.0, 0.04, 0.0))

    def __init__(self, *args: Any, start: str = "random", **kwargs: Any) -> None:
        if not isinstance(start, str) or start not in STARTS:
            raise ValueError(
                f"start={reprlib.repr(start)} is not one of {STARTS}: 'random' puts the pusher in a random "
                "direction from the target, 'behind' on its far side from the goal"
            )
        super().__init__(*args, **kwargs)
        self.start = start

    def build(self, params: dict[str, Any]) -> None:
        table = self.add_scenery((TABLE_HALF, TABLE_HALF, 0.05), GROUND, (0.0, 0.0, -0.05))
        self.client.changeDynamics(table, -1, lateralFriction=1.0)
        self.add_scenery((3.0, 3.0, 0.05), FLOOR, (0.0, 0.0, -0.85))
        target = np.array([params["target_x"], params["target_y"]])
        goal = target + params["goal_distance"] * np.array(
            [math.cos(params["goal_angle"]), math.sin(params["goal_angle"])]
        )
        self.goal = np.clip(goal, -TABLE_HALF + 0.12, TABLE_HALF - 0.12)
        if self.start == "behind":
            away = target - self.goal
            params["pusher_angle"] = math.atan2(away[1], away[0])
        pusher = target + 0.22 * np.array([math.cos(params["pusher_angle"]), math.sin(params["pusher_angle"])])
        pusher = np.clip(pusher, -TABLE_HALF + PUSHER_RADIUS, TABLE_HALF - PUSHER_RADIUS)
        # Recorded so datasets carry where the goal really is after clipping to the table.
        params["goal"] = [float(v) for v in self.goal]

        self.add_scenery((GOAL_RADIUS, GOAL_RADIUS, 0.001), GOAL, (*self.goal, 0.001), collide=False)
        size = params["size"]
        self.add_object(
            params["shape"],
            size,
            params["color"],
            (*target, size),
            mass=params["mass"],
            friction=params["friction"],
            restitution=0.0,
        )
        # A frictionless pusher glides at the commanded velocity; its constraint supplies the force.
        self.add_object(
            "cylinder", PUSHER_RADIUS, "blue", (*pusher, PUSHER_RADIUS), mass=1.0, friction=0.0, restitution=0.0
        )
        self.pivot = np.array([*pusher, PUSHER_RADIUS])
        self.grip = self.client.createConstraint(
            self.object_body(PUSHER), -1, -1, -1, pybullet.JOINT_FIXED, [0, 0, 0], [0, 0, 0], self.pivot.tolist()
        )
        self.client.changeConstraint(self.grip, self.pivot.tolist(), maxForce=50.0)
        self.distance = self._target_goal_distance()

    def caption(self, params: dict[str, Any]) -> str:
        target = with_article(f"{params['color']} {SHAPE_WORDS[SHAPES[params['shape']]]}")
        return f"a blue pusher pushes {target} onto the white goal square"

    def apply_action(self, action: np.ndarray) -> None:
        limit = TABLE_HALF - PUSHER_RADIUS
        self.pivot[:2] = np.clip(self.pivot[:2] + action * (PUSHER_SPEED * self.dt), -limit, limit)
        self.client.changeConstraint(self.grip, self.pivot.tolist(), maxForce=50.0)

    def reward(self) -> tuple[float, bool]:
        previous, self.distance = self.distance, self._target_goal_distance()
        reward = PROGRESS_SCALE * (previous - self.distance)
        (x, y, z), _ = self.client.getBasePositionAndOrientation(self.object_body(TARGET))
        if max(abs(x), abs(y)) > TABLE_HALF or z < -0.02:
            return reward + FALL_PENALTY, True
        if self.distance < GOAL_RADIUS:
            return reward + SUCCESS_BONUS, True
        return reward, False

    def extra_state(self) -> dict[str, np.ndarray]:
        return {
            "goal_position": np.array([*self.goal, 0.0], np.float32),
            "target_goal_distance": np.float32(self.distance),
        }

    def scripted_policy(self) -> "PushPolicy":
        return PushPolicy()

    def _target_goal_distance(self) -> float:
        (x, y, _), _ = self.client.getBasePositionAndOrientation(self.object_body(TARGET))
        return math.hypot(x - self.goal[0], y - self.goal[1])


class PushPolicy:
    """Walks the pusher around to the far side of the target, then pushes it along the goal line.

    Reads positions from ``info["state"]``; deterministic, so ``reset`` only satisfies the protocol.
    """

    def reset(self, seed: int) -> None:
        pass

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        state = info["state"]
        target = state["object_position"][TARGET, :2].astype(np.float64)
        pusher = state["object_position"][PUSHER, :2].astype(np.float64)
        goal = state["goal_position"][:2].astype(np.float64)
        size = float(state["object_size"][TARGET])
        to_goal = goal - target
        distance = np.linalg.norm(to_goal)
        direction = to_goal / max(distance, 1e-6)
        # The contact point behind the target; a box's corner reaches size * sqrt(2) from its center.
        contact = size * math.sqrt(2) + PUSHER_RADIUS + 0.01
        behind = target - direction * contact
        relative = pusher - target
        along = relative @ direction
        lateral = relative - along * direction
        if along < 0 and np.linalg.norm(lateral) < 0.3 * size:
            # On the line behind the target: push along it, easing off near the goal so the target
            # stops on it, and steer the sideways offset to zero so a turning target stays on line.
            speed = min(1.0, 0.3 + 4.0 * distance)
            velocity = direction * speed - 8.0 * lateral
        elif along > -0.5 * contact:
            # On the wrong side: go around, past the target's flank, never through it.
            norm = np.linalg.norm(lateral)
            side = lateral / norm if norm > 1e-6 else np.array([-direction[1], direction[0]])
            waypoint = target + side * (contact + 0.04) - direction * contact
            velocity = 8.0 * (waypoint - pusher)
        else:
            velocity = 8.0 * (behind - pusher)
        return np.clip(velocity, -1.0, 1.0).astype(np.float32)
