"""``worldsim play``: drive a trained world model and watch it beside the world it learned.

The real env (the checkpoint's env id and kwargs) is reset with ``seed`` and rolled
``context_frames - 1`` steps by the policy; those frames and actions are the model's context.
From then on every action, chosen by the policy from the *real* env's observation and info, or
by the keyboard, steps the model and the real env alike, so ``<out>/play.gif`` (or ``.mp4``) shows
model | real frame by frame and ``<out>/play.json`` holds both rewards and the PSNR between them.

The model plays all ``steps``. When the real episode ends first (terminated or truncated), its
last frame stays on screen marked "ended", its reward and the PSNR are null from the next step on,
and the policy keeps reading its last observation. With ``dataset=`` there is no real env: the
context is a clip of a dataset episode (picked by ``seed``) and only the model is shown, its policy
reading the model's own frames; a checkpoint whose env id is unknown, or whose env cannot be made
here, plays only that way.

``policy=keyboard`` opens an OpenCV window (needs the GUI build of OpenCV and a display): arrows
or WASD push the first two dimensions of a Box action to +-1, digits pick a Discrete action,
space is the zero (first) action, and q or Esc quits; with no key pressed within ``1/fps`` s the
world moves on under the zero action.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator

from worldsim.checkpoint import missing_checkpoint
from worldsim.config_checks import check_at_least
from worldsim.data.policies import RandomPolicy, make_policy
from worldsim.envs.policy import Policy, ZeroPolicy
from worldsim.metrics import frame_psnr
from worldsim.sampling import SamplingConfig
from worldsim.spaces import action_codec, check_action, is_image_space
from worldsim.viz import frame_strip, title_band, write_gif, write_mp4
from worldsim.world_batch import WorldBatch
from worldsim.world_model import WorldModel

FORMATS = ("gif", "mp4")
HEADLESS_POLICIES = ("random", "scripted", "mixed")
REAL_ONLY_POLICIES = ("scripted", "mixed")
WINDOW_TITLE = "worldsim play"

#: cv2.waitKeyEx codes of the arrow keys: GTK/Qt (Linux), Windows, Cocoa (macOS).
ARROW_CODES = {
    "left": (65361, 2424832, 63234),
    "up": (65362, 2490368, 63232),
    "right": (65363, 2555904, 63235),
    "down": (65364, 2621440, 63233),
}
#: direction -> (action dimension, sign): x is the first dimension, y the second.
DIRECTIONS = {"left": (0, -1.0), "right": (0, 1.0), "up": (1, 1.0), "down": (1, -1.0)}
LETTERS = {"a": "left", "d": "right", "w": "up", "s": "down"}
QUIT_KEYS = frozenset({ord("q"), ord("Q"), 27})
SPACE_KEY = ord(" ")


@dataclass
class PlayConfig:
    checkpoint: str = "runs/default/model.pt"  # exported model file (<run>/model.pt of `worldsim train`)
    # random | scripted | mixed (scripted with random bursts) | keyboard (OpenCV window) | module:callable
    policy: str = "random"
    steps: int = 64  # model steps to play after the context (keyboard: q or Esc stops sooner)
    seed: int = 0  # seeds the real env's reset, the policy and the model's sampling noise
    out: str = "play"  # folder for play.gif or play.mp4 and play.json
    context_frames: Optional[int] = None  # real frames the model starts from; None: the model's window
    # take the context from an episode of this dataset instead (no real env beside the model)
    dataset: Optional[str] = None
    fps: int = 10  # frames per second of the video and of keyboard play
    scale: int = 4  # enlarge frames this many times (nearest neighbour) in the video and the window
    format: str = "gif"  # gif (needs Pillow) | mp4 (OpenCV, mp4v codec)
    # show the real env beside the model (false: the model alone; the real env is still scored)
    side_by_side: bool = True
    # how the model samples (sampling.steps=2 ...); unset fields: the model file's default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    device: Optional[str] = None  # cpu | cuda; None: CUDA when present

    def __post_init__(self) -> None:
        check_at_least(self, steps=1, context_frames=1, fps=1, scale=1, seed=0)


@dataclass
class PlayResult:
    video: Path  # the written play.gif or play.mp4
    log: Path  # the written play.json
    model_frames: np.ndarray  # (n + 1, H, W, 3) uint8: the last context frame, then one per step
    real_frames: Optional[np.ndarray]  # (n + 1, H, W, 3) uint8, frozen once the episode ended; None: no real env
    context_actions: np.ndarray  # (k - 1, *A): the actions between the context frames
    actions: np.ndarray  # (n, *A): the action of each step, given to the model and the real env alike
    summary: dict[str, Any]  # what play.json's "summary" holds


# -- configuration --------------------------------------------------------------------------------


def validate_config(cfg: PlayConfig) -> None:
    """Raise for settings that can never play, before loading anything."""
    checks = [
        (missing_checkpoint(cfg.checkpoint) is None, missing_checkpoint(cfg.checkpoint)),
        (
            cfg.policy in (*HEADLESS_POLICIES, "keyboard") or ":" in cfg.policy,
            f"policy={cfg.policy!r} is unknown: use random, scripted, mixed, keyboard or module:callable",
        ),
        (cfg.format in FORMATS, f"format={cfg.format!r}: use one of {list(FORMATS)}"),
        (bool(cfg.out), "out is empty: name the folder for the video, e.g. out=play"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    SamplingConfig.of(cfg.sampling)  # a bad sampling setting fails here, before anything is loaded
    if cfg.policy == "keyboard" and not gui_available():
        raise RuntimeError(
            "policy=keyboard needs an OpenCV window, and none can open here (no display, or the headless "
            "OpenCV build worldsim installs): on a desktop run `pip uninstall -y opencv-python-headless && "
            "pip install opencv-python`; headless, use policy=random, scripted or mixed"
        )


# -- keyboard -------------------------------------------------------------------------------------


def gui_available() -> bool:
    """Whether OpenCV can open a window: a GUI build of cv2 and, on Linux, a display."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False  # GTK would abort the process on a missing display rather than raise
    try:
        cv2.namedWindow(WINDOW_TITLE)
        cv2.destroyWindow(WINDOW_TITLE)
    except cv2.error:  # the headless build: "The function is not implemented"
        return False
    return True


