"""BlockWorld: a first-person Minecraft-style voxel world with VPT/MineRL-like actions.

Not a PyBullet scene: the terrain is a voxel grid (``voxels``) drawn by a numpy ray caster
(``raycast``, whose docstring says why), and the player's gravity, jumps and collisions are a few
lines of axis-aligned box arithmetic. It shares with the PyBullet worlds what users see: the
argument checks, the id/ood parameter splits and the ``info`` layout.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from worldsim.envs.base import check_int, check_render_mode, ground_truth_info, reset_split
from worldsim.envs.camera import Camera
from worldsim.envs.params import Choice, ParamSpace, Uniform, check_split
from worldsim.envs.policy import Policy
from worldsim.envs.raycast import VoxelRenderer, camera_axes, cast_ray
from worldsim.envs.voxels import (
    AIR,
    BIOMES,
    BLOCKS,
    BRICK,
    DIRT,
    PLANKS,
    STONE,
    UNBREAKABLE,
    WOOD,
    Landmark,
    generate,
)
from worldsim.spaces import check_action

WORLD_SIZE = (32, 32, 32)  # blocks along x, y, z
FOV = 70.0  # degrees, vertical (Minecraft's default)
VIEW_DISTANCE = 16.0  # blocks; the fog is opaque here (half the world's width)
SIZE_RANGE = (32, 256)
YAW_STEPS = 24  # a camera turn is 360 / 24 = 15 degrees, so turns come back to identical angles
TURN = 2 * math.pi / YAW_STEPS  # radians per yaw or pitch step
PITCH_LIMIT = 5  # pitch steps of 15 degrees up or down at most (75 degrees)
WALK = 0.25  # blocks per step (5 blocks/s at 20 steps/s)
GRAVITY = 0.08  # blocks/step^2 (Minecraft's)
JUMP = 0.4  # blocks/step upward: a jump rises 1.2 blocks, enough to climb one block
MAX_FALL = 0.9  # blocks/step: under one block, so a fall never skips a block
HALF_WIDTH, PLAYER_HEIGHT, EYE_HEIGHT = 0.3, 1.8, 1.62
REACH = 4.5  # blocks from the eye to a block that can be broken or placed against
BUILD_LIMIT = WORLD_SIZE[2] - 5  # blocks are placed below this z, so the eye stays inside the grid
HOTBAR = (DIRT, STONE, PLANKS, BRICK)
WOOD_GOAL = 8  # wood blocks to collect
MAX_EDITS = 128  # rows of info["state"]["edits"]
MAX_LANDMARKS = 12
EPS = 1e-7
#: The components of an action, each a small integer; 0 is the no-op in every one.
ACTION_NAMES = ("move", "strafe", "jump", "yaw", "pitch", "use", "select")
ACTION_NVEC = (3, 3, 2, 3, 3, 3, 1 + len(HOTBAR))
SIGN = (0, 1, -1)  # component value -> direction for move, strafe, yaw and pitch


def act(**components: int) -> np.ndarray:
    """An action with the named components set, e.g. ``act(move=1, jump=1)``; the rest are no-ops."""
    action = np.zeros(len(ACTION_NAMES), np.int64)
    for name, value in components.items():
        action[ACTION_NAMES.index(name)] = value
    return action


#: ``worldsim play policy=keyboard``: WASD walk, arrows look, space jumps, e breaks, r places,
#: 1-4 select a hotbar block (q quits, so it binds nothing).
KEYBOARD: dict[str, np.ndarray] = {
    "w": act(move=1),
    "s": act(move=2),
    "a": act(strafe=1),
    "d": act(strafe=2),
    "space": act(jump=1),
    "left": act(yaw=1),
    "right": act(yaw=2),
    "up": act(pitch=1),
    "down": act(pitch=2),
    "e": act(use=1),
    "r": act(use=2),
    **{str(slot): act(select=slot) for slot in range(1, len(HOTBAR) + 1)},
}


class BlockWorldEnv(gymnasium.Env[np.ndarray, np.ndarray]):
    """First-person voxel world: walk, jump, look, break and place blocks, collect wood.

    ## Description
    A seeded 32x32-column voxel terrain (bedrock, stone, a biome's filler and top blocks, water
    below sea level) with trees (wood trunk, leaf canopy) and 2x2 brick pillars as landmarks under
    a sky. The player is a 0.6 x 0.6 x 1.8 box with gravity, jumps and collision against blocks;
    the camera sits at its eye (1.62 above the feet) with yaw and pitch. Blocks broken stay broken
    and blocks placed stay placed for the episode.

    ## Action Space
    ``MultiDiscrete([3, 3, 2, 3, 3, 3, 5])``, as VPT/MineRL discretise a keyboard and mouse; 0 is
    a no-op in every component: move (1 forward, 2 back, 0.25 blocks), strafe (1 left, 2 right),
    jump (1), yaw (1 left, 2 right, 15 degrees), pitch (1 up, 2 down, 15 degrees, within +-75),
    use (1 break the block under the crosshair, 2 place the selected block against it; reach
    4.5 blocks), select (k: hotbar slot k-1 of dirt, stone, planks, brick). Each step selects,
    turns, uses, then moves.

    ## Observation Space
    ``Box(0, 255, (height, width, 3), uint8)``: the first-person RGB frame.

    ## Rewards
    1 for every wood block broken (trees' trunks), else 0.

    ## Starting State
    The player stands on the centre column, level, facing a sampled multiple of 15 degrees.
    Biome, relief, tree and pillar counts and the terrain seed are sampled; see ``info["params"]``.

    ## Episode End
    Terminates once ``WOOD_GOAL`` (8) wood blocks are collected;
    ``gymnasium.make("worldsim/BlockWorld-v0")`` truncates after 600 steps.

    ## Arguments
    ``render_mode`` (``"rgb_array"`` or None), ``width``/``height`` (32..256, default 64),
    ``split`` (``"id"``: meadow, forest, desert, relief 2-4, 3-5 trees and 1-2 pillars; ``"ood"``:
    tundra and mesa, relief 5-8, 7-9 trees and 3 pillars; ``reset(options={"split": ...})`` for one
    episode). ``info["state"]`` has the shared object keys for the landmarks (tracked slots, box
    shape, colour of the leaves or bricks, size = half the height, position = the centre) and
    the camera, plus ``player_position`` (3,) feet, ``player_velocity`` (3,), ``player_look``
    (2,) yaw and pitch in radians, ``player_on_ground`` (), ``selected_block`` () code,
    ``target_block`` (3,) int32 cell under the crosshair (-1s for none), ``block_type`` (H, W)
    uint8 per-pixel block code (0 sky), ``edits`` (128, 6) int32 rows (x, y, z, old code, new
    code, step) of the latest 128 edits, oldest first, -1 padded, ``edit_count`` () all edits so
    far, ``inventory`` (13,) int32 blocks broken by code. ``segmentation`` is landmark slot + 1.

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    KEYBOARD = KEYBOARD
    max_objects = MAX_LANDMARKS  # tracked slots, as SceneEnv.max_objects

    params = {
        "biome": Choice(id=["meadow", "forest", "desert"], ood=["tundra", "mesa"]),
        "relief": Uniform(id=(2.0, 4.0), ood=[(5.0, 8.0)]),
        "trees": Choice(id=[3, 4, 5], ood=[7, 8, 9]),
        "pillars": Choice(id=[1, 2], ood=[3]),
        "yaw": Choice(id=list(range(YAW_STEPS))),
    }

    def __init__(self, render_mode: str | None = "rgb_array", width: int = 64, height: int = 64, split: str = "id"):
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.render_mode = render_mode
        self.width = check_int("width", width, SIZE_RANGE, "the frame width in pixels")
        self.height = check_int("height", height, SIZE_RANGE, "the frame height in pixels")
        self.split = check_split(split)
        self.param_space = ParamSpace(dict(self.params))
        self.action_space = spaces.MultiDiscrete(np.array(ACTION_NVEC, np.int64))
        self.observation_space = spaces.Box(0, 255, (self.height, self.width, 3), np.uint8)
        self.renderer = VoxelRenderer(WORLD_SIZE, self.width, self.height, FOV, VIEW_DISTANCE)
        self.palette = np.zeros((256, 3), np.float32)
        for code, (_, color) in BLOCKS.items():
            self.palette[code] = color
        self.projection = Camera((0, 0, 0), (0, 1, 0), fov=FOV).projection(self.width, self.height)

    # ----------------------------------------------------------------- Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.episode_split = reset_split(options, self.split)
        params = self.param_space.sample(self.np_random, self.episode_split)
        params["terrain_seed"] = int(self.np_random.integers(2**31))
        self.episode_params = params
        trees = params["trees"] + (3 if params["biome"] == "forest" else 0)
        terrain = generate(
            np.random.default_rng(params["terrain_seed"]),
            WORLD_SIZE,
            params["biome"],
            params["relief"],
            trees,
            params["pillars"],
        )
        self.blocks, self.owner, self.landmarks = terrain.blocks, terrain.owner, terrain.landmarks
        self.renderer.set_world(self.blocks, self.owner)
        biome = BIOMES[params["biome"]]
        self.sky = np.array([biome.horizon, biome.zenith], np.float32)

        x, y = WORLD_SIZE[0] // 2, WORLD_SIZE[1] // 2
        ground = int(np.flatnonzero(self.blocks[x, y])[-1]) + 1
        self.position = np.array([x + 0.5, y + 0.5, float(ground)])
        self.velocity = np.zeros(3)
        self.yaw_index, self.pitch_index = int(params["yaw"]), 0
        self.on_ground = True
        self.selected = HOTBAR[0]
        self.edits: list[tuple[int, int, int, int, int, int]] = []
        self.inventory = np.zeros(len(BLOCKS), np.int32)
        self.steps = 0
        self._freeze_landmarks()
        self._caption = self.caption(params, terrain.landmarks)
        return self._observe()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        move, strafe, jump, yaw, pitch, use, select = (int(a) for a in check_action(self.action_space, action))
        self.steps += 1
        if select:
            self.selected = HOTBAR[select - 1]
        self.yaw_index = (self.yaw_index - SIGN[yaw]) % YAW_STEPS  # yaw grows to the right
        self.pitch_index = int(np.clip(self.pitch_index + SIGN[pitch], -PITCH_LIMIT, PITCH_LIMIT))
        reward = 0.0
        if use == 1:
            reward = float(self._break() == WOOD)
        elif use == 2:
            self._place()
        self._move(SIGN[move], -SIGN[strafe], bool(jump))
        terminated = bool(self.inventory[WOOD] >= WOOD_GOAL)
        observation, info = self._observe()
        return observation, reward, terminated, False, info

    def render(self) -> np.ndarray | None:
        return None if self.render_mode is None else self._frame.copy()

    # ----------------------------------------------------------------- the player

    @property
    def yaw(self) -> float:
        return self.yaw_index * TURN

    @property
    def pitch(self) -> float:
        return self.pitch_index * TURN

    @property
    def eye(self) -> np.ndarray:
        return self.position + (0.0, 0.0, EYE_HEIGHT)

    def collides(self, position: np.ndarray) -> bool:
        """Whether the player's box at ``position`` (feet) overlaps a block or leaves the grid sideways."""
        lo = np.floor(position - (HALF_WIDTH, HALF_WIDTH, 0.0)).astype(int)
        hi = np.ceil(position + (HALF_WIDTH, HALF_WIDTH, PLAYER_HEIGHT)).astype(int)  # exclusive
        if lo[0] < 0 or lo[1] < 0 or lo[2] < 0 or hi[0] > WORLD_SIZE[0] or hi[1] > WORLD_SIZE[1]:
            return True
        return bool(self.blocks[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].any())

    def _move(self, forward: int, right: int, jump: bool) -> None:
        if jump and self.on_ground:
            self.velocity[2] = JUMP
        s, c = math.sin(self.yaw), math.cos(self.yaw)
        walk = np.array([s * forward + c * right, c * forward - s * right])
        norm = float(np.hypot(*walk))
        walk = walk * (WALK / norm) if norm > 0 else walk
        self.velocity[:2] = walk
        for axis in (0, 1, 2):
            # One axis at a time: a blocked axis snaps flush to the block and the others still slide.
            move = self.velocity[axis]
            if move == 0:
                continue
            moved = self.position.copy()
            moved[axis] += move
            if not self.collides(moved):
                self.position = moved
                continue
            extent = (HALF_WIDTH, HALF_WIDTH, PLAYER_HEIGHT)[axis]
            if move > 0:
                self.position[axis] = math.floor(self.position[axis] + extent + move) - extent - EPS
            else:
                low = HALF_WIDTH if axis < 2 else 0.0
                self.position[axis] = math.floor(self.position[axis] - low + move) + 1 + low + (EPS if axis < 2 else 0)
            self.velocity[axis] = 0.0 if axis == 2 else self.velocity[axis]
        self.on_ground = self.velocity[2] <= 0 and self.collides(self.position - (0.0, 0.0, 2 * EPS))
        self.velocity[2] = 0.0 if self.on_ground else max(self.velocity[2] - GRAVITY, -MAX_FALL)

    def crosshair(self) -> tuple[float, tuple[int, int, int], tuple[int, int, int]] | None:
        """What ``cast_ray`` finds along the view axis within reach."""
        forward, _, _ = camera_axes(self.yaw, self.pitch)
        return cast_ray(self.blocks, self.eye, forward, REACH)

    def _break(self) -> int:
        """Break the block under the crosshair; returns its code (AIR when nothing broke)."""
        target = self.crosshair()
        if target is None or self.blocks[target[1]] in UNBREAKABLE:
            return AIR
        old = int(self.blocks[target[1]])
        self._edit(target[1], AIR)
        self.inventory[old] += 1
        return old

    def _place(self) -> None:
        target = self.crosshair()
        if target is None:
            return
        x, y, z = cell = target[2]
        if not (0 <= x < WORLD_SIZE[0] and 0 <= y < WORLD_SIZE[1] and 0 <= z < BUILD_LIMIT):
            return
        if self.blocks[cell] != AIR:
            return
        self.blocks[cell] = self.selected  # tried in place: a block inside the player is refused
        inside = self.collides(self.position)
        self.blocks[cell] = AIR
        if not inside:
            self._edit(cell, self.selected)

    def _edit(self, cell: tuple[int, int, int], block: int) -> None:
        old = int(self.blocks[cell])
        self.blocks[cell] = block
        self.owner[cell] = 0  # a placed block belongs to no landmark; a broken one is gone
        self.renderer.edit(*cell)
        self.edits.append((*cell, old, block, self.steps))

    def perturb(self, rng: np.random.Generator, scale: float) -> None:
        """Nudge the player by ``scale`` blocks horizontally, in a random direction from ``rng``
        (``perturbed_truth``): the blocks cannot move, so the player is what may diverge."""
        moved = self.position.copy()
        moved[:2] += scale * rng.normal(size=2)
        if not self.collides(moved):
            self.position = moved

    # ----------------------------------------------------------------- ground truth

    def caption(self, params: dict[str, Any], landmarks: list[Landmark]) -> str:
        trees = sum(m.kind == "tree" for m in landmarks)
        pillars = len(landmarks) - trees
        things = [f"{trees} tree{'s' * (trees != 1)}", f"{pillars} brick pillar{'s' * (pillars != 1)}"]
        return (
            f"first person in a {params['biome']} with {' and '.join(things)}: the player walks, looks "
            "around, jumps, breaks and places blocks and chops wood"
        )

    def scripted_policy(self) -> Policy:
        from worldsim.envs.blockworld_policy import ExplorePolicy  # it imports this module's constants

        return ExplorePolicy()

    def _freeze_landmarks(self) -> None:
        k, n = MAX_LANDMARKS, len(self.landmarks)
        self._object = {
            "object_id": np.full(k, -1, np.int32),
            "object_present": np.zeros(k, bool),
            "object_shape": np.full(k, -1, np.int8),
            "object_color": np.zeros((k, 3), np.float32),
            "object_size": np.zeros(k, np.float32),
            "object_mass": np.zeros(k, np.float32),
            "object_position": np.zeros((k, 3), np.float32),
            "object_orientation": np.zeros((k, 4), np.float32),
            "object_linear_velocity": np.zeros((k, 3), np.float32),
            "object_angular_velocity": np.zeros((k, 3), np.float32),
        }
        o = self._object
        o["object_id"][:n] = np.arange(n)
        o["object_present"][:n] = True
        o["object_shape"][:n] = 1  # box: landmarks are made of cubes
        for slot, mark in enumerate(self.landmarks):
            o["object_color"][slot] = BLOCKS[mark.block][1]
            o["object_size"][slot] = (mark.z1 - mark.z0) / 2
            o["object_position"][slot] = mark.center
            o["object_orientation"][slot] = (0.0, 0.0, 0.0, 1.0)

    def camera(self) -> Camera:
        """The player's eye as a ``Camera``, whose ``view()`` equals ``info["state"]["camera_view"]``."""
        forward, _, _ = camera_axes(self.yaw, self.pitch)
        eye = self.eye
        return Camera(tuple(eye), tuple(eye + forward), fov=FOV)

    def view(self) -> np.ndarray:
        """World -> camera (4, 4) as ``Camera.view()`` builds it, from the axes without cross products."""
        forward, right, up = camera_axes(self.yaw, self.pitch)
        view = np.eye(4)
        view[0, :3], view[1, :3], view[2, :3] = right, up, -forward
        view[:3, 3] = -view[:3, :3] @ self.eye
        return view

    def _observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        eye = self.eye
        frame, depth, block, owner = self.renderer.render(eye, self.yaw, self.pitch, self.palette, self.sky)
        self._frame = frame
        view = self.view()
        segmentation = owner.astype(np.int16)
        k = MAX_LANDMARKS
        counts = np.bincount(owner.ravel(), minlength=k + 1)[1 : k + 1].astype(np.int32)
        centroid = np.zeros((k, 2), np.float32)
        n = len(self.landmarks)
        if n:
            centroid[:n] = pixel_coordinates(
                self._object["object_position"][:n], self.projection @ view, self.width, self.height
            )
        target = self.crosshair()
        edits = np.full((MAX_EDITS, 6), -1, np.int32)
        recent = self.edits[-MAX_EDITS:]
        if recent:
            edits[: len(recent)] = recent
        state = {
            **{key: value.copy() for key, value in self._object.items()},
            "object_centroid": centroid,
            "object_pixels": counts,
            "object_visible": counts > 0,
            "camera_view": view.astype(np.float32),
            "camera_projection": self.projection.astype(np.float32),
            "camera_position": eye.astype(np.float32),
            "player_position": self.position.astype(np.float32),
            "player_velocity": self.velocity.astype(np.float32),
            "player_look": np.array([self.yaw, self.pitch], np.float32),
            "player_on_ground": np.bool_(self.on_ground),
            "selected_block": np.uint8(self.selected),
            "target_block": np.array(target[1] if target else (-1, -1, -1), np.int32),
            "block_type": block,
            "edits": edits,
            "edit_count": np.int32(len(self.edits)),
            "inventory": self.inventory.copy(),
        }
        info = ground_truth_info(self._caption, self.episode_split, self.episode_params, state, segmentation, depth)
        return frame.copy(), info


def pixel_coordinates(points: np.ndarray, view_projection: np.ndarray, width: int, height: int) -> np.ndarray:
    """World points (K, 3) -> (column, row) with pixel centres at integers, as the ray caster samples."""
    clip = np.c_[points, np.ones(len(points))] @ view_projection.T  # (K, 4)
    w = clip[:, 3:4]
    ndc = clip[:, :2] / np.where(np.abs(w) < 1e-9, 1e-9, w)  # a point on the eye's plane has no pixel
    return np.stack([(ndc[:, 0] + 1) * (width / 2) - 0.5, (1 - ndc[:, 1]) * (height / 2) - 0.5], axis=1)
