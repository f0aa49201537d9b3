"""Where a model env's episode starts: frames recorded from the real world, a dataset episode, or a caption.

The data layer is imported when a source is first drawn from, so a model env that starts from
text never loads PyBullet or a dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from worldsim.envs.policy import ZeroPolicy
from worldsim.world_model import WorldModel

CONTEXTS = ("env", "dataset", "text")
RESET_OPTIONS = ("dataset", "episode", "start", "text")


class ContextSource:
    """Where a reset's context comes from: the real world, a dataset episode, or a caption.

    ``draw(rng, options)`` returns (frames (k, H, W, 3) uint8 or None for text, actions (k - 1, *A)
    or None, caption, source name).
    """

    def __init__(
        self,
        model: WorldModel,
        context: str,
        context_frames: int,
        context_policy: str,
        dataset: Optional[Union[str, Path]],
        text: Optional[str],
        env_kwargs: Optional[dict[str, Any]] = None,
    ) -> None:
        if context not in CONTEXTS:
            raise ValueError(f"context={context!r} is not one of {CONTEXTS}")
        if context_frames < 1:
            raise ValueError(f"context_frames={context_frames}: a reset needs at least 1 frame")
        if context == "dataset" and dataset is None:
            raise ValueError("context='dataset' needs dataset=path/to/episodes (or options={'dataset': path} at reset)")
        if context == "text" and not text:
            raise ValueError("context='text' needs text='a caption' (or options={'text': ...} at reset)")
        if context == "env":
            model.real_env_id("use context='dataset' or 'text'")  # refused now, not at the first reset
        self.model, self.context, self.k = model, context, int(context_frames)
        self.context_policy, self.dataset, self.text = context_policy, dataset, text
        self.env_kwargs = {**model.env_kwargs, **dict(env_kwargs or {})}
        self._recorder = None
        self._datasets: dict[str, Any] = {}

    def draw(self, rng: np.random.Generator, options: dict[str, Any]):
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset options {unknown}: use {list(RESET_OPTIONS)}")
        if "dataset" in options or (self.context == "dataset" and "text" not in options):
            return self._from_dataset(rng, options)
        if "text" in options or self.context == "text":
            return None, None, str(options.get("text", self.text)), "text"
        return self._from_env(rng)

    def _from_env(self, rng: np.random.Generator):
        from worldsim.data.collect import CollectConfig, make_env
        from worldsim.data.policies import make_policy
        from worldsim.data.recorder import EpisodeRecorder

        if self._recorder is None:
            env = make_env(CollectConfig(env=self.model.real_env_id(), env_kwargs=self.env_kwargs))
            policy = (
                ZeroPolicy(env.action_space) if self.context_policy == "zero" else make_policy(self.context_policy, env)
            )
            self._recorder = EpisodeRecorder(
                env,
                policy,
                frame_size=tuple(self.model.frame_shape[:2]),
                max_steps=max(self.k - 1, 1),
                record_images=False,
                env_id=self.model.env_id,
            )
        for _ in range(16):  # an episode that ends before k frames is redrawn
            episode = self._recorder.record(int(rng.integers(2**31 - 1)))
            if len(episode.frames) >= self.k:
                return episode.frames[: self.k], episode.actions[: self.k - 1], episode.caption, "env"
        raise RuntimeError(f"{self.model.env_id} episodes end before {self.k} frames: lower context_frames")

    def _from_dataset(self, rng: np.random.Generator, options: dict[str, Any]):
        from worldsim.data.dataset import EpisodeDataset

        root = str(options.get("dataset", self.dataset))
        if root not in self._datasets:
            self._datasets[root] = EpisodeDataset(root, verify=False)
        data = self._datasets[root]
        index = int(options["episode"]) if "episode" in options else int(rng.integers(len(data)))
        frames_in_episode = data.frame_count(index)
        if frames_in_episode < self.k:
            raise ValueError(
                f"episode {index} of {root} has {frames_in_episode} frames, fewer than context_frames={self.k}"
            )
        last_start = frames_in_episode - self.k
        start = int(options["start"]) if "start" in options else int(rng.integers(last_start + 1))
        clip = data.clip(index, start, self.k, names=["frames", "actions"])
        frames = np.array(clip["frames"])
        if frames.shape[1:] != tuple(self.model.frame_shape):
            raise ValueError(f"{root} holds {frames.shape[1:]} frames; the model reads {self.model.frame_shape}")
        return frames, np.array(clip["actions"][: self.k - 1]), data.caption(index), "dataset"

    def close(self) -> None:
        if self._recorder is not None:
            self._recorder.env.close()
            self._recorder = None
