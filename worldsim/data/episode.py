"""One recorded episode in memory: the unit that collection writes and the reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


@dataclass
class Episode:
    """An episode of L steps; ``actions[t]`` is taken at ``frames[t]`` and leads to ``frames[t+1]``.

    frames: (L+1, H, W, 3) uint8, frames[0] is the reset observation.
    actions: (L, *A) float32 (Box) or int64 (Discrete, MultiDiscrete, MultiBinary).
    rewards: (L,) float32; terminated, truncated: (L,) bool.
    state: ground-truth arrays from ``info["state"]``, each (L+1, ...), one per frame.
    segmentation: (L+1, H, W) int16 and depth: (L+1, H, W) float16, when images were recorded.
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    caption: str = ""
    state: dict[str, np.ndarray] = field(default_factory=dict)
    segmentation: Optional[np.ndarray] = None
    depth: Optional[np.ndarray] = None
    seed: int = 0
    env_id: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    split: str = ""

    @property
    def length(self) -> int:
        """Number of steps L (there are L+1 frames)."""
        return len(self.actions)

    def per_frame_arrays(self) -> dict[str, np.ndarray]:
        """Arrays with one row per frame (L+1 rows), keyed by their file stem."""
        arrays = {"frames": self.frames}
        arrays.update({f"state.{key}": value for key, value in self.state.items()})
        if self.segmentation is not None:
            arrays["segmentation"] = self.segmentation
        if self.depth is not None:
            arrays["depth"] = self.depth
        return arrays

    def per_step_arrays(self) -> dict[str, np.ndarray]:
        """Arrays with one row per step (L rows), keyed by their file stem."""
        return {
            "actions": self.actions,
            "rewards": self.rewards,
            "terminated": self.terminated,
            "truncated": self.truncated,
        }

    def validate(self) -> None:
        """Raise ValueError naming the array whose shape or dtype breaks the episode layout."""
        steps = self.length
        if steps < 1:
            raise ValueError(f"episode (seed {self.seed}) has {steps} steps: it needs at least 1")
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(
                f"frames have shape {self.frames.shape} and dtype {self.frames.dtype}: they must be "
                "(L+1, H, W, 3) uint8 RGB"
            )
        for name, array in self.per_frame_arrays().items():
            if len(array) != steps + 1:
                raise ValueError(
                    f"{name} has {len(array)} rows but the episode has {steps} steps: per-frame "
                    f"arrays need L+1 = {steps + 1} rows (frame 0 is the reset observation)"
                )
        expected = {"rewards": np.float32, "terminated": np.bool_, "truncated": np.bool_}
        for name, array in self.per_step_arrays().items():
            if len(array) != steps:
                raise ValueError(
                    f"{name} has {len(array)} rows but actions have {steps}: per-step arrays need one row per action"
                )
            if name in expected and array.dtype != expected[name]:
                raise ValueError(f"{name} has dtype {array.dtype}: it must be {np.dtype(expected[name])}")
        if self.actions.dtype not in (np.float32, np.int64):
            raise ValueError(f"actions have dtype {self.actions.dtype}: store float32 (Box) or int64 (discrete spaces)")
