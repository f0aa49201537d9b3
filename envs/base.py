"""The one base every ground-truth world shares: a PyBullet scene rendered to RGB with ground truth.

A scene is a subclass that declares its parameter ranges and builds its objects; the base owns
the simulator, seeding, splits, stepping, rendering and the ``info`` ground truth, so every world
returns the same keys with the same shapes and dtypes::

    class Balls(SceneEnv):
        params = {"count": Choice(id=[1, 2], ood=[3]),
                  "color": Choice(id=["red", "green"], ood=["blue"], per_object=True, distinct=True),
                  "radius": Uniform(id=(0.1, 0.14), ood=[(0.15, 0.2)], per_object=True)}
        max_objects = 3

        def build(self, params):
            for i in range(params["count"]):
                self.add_object("sphere", params["radius"][i], params["color"][i],
                                position=(0.4 * i - 0.4, 0.0, 1.0), mass=1.0)
"""

from __future__ import annotations

import reprlib
from typing import Any, ClassVar

import gymnasium
import numpy as np
import pybullet
from gymnasium import spaces
from pybullet_utils.bullet_client import BulletClient

from worldsim.envs.camera import Camera, bullet, linear_depth, project
from worldsim.envs.colors import COLORS, GROUND, rgb
from worldsim.envs.params import Param, ParamSpace, check_split
from worldsim.envs.policy import Policy, ZeroPolicy
from worldsim.spaces import check_action

SHAPES = {"sphere": 0, "box": 1, "cylinder": 2}
#: How captions name each shape code.
SHAPE_WORDS = {0: "ball", 1: "box", 2: "cylinder"}
#: Physics runs at this rate whatever the frame rate; 240 Hz is PyBullet's tuned default.
PHYSICS_HZ = 240
SIZE_RANGE = (32, 256)
#: At least one frame per simulated second; more substeps only make a step slower to no purpose.
FRAME_SKIP_RANGE = (1, PHYSICS_HZ)


class SceneEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """Base for PyBullet worlds; subclasses set the class attributes and override the hooks.

    Class attributes: ``params`` (name -> ``Uniform``/``Choice``; a ``"count"`` param sets the
    length of per-object params), ``max_objects`` (K, the fixed number of tracked slots),
    ``action_size`` (actions are ``Box(-1, 1, (action_size,), float32)``), ``default_camera``,
    ``ground`` (whether the base lays a gray ground slab with its top at z = 0).

    Hooks: ``build(params)`` (required: create objects with ``add_object``/``add_scenery``),
    ``sample_params(split)``, ``caption(params)``, ``camera()``, ``apply_action(action)``, ``reward()``,
    ``extra_state()``, ``scripted_policy()``.

    Arguments: ``render_mode`` (``"rgb_array"`` or None; frames are the observation either way),
    ``width``/``height`` (pixels, 32..256, default 64), ``split`` (``"id"`` or ``"ood"``, default
    parameter split; ``reset(options={"split": ...})`` overrides it for one episode),
    ``frame_skip`` (physics substeps at 240 Hz per frame, 1..240; 8 gives 30 frames/s). Bad arguments raise
    ``ValueError`` naming them; actions are checked by ``worldsim.spaces.check_action``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": PHYSICS_HZ // 8}

    params: ClassVar[dict[str, Param]] = {}
    max_objects: ClassVar[int] = 1
    action_size: ClassVar[int] = 1
    default_camera: ClassVar[Camera] = Camera(eye=(0.0, -2.2, 1.0), target=(0.0, 0.0, 0.15))
    ground: ClassVar[bool] = True

    def __init__(
        self,
        render_mode: str | None = "rgb_array",
        width: int = 64,
        height: int = 64,
        split: str = "id",
        frame_skip: int = 8,
    ):
        check_render_mode(render_mode, self.metadata["render_modes"])
        width = check_int("width", width, SIZE_RANGE, "the frame width in pixels")
        height = check_int("height", height, SIZE_RANGE, "the frame height in pixels")
        frame_skip = check_int(
            "frame_skip", frame_skip, FRAME_SKIP_RANGE, f"the physics substeps ({PHYSICS_HZ} Hz) per frame"
        )
        self.render_mode = render_mode
        self.width, self.height = width, height
        self.split = check_split(split)
        self.frame_skip = frame_skip
        self.dt = self.frame_skip / PHYSICS_HZ
        self.metadata = {**self.metadata, "render_fps": PHYSICS_HZ / self.frame_skip}
        self.param_space = ParamSpace(dict(self.params))
        if self.param_space.max_count() > self.max_objects:
            raise ValueError(
                f"{type(self).__name__} can draw {self.param_space.max_count()} objects but declares "
                f"max_objects={self.max_objects}: raise max_objects"
            )
        self.action_space = spaces.Box(-1.0, 1.0, (self.action_size,), np.float32)
        self.observation_space = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        self.client = BulletClient(connection_mode=pybullet.DIRECT)
        self.episode_split = self.split
        self.episode_params: dict[str, Any] = {}
        self.steps = 0
        self._camera_cache: tuple[Any, ...] = (None,)

    # ----------------------------------------------------------------- hooks for scenes

    def build(self, params: dict[str, Any]) -> None:
        """Create the scene's objects from sampled ``params`` (called on every reset)."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(params)")

    def sample_params(self, split: str) -> dict[str, Any]:
        """The episode's parameters for ``split``, drawn from ``self.np_random``; override to split otherwise."""
        return self.param_space.sample(self.np_random, split)

    def caption(self, params: dict[str, Any]) -> str:
        """One sentence describing the episode; by default, its objects ("a red ball and a blue box")."""
        names = [with_article(f"{color_name(c)} {SHAPE_WORDS[s]}") for c, s in zip(self._colors, self._shapes)]
        return join_words(names) if names else "an empty scene"

    def camera(self) -> Camera:
        """The camera for the current frame; override to move it."""
        return self.default_camera

    def apply_action(self, action: np.ndarray) -> None:
        """Act on the world before the frame's physics substeps; the default ignores the action."""

    def reward(self) -> tuple[float, bool]:
        """(reward, terminated) after the frame's physics; the default is (0.0, False)."""
        return 0.0, False

    def extra_state(self) -> dict[str, np.ndarray]:
        """World-specific ground truth merged into ``info["state"]``."""
        return {}

    def scripted_policy(self) -> Policy:
        """A policy that acts sensibly in this world; the default does nothing."""
        return ZeroPolicy(self.action_space)

    # ----------------------------------------------------------------- helpers for build

    def add_object(
        self,
        shape: str,
        size: float,
        color: str | tuple[float, float, float],
        position: tuple[float, float, float],
        *,
        mass: float = 1.0,
        velocity: tuple[float, float, float] = (0.0, 0.0, 0.0),
        angular_velocity: tuple[float, float, float] = (0.0, 0.0, 0.0),
        orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0),
        restitution: float = 0.3,
        friction: float = 0.5,
        rolling_friction: float = 0.0,
    ) -> int:
        """Create a tracked object and return its slot (0, 1, ...; segmentation value slot + 1).

        ``size`` is the half-width: sphere and cylinder radius (cylinders are 2 * size tall),
        box half-extent (boxes are cubes). ``mass=0`` makes it static.
        """
        if shape not in SHAPES:
            raise ValueError(f"shape {shape!r} is not one of {sorted(SHAPES)}")
        if len(self._bodies) >= self.max_objects:
            raise ValueError(
                f"{type(self).__name__} adds object {len(self._bodies) + 1} but declares "
                f"max_objects={self.max_objects}: raise max_objects"
            )
        color_rgb = rgb(color)
        body = self._create(shape, size, color_rgb, position, mass, orientation, collide=True)
        self.client.resetBaseVelocity(body, list(velocity), list(angular_velocity))
        self.client.changeDynamics(
            body, -1, restitution=restitution, lateralFriction=friction, rollingFriction=rolling_friction
        )
        self._bodies.append(body)
        self._shapes.append(SHAPES[shape])
        self._colors.append(color_rgb)
        self._sizes.append(size)
        self._masses.append(mass)
        return len(self._bodies) - 1

    def add_scenery(
        self,
        half_extents: tuple[float, float, float],
        color: str | tuple[float, float, float],
        position: tuple[float, float, float],
        *,
        collide: bool = True,
        orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0),
    ) -> int:
        """Create an untracked static box (table, wall, occluder, goal patch); returns its body id."""
        return self._create("box", half_extents, rgb(color), position, 0.0, orientation, collide=collide)

    def object_body(self, slot: int) -> int:
        """The PyBullet body id of tracked object ``slot``."""
        return self._bodies[slot]

    def perturb(self, rng: np.random.Generator, scale: float) -> None:
        """Nudge every tracked object: its position by ``scale`` times its size, its linear and angular
        velocities by ``scale`` relative, in random directions from ``rng`` (``perturbed_truth``)."""
        for slot in np.flatnonzero(self._present):
            body = self._bodies[slot]
            position, orientation = self.client.getBasePositionAndOrientation(body)
            linear, angular = self.client.getBaseVelocity(body)
            position = np.add(position, scale * float(self._size[slot]) * rng.normal(size=3))
            linear = np.multiply(linear, 1.0 + scale * rng.normal(size=3))
            angular = np.multiply(angular, 1.0 + scale * rng.normal(size=3))
            self.client.resetBasePositionAndOrientation(body, position.tolist(), orientation)
            self.client.resetBaseVelocity(body, linear.tolist(), angular.tolist())

    # ----------------------------------------------------------------- Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.episode_split = split = reset_split(options, self.split)
        self.episode_params = self.sample_params(split)
        self.steps = 0

        # Rebuilding the world from scratch in a fixed order makes body ids, contact ordering and
        # therefore every frame a pure function of the seed.
        c = self.client
        c.resetSimulation()
        c.setPhysicsEngineParameter(fixedTimeStep=1.0 / PHYSICS_HZ, numSubSteps=0, deterministicOverlappingPairs=1)
        c.setGravity(0, 0, -9.81)
        self._bodies, self._shapes, self._colors, self._sizes, self._masses = [], [], [], [], []
        if self.ground:
            # A thin box renders about twice as fast as PyBullet's infinite plane with TinyRenderer.
            # Restitution and friction of 1 make contacts take the object's own values (Bullet
            # multiplies the two bodies' coefficients).
            ground = self.add_scenery((4.0, 4.0, 0.05), GROUND, (0.0, 0.0, -0.05))
            c.changeDynamics(ground, -1, restitution=1.0, lateralFriction=1.0)
        self.build(self.episode_params)
        self._freeze_objects()
        self._caption = self.caption(self.episode_params)
        return self._observe()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        action = check_action(self.action_space, action)
        self.apply_action(action)
        for _ in range(self.frame_skip):
            self.client.stepSimulation()
        self.steps += 1
        reward, terminated = self.reward()
        observation, info = self._observe()
        return observation, float(reward), bool(terminated), False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        return self._frame.copy()

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            if self.client.isConnected():
                self.client.disconnect()
            # Drop the client now: its finalizer run at interpreter shutdown prints a traceback.
            self.client = None

    # ----------------------------------------------------------------- internals

    def _create(
        self,
        shape: str,
        size: float | tuple[float, float, float],
        color: tuple[float, float, float],
        position: tuple[float, float, float],
        mass: float,
        orientation: tuple[float, float, float, float],
        collide: bool,
    ) -> int:
        c = self.client
        kind = {"sphere": pybullet.GEOM_SPHERE, "box": pybullet.GEOM_BOX, "cylinder": pybullet.GEOM_CYLINDER}[shape]
        if shape == "box":
            extents = list(size) if isinstance(size, tuple) else [size] * 3
            visual_geometry: dict[str, Any] = {"halfExtents": extents}
            collision_geometry = visual_geometry
        elif shape == "sphere":
            visual_geometry = collision_geometry = {"radius": size}
        else:  # PyBullet names the cylinder's height "length" for visuals and "height" for collisions
            visual_geometry = {"radius": size, "length": 2 * size}
            collision_geometry = {"radius": size, "height": 2 * size}
        visual = c.createVisualShape(kind, rgbaColor=[*color, 1.0], specularColor=[0.2, 0.2, 0.2], **visual_geometry)
        collision = c.createCollisionShape(kind, **collision_geometry) if collide else -1
        return c.createMultiBody(mass, collision, visual, list(position), list(orientation))

    def _freeze_objects(self) -> None:
        """Fix the per-episode arrays and the body-id -> slot lookup once build() is done."""
        k, n = self.max_objects, len(self._bodies)
        self._object_id = np.full(k, -1, np.int32)
        self._object_id[:n] = self._bodies
        self._present = np.zeros(k, bool)
        self._present[:n] = True
        self._shape = np.full(k, -1, np.int8)
        self._shape[:n] = self._shapes
        self._color = np.zeros((k, 3), np.float32)
        self._color[:n] = np.asarray(self._colors, np.float32).reshape(n, 3)
        self._size = np.zeros(k, np.float32)
        self._size[:n] = self._sizes
        self._mass = np.zeros(k, np.float32)
        self._mass[:n] = self._masses
        # Segmentation holds body ids (-1 = background); index (id + 1) into this table.
        self._slot_of_body = np.zeros(self.client.getNumBodies() + 1, np.int16)
        self._slot_of_body[np.asarray(self._bodies, np.int64) + 1] = np.arange(1, n + 1, dtype=np.int16)

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        c, w, h, k = self.client, self.width, self.height, self.max_objects
        cam = self.camera()
        if cam != self._camera_cache[0]:  # most worlds keep still cameras: skip the matrix math
            view, proj = cam.view(), cam.projection(w, h)
            self._camera_cache = (cam, view, proj, bullet(view), bullet(proj), proj @ view)
        _, view, proj, view_list, proj_list, view_projection = self._camera_cache
        _, _, pixels, zbuffer, segmentation = c.getCameraImage(
            w, h, view_list, proj_list, renderer=pybullet.ER_TINY_RENDERER
        )
        self._frame = np.ascontiguousarray(np.asarray(pixels, np.uint8).reshape(h, w, 4)[:, :, :3])
        slots = self._slot_of_body[np.asarray(segmentation, np.int64).reshape(h, w) + 1]  # (H, W) int16
        depth = linear_depth(np.asarray(zbuffer, np.float32).reshape(h, w))

        n = len(self._bodies)
        position = np.zeros((k, 3), np.float32)
        orientation = np.zeros((k, 4), np.float32)
        linear = np.zeros((k, 3), np.float32)
        angular = np.zeros((k, 3), np.float32)
        for slot, body in enumerate(self._bodies):
            pos, orn = c.getBasePositionAndOrientation(body)
            lin, ang = c.getBaseVelocity(body)
            position[slot], orientation[slot], linear[slot], angular[slot] = pos, orn, lin, ang
        centroid = np.zeros((k, 2), np.float32)
        if n:
            centroid[:n] = project(position[:n].astype(np.float64), view_projection, w, h)
        counts = np.bincount(slots.ravel(), minlength=k + 1)[1 : k + 1].astype(np.int32)

        state = {
            "object_id": self._object_id.copy(),
            "object_present": self._present.copy(),
            "object_shape": self._shape.copy(),
            "object_color": self._color.copy(),
            "object_size": self._size.copy(),
            "object_mass": self._mass.copy(),
            "object_position": position,
            "object_orientation": orientation,
            "object_linear_velocity": linear,
            "object_angular_velocity": angular,
            "object_centroid": centroid,
            "object_pixels": counts,
            "object_visible": counts > 0,
            "camera_view": view.astype(np.float32),
            "camera_projection": proj.astype(np.float32),
            "camera_position": np.asarray(cam.eye, np.float32),
            **self.extra_state(),
        }
        info = ground_truth_info(self._caption, self.episode_split, self.episode_params, state, slots, depth)
        return self._frame.copy(), info


