"""The two types every suite shares: the predictor interface and a seeded scenario.

A **predictor** is anything with ``predict(context_frames, actions, text, horizon) -> frames``:
the worldsim model, a baseline, the simulator itself, or someone else's model. Every suite hands
every predictor the same scenarios, so a report always shows a model beside its baselines.

Shapes (B scenarios in a batch, T0 context frames, H horizon, A action size):

- ``context_frames``: uint8 (B, T0, height, width, 3), the frames a predictor may look at;
- ``actions``: (B, T0 + H - 1, A) in the world's action dtype: float32 for Box worlds, int64 for
  BlockWorld's MultiDiscrete ((B, T0 + H - 1) int64 for a Discrete world), where
  ``actions[:, t]`` is taken at frame t and leads to frame t + 1, so the future frame
  ``T0 + h`` follows ``actions[:, T0 + h - 1]``; actions of the context are included so that a
  model can condition on them as it was trained to;
- ``text``: one caption per scenario (may be ignored);
- returns uint8 (B, H, height, width, 3): frames ``T0 .. T0 + H - 1``.

A predictor may also define ``supports(scenario) -> bool``; suites skip it on worlds it refuses
(a model trained on one world), and the report shows n/a there instead of a meaningless score.
One that sets ``text_to_video = True`` accepts T0 = 0 (no context frames: a world imagined from
the caption and actions alone); the conditioning suite's text probe and the text suite score only those.

A predictor that also predicts what the world pays defines ``predict_rewards`` with the same
arguments, returning a :class:`RewardPrediction`: the frames ``predict`` would give, and per future
frame the reward of the transition into it and whether the episode ends there. The reward suite
scores only predictors that have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Predictor(Protocol):
    """Predicts future frames of a world from context frames and actions."""

    name: str  # shown in tables and plots

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int) -> np.ndarray: ...


class RewardPrediction(NamedTuple):
    """What ``predict_rewards`` returns: the future frames, and what each transition into them pays."""

    frames: np.ndarray  # (B, H, height, width, 3) uint8, as predict returns them
    rewards: np.ndarray  # (B, H) float: the reward of the transition into each predicted frame
    terminated: np.ndarray  # (B, H) bool: the episode ends with the transition into that frame


@dataclass
class Scenario:
    """One seeded ground-truth episode cut into context and future, with everything evals need.

    ``frames`` holds all T0 + H frames (context then truth); ``state`` holds the world's
    ``info["state"]`` arrays stacked over the same frames, (T0 + H, ...), e.g.
    ``object_centroid`` (T0 + H, K, 2); ``actions`` is (T0 + H - 1, A). ``seed``, ``env_id``,
    ``env_kwargs`` and ``split`` let the simulator replay the episode exactly.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    seed: int
    split: str  # "id" or "ood"
    context: int  # T0
    horizon: int  # H
    frames: np.ndarray  # (T0 + H, height, width, 3) uint8
    actions: np.ndarray  # (T0 + H - 1, A)
    caption: str
    state: dict[str, np.ndarray] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        total = self.context + self.horizon
        assert self.frames.shape[0] == total, (
            f"scenario has {self.frames.shape[0]} frames, expected context {self.context} + "
            f"horizon {self.horizon} = {total}"
        )
        assert self.actions.shape[0] == total - 1, (
            f"scenario has {self.actions.shape[0]} actions, expected {total - 1} (one per transition)"
        )

    @property
    def context_frames(self) -> np.ndarray:
        return self.frames[: self.context]

    @property
    def future_frames(self) -> np.ndarray:
        return self.frames[self.context :]


def check_prediction(frames: Any, batch: int, horizon: int, frame_shape: tuple[int, ...], name: str) -> np.ndarray:
    """Validate what a predictor returned, with a message that says what was expected."""
    array = np.asarray(frames)
    expected = (batch, horizon, *frame_shape)
    if array.shape != expected or array.dtype != np.uint8:
        raise ValueError(
            f"predictor {name!r} returned {array.dtype} {tuple(array.shape)}; expected uint8 "
            f"{expected} (batch, horizon, height, width, 3)"
        )
    return array


def check_reward_prediction(
    prediction: Any, batch: int, horizon: int, frame_shape: tuple[int, ...], name: str
) -> RewardPrediction:
    """Validate what ``predict_rewards`` returned, with a message that says what was expected."""
    try:
        frames, rewards, terminated = prediction
    except (TypeError, ValueError):
        raise ValueError(
            f"predictor {name!r}: predict_rewards returned {type(prediction).__name__}; expected "
            "RewardPrediction(frames, rewards, terminated)"
        ) from None
    frames = check_prediction(frames, batch, horizon, frame_shape, name)
    rewards, terminated = np.asarray(rewards, np.float64), np.asarray(terminated)
    if rewards.shape != (batch, horizon) or terminated.shape != (batch, horizon) or terminated.dtype != bool:
        raise ValueError(
            f"predictor {name!r}: predict_rewards gave rewards {rewards.shape} and terminated {terminated.dtype} "
            f"{terminated.shape}; expected ({batch}, {horizon}) floats and ({batch}, {horizon}) bools (batch, horizon)"
        )
    return RewardPrediction(frames, rewards, terminated)