def key_direction(key: int) -> Optional[str]:
    """ "left" | "right" | "up" | "down" for an arrow or WASD key code, else None."""
    name = key_name(key)
    return name if name in ARROW_CODES else LETTERS.get(name or "")


def key_name(key: int) -> Optional[str]:
    """The name of a ``cv2.waitKeyEx`` code in a world's ``KEYBOARD`` table: "left" for an arrow, "space", "w"."""
    for direction, codes in ARROW_CODES.items():
        if key in codes:
            return direction
    if key == SPACE_KEY:
        return "space"
    return chr(key).lower() if 0 <= key < 0x110000 else None


def world_keyboard(env_id: str, space: gymnasium.Space) -> Optional[dict[str, np.ndarray]]:
    """The key bindings a registered world declares (its class's ``KEYBOARD``: key name -> action), or None.

    Only the registered entry point's class is read, the code that registered the id; each action
    is checked against ``space`` so a table that does not fit the model fails before play starts.
    """
    if env_id not in gymnasium.registry:
        return None
    entry_point = gymnasium.spec(env_id).entry_point
    cls = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    table = getattr(cls, "KEYBOARD", None)
    if not table:
        return None
    return {name: check_action(space, action, f"{env_id}'s KEYBOARD[{name!r}]") for name, action in table.items()}


