"""The learned world as a Gymnasium env: ``WorldModelEnv`` (one world) and ``WorldModelVectorEnv`` (N, batched).

Both are registered as ``worldsim/WorldModel-v0``::

    env = gymnasium.make("worldsim/WorldModel-v0", checkpoint="runs/default/model.pt")
    envs = gymnasium.make_vec("worldsim/WorldModel-v0", num_envs=64, checkpoint="runs/default/model.pt")

Each env wraps a ``WorldBatch`` (one row, or ``num_envs``) on a ``WorldModel``, so the vector env
steps all sub-envs with one batched pass per denoising step (not N processes), and envs given the
same ``WorldModel`` share its weights. numpy <-> torch and HWC <-> CHW conversion happen once, in
``WorldModel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from worldsim.envs.contexts import ContextSource
from worldsim.spaces import check_action
from worldsim.world_batch import StepOutput, WorldBatch
from worldsim.world_model import SamplingLike, WorldModel

OBSERVATIONS = ("rgb", "latent", "both")


class _WorldModelBase:
    """What the single and the vector env share: the model, its batch, the spaces and the context source."""

    def _setup(
        self,
        checkpoint: Union[str, Path, WorldModel],
        observation: str,
        horizon: int,
        context: str,
        context_frames: Optional[int],
        context_policy: str,
        dataset: Optional[str],
        text: Optional[str],
        sampling: SamplingLike,
        device: Optional[str],
        env_kwargs: Optional[dict[str, Any]],
    ) -> None:
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation={observation!r} is not one of {OBSERVATIONS}")
        if horizon < 1:
            raise ValueError(f"horizon={horizon}: episodes need at least 1 step")
        self.model = (
            checkpoint if isinstance(checkpoint, WorldModel) else WorldModel.from_checkpoint(checkpoint, device)
        )
        if self.model.action_space is None:
            raise ValueError("the checkpoint records no action space: it cannot be stepped as an env")
        self.batch = WorldBatch(self.model, sampling)
        self.observation, self.horizon = observation, int(horizon)
        self.source = ContextSource(
            self.model,
            context,
            self.batch.window if context_frames is None else context_frames,
            context_policy,
            dataset,
            text,
            env_kwargs,
        )
        self._decode = observation != "latent"
        H, W, _ = self.model.frame_shape
        rgb = spaces.Box(0, 255, (H, W, 3), np.uint8)
        latent = spaces.Box(-np.inf, np.inf, self.model.latent_shape, np.float32)
        self._single_observation_space = {
            "rgb": rgb,
            "latent": latent,
            "both": spaces.Dict({"rgb": rgb, "latent": latent}),
        }[observation]
        self._single_action_space = self.model.action_space

    def _observations(self, out: StepOutput) -> Any:
        latent = out.latents.float().cpu().numpy() if self.observation != "rgb" else None
        if self.observation == "rgb":
            return out.frames
        if self.observation == "latent":
            return latent
        return {"rgb": out.frames, "latent": latent}

    def _seed_stream(self, rng: np.random.Generator) -> int:
        return int(rng.integers(2**63 - 1))


class WorldModelEnv(_WorldModelBase, gymnasium.Env):
    """A trained worldsim model stepped like the world it learned.

    ## Description
    Each step samples the next latent frame with the flow sampler, conditioned on the frames so far
    (a KV cache of at most ``window`` of them), the action and the episode's caption, then decodes
    it to RGB. Reward and termination come from the model's heads. Built from an exported model
    file (``<run>/model.pt`` of ``worldsim train``) or a ``WorldModel`` (whose weights it shares).

    ## Action Space
    The action space of the world the model was trained on (e.g. ``Box(-1, 1, (2,), float32)`` for
    Push). Actions are checked by the rule of every worldsim env (``worldsim.spaces.check_action``:
    integer or real numbers of the space's shape, finite, within bounds); others raise
    ``ValueError`` naming the action and the rule; nothing is clipped or cast silently.

    ## Observation Space
    ``observation="rgb"``: ``Box(0, 255, (H, W, 3), uint8)``, the decoded frame (after a reset: the
    last real context frame), decoded as the sampling says (residually, keeping real pixels the
    model leaves unchanged: ``SamplingConfig.residual`` and ``min_change``). ``"latent"``:
    ``Box(-inf, inf, (C, h, w), float32)``, the normalized latent frame (no decoding: the fastest).
    ``"both"``: ``Dict(rgb=..., latent=...)``.

    ## Rewards
    The reward head's prediction for the transition into the new frame.

    ## Starting State
    ``reset(seed=..., options=...)`` writes ``context_frames`` frames into the model: recorded from
    the real env (``context="env"``: the checkpoint's env id and kwargs, updated by ``env_kwargs``,
    rolled by ``context_policy``), cut from a dataset episode (``context="dataset"`` or
    ``options={"dataset": path, "episode": i, "start": t}``), or imagined from a caption alone
    (``context="text"`` or ``options={"text": "a red ball ..."}``: the model generates the frames).
    All randomness (env seeds, episode picks, sampling noise) follows from the reset seed.

    ## Episode End
    Terminated when the termination head's sigmoid exceeds 0.5; truncated after ``horizon`` steps.

    ## Arguments
    ``checkpoint`` (path or a ``WorldModel``), ``observation``, ``horizon`` (64), ``context``
    ("env"), ``context_frames`` (default the cache window, so contexts fill it), ``context_policy``
    ("scripted" | "zero" | "random" | module:callable), ``env_kwargs`` (for the real env of
    ``context="env"``, over the checkpoint's: e.g. ``{"start": "behind"}`` for Push), ``dataset``,
    ``text``, ``sampling`` (a ``worldsim.SamplingConfig`` or a dict of its fields, e.g.
    ``{"steps": 2, "warm_start": 0.0}``; unset fields keep the model file's default sampling),
    ``device`` (None: CUDA when present), ``render_mode`` ("rgb_array").

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        checkpoint: Union[str, Path, WorldModel],
        observation: str = "rgb",
        horizon: int = 64,
        context: str = "env",
        context_frames: Optional[int] = None,
        context_policy: str = "scripted",
        dataset: Optional[str] = None,
        text: Optional[str] = None,
        sampling: SamplingLike = None,
        device: Optional[str] = None,
        render_mode: Optional[str] = "rgb_array",
        env_kwargs: Optional[dict[str, Any]] = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r}: use 'rgb_array' or None")
        self._setup(
            checkpoint,
            observation,
            horizon,
            context,
            context_frames,
            context_policy,
            dataset,
            text,
            sampling,
            device,
            env_kwargs,
        )
        self.observation_space = self._single_observation_space
        self.action_space = self._single_action_space
        self.render_mode = render_mode
        self.elapsed = 0
        self._frame: Optional[np.ndarray] = None

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None):
        super().reset(seed=seed)
        frames, actions, caption, source = self.source.draw(self.np_random, dict(options or {}))
        out = self.batch.start(
            None if frames is None else frames[None],
            None if actions is None else actions[None],
            [caption],
            imagine=self.source.k,
            seed=self._seed_stream(self.np_random),
            decode=self._decode,
        )
        self.elapsed = 0
        self._frame = None if out.frames is None else out.frames[0]
        return self._first(self._observations(out)), {"caption": caption, "context": source}

    def step(self, action: Any):
        if self.batch.cache is None:
            raise RuntimeError("step() before reset(): call reset() first")
        action = check_action(self.action_space, action)
        out = self.batch.step(action[None], decode=self._decode)
        self.elapsed += 1
        self._frame = None if out.frames is None else out.frames[0]
        info = {"termination_probability": float(out.termination_probability[0])}
        return (
            self._first(self._observations(out)),
            float(out.reward[0]),
            bool(out.terminated[0]),
            self.elapsed >= self.horizon,
            info,
        )

    def _first(self, observation: Any) -> Any:
        if isinstance(observation, dict):
            return {key: value[0] for key, value in observation.items()}
        return observation[0]

    def render(self) -> Optional[np.ndarray]:
        if self.render_mode is None:
            return None
        if self._frame is None:
            if self.batch.latents is None:
                raise RuntimeError("render() before reset(): call reset() first")
            self._frame = self.batch.frames()[0]
        return self._frame.copy()

    def close(self) -> None:
        self.source.close()
        super().close()


class WorldModelVectorEnv(_WorldModelBase, VectorEnv):
    """``num_envs`` copies of ``WorldModelEnv`` run as one batch: one model pass per denoising step for all.

    Takes the arguments of ``WorldModelEnv`` plus ``num_envs``. Autoreset follows Gymnasium's
    default ``AutoresetMode.NEXT_STEP``: the step after a sub-env terminates or truncates returns
    its first observation of a new episode (reward 0, not terminated or truncated) and ignores its
    action. ``reset(seed=s)`` seeds the whole batch from ``s`` (sub-env contexts, sampling noise);
    ``options={"reset_mask": mask}`` restarts only the masked sub-envs. Runs on CUDA when present.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int,
        checkpoint: Union[str, Path, WorldModel],
        observation: str = "rgb",
        horizon: int = 64,
        context: str = "env",
        context_frames: Optional[int] = None,
        context_policy: str = "scripted",
        dataset: Optional[str] = None,
        text: Optional[str] = None,
        sampling: SamplingLike = None,
        device: Optional[str] = None,
        render_mode: Optional[str] = "rgb_array",
        env_kwargs: Optional[dict[str, Any]] = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs={num_envs}: run at least 1 sub-env")
        self._setup(
            checkpoint,
            observation,
            horizon,
            context,
            context_frames,
            context_policy,
            dataset,
            text,
            sampling,
            device,
            env_kwargs,
        )
        self.num_envs = int(num_envs)
        self.single_observation_space = self._single_observation_space
        self.single_action_space = self._single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.render_mode = render_mode
        self.elapsed = np.zeros(self.num_envs, np.int64)
        self._autoreset = np.zeros(self.num_envs, bool)
        self._frames: Optional[np.ndarray] = None

    def _draw(self, count: int, options: dict[str, Any]):
        drawn = [self.source.draw(self.np_random, dict(options)) for _ in range(count)]
        if any(frames is None for frames, *_ in drawn):  # one source per reset call: all text or none
            return None, None, [caption for _, _, caption, _ in drawn]
        frames = np.stack([frames for frames, *_ in drawn])
        actions = np.stack([actions for _, actions, *_ in drawn])
        return frames, actions, [caption for _, _, caption, _ in drawn]

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict[str, Any]] = None):
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise ValueError(
                f"reset(seed={seed!r}): this vector env seeds the whole batch from one int (its sub-envs "
                "share one batched model pass and one noise stream): pass reset(seed=<int>)"
            )
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if mask is not None and (
            not isinstance(mask, np.ndarray) or mask.dtype != bool or mask.shape != (self.num_envs,)
        ):
            raise ValueError(f"options['reset_mask'] must be a bool numpy array of shape ({self.num_envs},)")
        if mask is not None and self.batch.cache is not None and not mask.all():
            if seed is not None:
                raise ValueError("reset(seed=...) seeds the whole batch: reset without reset_mask to reseed")
            out = self._restart(mask, options)
            return self._observations(out), {}
        if seed is not None or self._np_random is None:
            self._np_random, self._np_random_seed = seeding.np_random(seed)
        frames, actions, captions = self._draw(self.num_envs, options)
        out = self.batch.start(
            frames,
            actions,
            captions,
            imagine=self.source.k,
            seed=self._seed_stream(self.np_random),
            decode=self._decode,
        )
        self.elapsed[:] = 0
        self._autoreset[:] = False
        self._frames = out.frames
        return self._observations(out), {}

    def _restart(self, rows: np.ndarray, options: dict[str, Any]) -> StepOutput:
        """Restart the sub-envs of the bool mask ``rows``; returns the whole batch's latest frames."""
        frames, actions, captions = self._draw(int(rows.sum()), options)
        first = self.batch.restart(rows, frames, actions, captions, imagine=self.source.k, decode=self._decode)
        self.elapsed[rows] = 0
        self._autoreset[rows] = False
        if self._frames is not None and first.frames is not None:
            self._frames = self._frames.copy()
            self._frames[rows] = first.frames
        else:
            self._frames = None
        return StepOutput(
            self._frames,
            self.batch.latents,
            np.zeros(self.num_envs, np.float32),
            np.zeros(self.num_envs, bool),
            np.zeros(self.num_envs, np.float32),
        )

    def step(self, actions: Any):
        if self.batch.cache is None:
            raise RuntimeError("step() before reset(): call reset() first")
        actions = check_action(
            self.single_action_space, actions, "actions (one row per sub-env)", batch_shape=(self.num_envs,)
        )
        out = self.batch.step(actions, decode=self._decode)
        self._frames = out.frames
        self.elapsed += 1
        rewards = out.reward.astype(np.float64)
        terminated = out.terminated.copy()
        truncated = self.elapsed >= self.horizon
        if self._autoreset.any():  # NEXT_STEP: these return a new episode's first frame instead
            rows = self._autoreset.copy()
            out = self._restart(rows, {})
            rewards[rows], terminated[rows], truncated[rows] = 0.0, False, False
        self._autoreset = terminated | truncated
        return self._observations(out), rewards, terminated, truncated, {}

    def render(self) -> Optional[tuple[np.ndarray, ...]]:
        if self.render_mode is None:
            return None
        if self._frames is None:
            if self.batch.latents is None:
                raise RuntimeError("render() before reset(): call reset() first")
            self._frames = self.batch.frames()
        return tuple(frame.copy() for frame in self._frames)

    def close_extras(self, **kwargs: Any) -> None:
        self.source.close()
