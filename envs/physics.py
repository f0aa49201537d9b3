"""Physics: rigid objects dropped, thrown and rolled onto a ground plane."""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.envs.base import SHAPE_WORDS, SHAPES, SceneEnv, with_article
from worldsim.envs.camera import Camera
from worldsim.envs.captions import rich_caption
from worldsim.envs.params import Choice, HeldOutPairs, Uniform

#: The largest impulse one action can give, in N*s; a full kick changes a 1 kg object's speed by 1 m/s.
MAX_IMPULSE = 1.0
#: Captions call an object very bouncy or not bouncy only where restitution makes it certain.
BOUNCY, DEAD = 0.7, 0.2
#: Rich captions call an object small or big, and say where it starts, only clear of these margins (m).
SMALL, BIG = 0.113, 0.127
#: Rich captions call an object bouncy or dead on wider margins than plain ones, so both occur in id
#: (restitution 0.2..0.7): a rebound of 0.36 of the drop height, against 0.09 at most.
RICH_BOUNCY, RICH_DEAD = 0.6, 0.3
LOW, HIGH = 0.3, 0.4  # drop height above the ground
CENTRE, SIDE = 0.06, 0.12  # |start x| below CENTRE is the centre, above SIDE a side
CAPTIONS = ("plain", "rich")
HOLDOUTS = ("values", "combinations")
#: (color, shape) pairs that ``holdout="combinations"`` keeps out of id: each id color stays seen on
#: two shapes and each shape with two or three colors.
HELD_OUT = HeldOutPairs(
    ("color", "shape"),
    frozenset({("red", "cylinder"), ("green", "box"), ("blue", "sphere"), ("yellow", "cylinder")}),
)