def key_action(
    key: int, space: gymnasium.Space, bindings: Optional[dict[str, np.ndarray]] = None
) -> Optional[np.ndarray]:
    """The action a key (a ``cv2.waitKeyEx`` code) stands for in ``space``, or None when it means none.

    With ``bindings`` (a world's ``KEYBOARD``), the key's binding; space, unbound, is the idle
    action: all components at their first value. Else Box: arrows/WASD set the first (left/right)
    or second (down/up) dimension to -1 or +1 and the rest to 0; space is all zeros; values are
    clipped into the space's bounds. Discrete: digit d is action ``start + d`` (when d < n); space is
    ``start``. Quit keys are the caller's business.
    """
    if bindings is not None:
        name = key_name(key)
        if name in bindings:
            return bindings[name].copy()
        return idle_action(space) if key == SPACE_KEY else None
    if isinstance(space, spaces.Box):
        action = np.zeros(space.shape, np.float64)
        if key != SPACE_KEY:
            direction = key_direction(key)
            if direction is None:
                return None
            dimension, sign = DIRECTIONS[direction]
            if dimension >= action.size:
                return None
            action.reshape(-1)[dimension] = sign
        return np.clip(action, space.low, space.high).astype(space.dtype)
    if isinstance(space, spaces.Discrete):
        if key == SPACE_KEY:
            return np.array(space.start, np.int64)
        digit = key - ord("0")
        return np.array(space.start + digit, np.int64) if 0 <= digit <= 9 and digit < space.n else None
    raise ValueError(
        f"policy=keyboard drives Box and Discrete actions, and worlds that declare a KEYBOARD; this model "
        f"takes {space}: use policy=random or module:callable"
    )


def idle_action(space: gymnasium.Space) -> np.ndarray:
    """Every component at its first value: the no-op of a world that binds keys (MultiDiscrete's start)."""
    if isinstance(space, spaces.MultiDiscrete):
        return space.start.astype(space.dtype).copy()
    if isinstance(space, spaces.Box):
        return np.clip(np.zeros(space.shape), space.low, space.high).astype(space.dtype)
    return np.zeros(space.shape, space.dtype)


def key_help(space: gymnasium.Space, bindings: Optional[dict[str, np.ndarray]] = None) -> str:
    if bindings is not None:
        return f"keys: {', '.join(sorted(bindings))}; no key is the idle action, q or Esc quits"
    if isinstance(space, spaces.Discrete):
        return f"keys: 0-{min(space.n, 10) - 1} pick an action, space the first, q or Esc quits"
    return "keys: arrows or WASD move, space (or no key) is the zero action, q or Esc quits"