def check_render_mode(render_mode: Any, modes: list[str]) -> None:
    """Raise a ValueError naming ``render_mode`` unless it is None or one of ``modes``."""
    if render_mode is not None and (not isinstance(render_mode, str) or render_mode not in modes):
        raise ValueError(f"render_mode {reprlib.repr(render_mode)} is not supported: use 'rgb_array' or None")


def reset_split(options: dict[str, Any] | None, default: str) -> str:
    """The episode's split from ``reset(options=...)`` (its only option), else ``default``."""
    options = dict(options or {})
    split = check_split(options.pop("split", default))
    if options:
        raise ValueError(f"unknown reset options {sorted(options)}: the only option is 'split'")
    return split


def ground_truth_info(
    caption: str,
    split: str,
    params: dict[str, Any],
    state: dict[str, np.ndarray],
    segmentation: np.ndarray,
    depth: np.ndarray,
) -> dict[str, Any]:
    """The ``info`` every world returns: the same six keys (``docs/worlds.md``, "Ground truth in info")."""
    return {
        "caption": caption,
        "split": split,
        # Fresh containers every call: users keep infos, so no two may share mutable data.
        "params": {k: list(v) if isinstance(v, list) else v for k, v in params.items()},
        "state": state,
        "segmentation": segmentation,
        "depth": depth,
    }


def check_int(name: str, value: Any, bounds: tuple[int, int], meaning: str) -> int:
    """``value`` as an int when it is an integer (a bool is not) within ``bounds``, else a ValueError naming it."""
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        problem = f"is not an integer but {type(value).__name__}"
    elif not low <= value <= high:
        problem = f"is outside {low}..{high}"
    else:
        return int(value)
    raise ValueError(f"{name}={reprlib.repr(value)} {problem}: pass {meaning}, an integer in {low}..{high}")


def color_name(color: tuple[float, float, float]) -> str:
    """The palette name of an RGB triple, or "colored" for a custom color."""
    return next((name for name, value in COLORS.items() if value == tuple(color)), "colored")


def with_article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def join_words(words: list[str]) -> str:
    """["a", "b", "c"] -> "a, b and c"."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