class PhysicsEnv(SceneEnv):
    """Spheres, boxes and cylinders dropped, thrown, bouncing, rolling and colliding.

    ## Description
    One to four objects with random shape, size, mass, restitution, friction, color and initial
    velocity start in the air (``drop``, ``throw``) or on the ground (``roll``) in front of a fixed
    camera. Object slot 0 is the one the caption names and the one actions kick. Physical
    parameters have disjoint in-distribution and out-of-distribution ranges (``PhysicsEnv.params``).

    ## Action Space
    ``Box(-1, 1, (3,), float32)``: an impulse (x, y, z) of up to ``MAX_IMPULSE`` N*s per axis applied
    to object 0 at the start of the frame. All zeros is a no-op.

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``: the RGB frame; the camera looks along +y, so
    +x is screen right.

    ## Rewards
    Always 0: this world is for recording physics, not for a task.

    ## Starting State
    Sampled from ``params`` for the episode's split; see ``info["params"]``.

    ## Episode End
    Never terminates; ``gymnasium.make("worldsim/Physics-v0")`` truncates after 64 steps.

    ## Arguments
    ``render_mode``, ``width``, ``height``, ``split``, ``frame_skip`` as in ``SceneEnv``.
    ``captions``: ``"plain"`` (the default, what the shipped reference was trained on: "a red ball
    is thrown to the left, with 2 other objects") or ``"rich"`` (every attribute of
    ``caption_attributes`` in one of several phrasings drawn from the episode's rng: "two objects:
    a small red ball flies to the left from high on the right and bounces high").
    ``holdout``: what the ood split holds out of id: ``"values"`` (the default: every range's ood
    support) or ``"combinations"`` (``HELD_OUT`` color x shape pairs, never drawn in id; in ood the
    captioned object has one and every other value comes from the id supports).
    ``info`` holds caption, split, params, state (K = 4 slots), segmentation and depth.

    ## Version History
    * v0: initial version; ``captions`` and ``holdout`` added with defaults that keep every episode
      and caption as it was.
    """

    params = {
        "count": Choice(id=[1, 2, 3], ood=[4]),
        "motion": Choice(id=["drop", "throw", "roll"]),
        "shape": Choice(id=["sphere", "box", "cylinder"], per_object=True),
        "color": Choice(
            id=["red", "green", "blue", "yellow"],
            ood=["orange", "cyan", "purple", "magenta"],
            per_object=True,
            distinct=True,
        ),
        "size": Uniform(id=(0.1, 0.14), ood=[(0.07, 0.1), (0.14, 0.17)], per_object=True),
        "mass": Uniform(id=(0.5, 2.0), ood=[(0.2, 0.5), (2.0, 4.0)], per_object=True),
        "restitution": Uniform(id=(0.2, 0.7), ood=[(0.0, 0.2), (0.7, 0.9)], per_object=True),
        "friction": Uniform(id=(0.3, 0.8), ood=[(0.1, 0.3), (0.8, 1.2)], per_object=True),
        "speed": Uniform(id=(0.2, 0.6), ood=[(0.6, 0.9)], per_object=True),
        "direction": Choice(id=["left", "right"], per_object=True),
        "height": Uniform(id=(0.2, 0.5), ood=[(0.5, 0.7)]),
        "lift": Uniform(id=(0.5, 1.5)),
        "x": Uniform(id=(-0.15, 0.15), per_object=True),
    }
    max_objects = 4
    action_size = 3
    default_camera = Camera(eye=(0.0, -2.4, 1.2), target=(0.0, 0.0, 0.55))

    def __init__(self, *args: Any, captions: str = "plain", holdout: str = "values", **kwargs: Any):
        if captions not in CAPTIONS:
            raise ValueError(f"captions={captions!r} is not one of {CAPTIONS}: 'rich' names every attribute")
        if holdout not in HOLDOUTS:
            raise ValueError(f"holdout={holdout!r} is not one of {HOLDOUTS}: what the ood split holds out of id")
        super().__init__(*args, **kwargs)
        self.captions, self.holdout = captions, holdout
        HELD_OUT.check(self.param_space)

    def sample_params(self, split: str) -> dict[str, Any]:
        if self.holdout == "combinations":
            return HELD_OUT.sample(self.param_space, self.np_random, split)
        return super().sample_params(split)

    def build(self, params: dict[str, Any]) -> None:
        n, motion = params["count"], params["motion"]
        for i in range(n):
            size, sign = params["size"][i], 1.0 if params["direction"][i] == "right" else -1.0
            speed, x = params["speed"][i], start_x(params, i)
            if motion == "roll":
                # Separate depth lanes so rollers start apart; spheres spin as if already rolling.
                position = (x, (i - (n - 1) / 2) * 0.4, size)
                velocity, spin = (sign * speed, 0.0, 0.0), (0.0, sign * speed / size, 0.0)
            else:
                # Stacked 0.4 m apart (more than the largest diameter) so they start apart and
                # may land on each other.
                z = size + params["height"] + 0.4 * i
                if motion == "drop":
                    position, velocity = (x, 0.0, z), (0.0, 0.0, 0.0)
                else:
                    position = (x, 0.0, z)
                    velocity = (sign * speed, 0.0, params["lift"])
                spin = (0.0, 0.0, 0.0)
            self.add_object(
                params["shape"][i],
                size,
                params["color"][i],
                position,
                mass=params["mass"][i],
                velocity=velocity,
                angular_velocity=spin,
                restitution=params["restitution"][i],
                friction=params["friction"][i],
                rolling_friction=0.001,
            )

    @staticmethod
    def caption_attributes(params: dict[str, Any]) -> dict[str, Any]:
        """What a rich caption says of an episode's ``params``: the captioned object (slot 0) and the count.

        Keys: ``color``, ``shape`` (sphere/box/cylinder), ``count``, ``motion`` (drop/throw/roll),
        ``direction`` (left/right, none for a drop), and where the parameters make them certain
        ``size`` (small/big), ``start`` (left/centre/right), ``height`` (high/low; not for a roll)
        and ``bounce`` (bouncy/dead; not for a roll).
        """
        motion, size = params["motion"], params["size"][0]
        out: dict[str, Any] = {
            "color": params["color"][0],
            "shape": params["shape"][0],
            "count": int(params["count"]),
            "motion": motion,
            "direction": "none" if motion == "drop" else params["direction"][0],
        }
        if size < SMALL or size >= BIG:
            out["size"] = "small" if size < SMALL else "big"
        x = start_x(params, 0)
        if abs(x) < CENTRE or abs(x) > SIDE:
            out["start"] = "centre" if abs(x) < CENTRE else ("left" if x < 0 else "right")
        if motion != "roll":
            height, restitution = params["height"], params["restitution"][0]
            if height < LOW or height >= HIGH:
                out["height"] = "low" if height < LOW else "high"
            if restitution >= RICH_BOUNCY or restitution < RICH_DEAD:
                out["bounce"] = "bouncy" if restitution >= RICH_BOUNCY else "dead"
        return out

    def caption(self, params: dict[str, Any]) -> str:
        if self.captions == "rich":
            return rich_caption(self.caption_attributes(params), self.np_random)
        shape = params["shape"][0]
        subject = with_article(f"{params['color'][0]} {SHAPE_WORDS[SHAPES[shape]]}")
        motion, direction = params["motion"], params["direction"][0]
        if motion == "drop":
            text = f"{subject} is dropped"
        elif motion == "throw":
            text = f"{subject} is thrown to the {direction}"
        else:
            text = f"{subject} {'rolls' if shape == 'sphere' else 'slides'} to the {direction}"
        restitution = params["restitution"][0]
        if restitution >= BOUNCY:
            text += " and is very bouncy"
        elif restitution < DEAD:
            text += " and barely bounces"
        others = params["count"] - 1
        if others:
            text += f", with {others} other object{'s' if others > 1 else ''}"
        return text

    def apply_action(self, action: np.ndarray) -> None:
        if not action.any():
            return
        body = self.object_body(0)
        linear, angular = self.client.getBaseVelocity(body)
        kick = action.astype(np.float64) * MAX_IMPULSE / self.episode_params["mass"][0]
        self.client.resetBaseVelocity(body, list(np.add(linear, kick)), angular)

    def scripted_policy(self) -> "KickPolicy":
        return KickPolicy()


def start_x(params: dict[str, Any], i: int) -> float:
    """Where object ``i`` starts across the screen (m, + is right): drops spread over the centre,
    throws and rolls start on the side they move away from."""
    if params["motion"] == "drop":
        return params["x"][i] * 2
    sign = 1.0 if params["direction"][i] == "right" else -1.0
    return -sign * 0.45 + params["x"][i]


class KickPolicy:
    """Mostly no-ops; now and then a kick of random direction that also lifts object 0."""

    def __init__(self, kick_probability: float = 0.05):
        self.kick_probability = kick_probability
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if self.rng.random() >= self.kick_probability:
            return np.zeros(3, np.float32)
        kick = self.rng.uniform(-1.0, 1.0, 3)
        kick[2] = abs(kick[2])
        return kick.astype(np.float32)