class KeyboardController:
    """An OpenCV window showing the play; the key pressed within ``1/fps`` s is the next action."""

    def __init__(self, space: gymnasium.Space, fps: int, bindings: Optional[dict[str, np.ndarray]] = None) -> None:
        # key_action also refuses spaces the keyboard cannot drive; a world's bindings drive any
        self.idle = idle_action(space) if bindings is not None else key_action(SPACE_KEY, space)
        self.space, self.bindings, self.delay_ms = space, bindings, max(1, round(1000 / fps))
        cv2.namedWindow(WINDOW_TITLE, cv2.WINDOW_AUTOSIZE)
        print(f"play: {key_help(space, bindings)}", flush=True)

    def __call__(self, picture: np.ndarray) -> Optional[np.ndarray]:
        """Show ``picture`` (RGB) and return the chosen action, or None when the player quits."""
        cv2.imshow(WINDOW_TITLE, cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        key = cv2.waitKeyEx(self.delay_ms)
        if key in QUIT_KEYS or cv2.getWindowProperty(WINDOW_TITLE, cv2.WND_PROP_VISIBLE) < 1:
            return None
        action = key_action(key, self.space, self.bindings) if key != -1 else None
        return self.idle.copy() if action is None else action

    def close(self) -> None:
        cv2.destroyWindow(WINDOW_TITLE)


# -- the real world -------------------------------------------------------------------------------


class RealWorld:
    """The ground-truth env a model learned, stepped with the model's actions, seen at the model's frame size."""

    def __init__(self, model: WorldModel) -> None:
        from worldsim.data.collect import CollectConfig, make_env

        env_id = model.real_env_id("pass dataset=path/to/episodes to start the model from a dataset episode")
        try:
            self.env = make_env(CollectConfig(env=env_id, env_kwargs=model.env_kwargs))
        except ValueError as error:
            raise ValueError(f"{error}; or pass dataset=path/to/episodes to play the model alone") from None
        if self.env.action_space.shape != model.action_space.shape or type(self.env.action_space) is not type(
            model.action_space
        ):
            self.env.close()
            raise ValueError(
                f"{model.env_id} takes actions of {self.env.action_space} but the model "
                f"{model.action_space}: the checkpoint was trained on another version of the env"
            )
        self.frame_shape = model.frame_shape
        self.from_observation = is_image_space(self.env.observation_space)
        self.to_env = action_codec(self.env.action_space)[1]
        self.observation: Any = None
        self.info: dict[str, Any] = {}
        self.frame: Optional[np.ndarray] = None
        self.ended = False

    def _read_frame(self) -> np.ndarray:
        frame = np.array(self.observation if self.from_observation else self.env.render(), np.uint8, order="C")
        height, width = self.frame_shape[:2]
        if frame.shape[:2] != (height, width):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        return frame

    def reset(self, seed: int) -> None:
        self.observation, self.info = self.env.reset(seed=seed)
        self.frame, self.ended = self._read_frame(), False

    def step(self, action: np.ndarray) -> float:
        """Step with a stored-form action; returns the reward."""
        self.observation, reward, terminated, truncated, self.info = self.env.step(self.to_env(action))
        self.frame, self.ended = self._read_frame(), bool(terminated or truncated)
        return float(reward)

    def close(self) -> None:
        self.env.close()


class _ActionSpaceOnly:
    """What ``make_policy`` reads of an env, for a model played without its real env."""

    spec = None

    def __init__(self, action_space: gymnasium.Space) -> None:
        self.action_space = action_space

    @property
    def unwrapped(self) -> "_ActionSpaceOnly":
        return self


def headless_policy(spec: str, model: WorldModel, real: Optional[RealWorld]) -> Policy:
    """The policy ``spec`` names; without a real env it reads the model's own frames and needs no env state."""
    if real is not None:
        return make_policy(spec, real.env)
    if spec in REAL_ONLY_POLICIES:
        raise ValueError(
            f"policy={spec} reads the real env's state, and with dataset= there is none: use "
            "policy=random, keyboard or module:callable"
        )
    if spec == "random":
        return RandomPolicy(model.action_space)
    return make_policy(spec, _ActionSpaceOnly(model.action_space))


def env_context(
    real: RealWorld, policy: Policy, frames: int, seed: int, to_stored: Callable[[Any], np.ndarray]
) -> tuple[np.ndarray, np.ndarray, str]:
    """(frames (k, H, W, 3), actions (k - 1, *A), caption) of the real env reset with ``seed``."""
    real.reset(seed)
    caption = str(real.info.get("caption", ""))
    seen, actions = [real.frame], []
    for step in range(frames - 1):
        chosen = policy(real.observation, real.info)
        action = to_stored(check_action(real.env.action_space, chosen, f"the context action at step {step}"))
        real.step(action)
        seen.append(real.frame)
        actions.append(action)
        if real.ended:
            raise RuntimeError(
                f"the {real.env.spec.id if real.env.spec else 'real'} episode of seed {seed} ended "
                f"after {len(seen)} frames, within context_frames={frames}: lower context_frames "
                "or pick another seed"
            )
    no_actions = np.zeros((0, *real.env.action_space.shape), np.float32)
    return np.stack(seen), np.stack(actions) if actions else no_actions, caption


def dataset_context(model: WorldModel, dataset: str, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """A random clip of ``frames`` frames (picked by ``seed``) of a dataset episode."""
    from worldsim.envs.world_model import ContextSource

    source = ContextSource(model, "dataset", frames, "random", dataset, None)
    clip, actions, caption, _ = source.draw(np.random.default_rng(seed), {})
    return clip, actions, caption


# -- pictures and video ---------------------------------------------------------------------------


def compose(
    model_frame: np.ndarray, real_frame: Optional[np.ndarray], step: int, scale: int, real_ended: bool = False
) -> np.ndarray:
    """One video frame: the model (and the real env beside it) enlarged ``scale`` times under titles."""
    panels = np.stack([model_frame] if real_frame is None else [model_frame, real_frame])
    strip = frame_strip(panels, count=len(panels), stride=1, scale=scale)
    titles = [f"model t={step}"] + ([] if real_frame is None else ["real (ended)" if real_ended else "real"])
    band = title_band(strip.shape[1], model_frame.shape[1] * scale, titles, scale)
    return np.concatenate([band, strip], axis=0)


# -- play -----------------------------------------------------------------------------------------


def play(cfg: PlayConfig) -> PlayResult:
    """Play the model for ``cfg.steps`` steps; write the video and play.json; print where they are."""
    validate_config(cfg)
    model = WorldModel.from_checkpoint(cfg.checkpoint, device=cfg.device)
    if model.action_space is None:
        raise ValueError(f"{cfg.checkpoint} records no action space: there are no actions to play it with")
    real = None if cfg.dataset else RealWorld(model)
    keyboard = None
    try:
        if cfg.policy == "keyboard":
            try:
                bindings = world_keyboard(model.real_env_id(), model.action_space)
            except ValueError:  # no registered world (a dataset context): the generic keys
                bindings = None
            keyboard = KeyboardController(model.action_space, cfg.fps, bindings)
        result = _play(cfg, model, keyboard, real)
    finally:
        if keyboard is not None:
            keyboard.close()
        if real is not None:
            real.close()
    print(
        f"play: {result.video} ({len(result.model_frames)} frames, "
        f"{'model | real' if result.real_frames is not None and cfg.side_by_side else 'model'}), {result.log}"
    )
    print(f"play: {summary_line(result.summary, cfg, model)}", flush=True)
    return result


def _play(
    cfg: PlayConfig, model: WorldModel, keyboard: Optional[KeyboardController], real: Optional[RealWorld]
) -> PlayResult:
    batch = WorldBatch(model, cfg.sampling)
    space, frames = model.action_space, cfg.context_frames or batch.window
    to_stored = action_codec(space)[0]
    policy: Policy = ZeroPolicy(space) if keyboard is not None else headless_policy(cfg.policy, model, real)
    policy.reset(cfg.seed)
    if real is not None:
        context, context_actions, caption = env_context(real, policy, frames, cfg.seed, to_stored)
    else:
        context, context_actions, caption = dataset_context(model, cfg.dataset, frames, cfg.seed)
    first = batch.start(context[None], context_actions[None] if frames > 1 else None, caption, seed=cfg.seed)

    shown_real = real is not None and cfg.side_by_side
    model_frames, real_frames = [first.frames[0]], [context[-1]]
    steps: list[dict[str, Any]] = []
    ended_at: Optional[int] = None
    for step in range(1, cfg.steps + 1):
        if keyboard is not None:
            chosen = keyboard(
                compose(
                    model_frames[-1],
                    real_frames[-1] if shown_real else None,
                    step - 1,
                    cfg.scale,
                    ended_at is not None and step - 1 > ended_at,
                )
            )
            if chosen is None:
                break
        elif real is not None:
            chosen = policy(real.observation, real.info)
        else:
            chosen = policy(model_frames[-1], {"caption": caption})
        action = to_stored(check_action(space, chosen, f"the action of policy={cfg.policy} at step {step}"))
        out = batch.step(action[None])
        model_frames.append(out.frames[0])
        real_reward = None
        if real is not None and not real.ended:
            real_reward = real.step(action)
            ended_at = step if real.ended else None
        if real is not None:
            real_frames.append(real.frame)
        steps.append(
            {
                "step": step,
                "action": action,
                "model_reward": float(out.reward[0]),
                "model_termination_probability": float(out.termination_probability[0]),
                "real_reward": real_reward,
                "psnr_db": None,
            }
        )

    model_stack = np.stack(model_frames)
    real_stack = np.stack(real_frames) if real is not None else None
    compared = sum(s["real_reward"] is not None for s in steps)
    if compared:
        psnr = frame_psnr(model_stack[1 : compared + 1], real_stack[1 : compared + 1])  # (compared,)
        for s, value in zip(steps, psnr.tolist()):
            s["psnr_db"] = value
    actions = np.stack([s["action"] for s in steps]) if steps else np.zeros((0, *space.shape), space.dtype)
    result = PlayResult(
        Path(cfg.out) / f"play.{cfg.format}",
        Path(cfg.out) / "play.json",
        model_stack,
        real_stack,
        context_actions,
        actions,
        summarize(steps, ended_at),
    )
    save(cfg, model, result, steps, caption, frames, batch.sampling)
    return result


def summarize(steps: list[dict[str, Any]], ended_at: Optional[int]) -> dict[str, Any]:
    """Totals of the per-step records; "compared" covers the steps both worlds played."""
    compared = [s for s in steps if s["real_reward"] is not None]
    return {
        "steps": len(steps),
        "compared_steps": len(compared),
        "mean_psnr_db": float(np.mean([s["psnr_db"] for s in compared])) if compared else None,
        "model_return": float(sum(s["model_reward"] for s in steps)),
        "model_return_compared": float(sum(s["model_reward"] for s in compared)) if compared else None,
        "real_return": float(sum(s["real_reward"] for s in compared)) if compared else None,
        "real_ended_at": ended_at,
    }


def save(
    cfg: PlayConfig,
    model: WorldModel,
    result: PlayResult,
    steps: list[dict[str, Any]],
    caption: str,
    context_frames: int,
    sampling: SamplingConfig,
) -> None:
    """Write ``result.video`` (model | real per frame) and ``result.log`` (play.json)."""
    result.video.parent.mkdir(parents=True, exist_ok=True)
    ended_at = result.summary["real_ended_at"]
    shown_real = result.real_frames is not None and cfg.side_by_side
    pictures = [
        compose(
            frame, result.real_frames[t] if shown_real else None, t, cfg.scale, ended_at is not None and t > ended_at
        )
        for t, frame in enumerate(result.model_frames)
    ]
    (write_gif if cfg.format == "gif" else write_mp4)(result.video, pictures, cfg.fps)
    record = {
        "checkpoint": str(cfg.checkpoint),
        "env_id": model.env_id,
        "env_kwargs": model.env_kwargs,
        "context": "env" if result.real_frames is not None else "dataset",
        "dataset": cfg.dataset,
        "caption": caption,
        "policy": cfg.policy,
        "seed": cfg.seed,
        "context_frames": context_frames,
        "sampling": sampling.given(),
        "context_actions": result.context_actions.tolist(),
        "video": result.video.name,
        "summary": result.summary,
        "per_step": [{**s, "action": s["action"].tolist()} for s in steps],
    }
    result.log.write_text(json.dumps(record, indent=2) + "\n")


def summary_line(summary: dict[str, Any], cfg: PlayConfig, model: WorldModel) -> str:
    head = f"{summary['steps']} steps of {model.env_id or 'the model'} with policy={cfg.policy}"
    if cfg.dataset:
        return f"{head}: model reward {summary['model_return']:.3f} (no real env beside it: context from {cfg.dataset})"
    if not summary["compared_steps"]:
        return f"{head}: quit before the first step"
    ended = "" if summary["real_ended_at"] is None else f", real episode ended at step {summary['real_ended_at']}"
    return (
        f"{head}: PSNR model vs real {summary['mean_psnr_db']:.2f} dB (mean of {summary['compared_steps']} steps); "
        f"reward model {summary['model_return_compared']:.3f} vs real {summary['real_return']:.3f}{ended}"
    )
