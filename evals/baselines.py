"""Reference predictors every report shows beside a model, and loading external predictors.

- ``copy_last``: repeats the last context frame (the world stops, so it pays nothing and never
  ends); the floor of the normalized scores.
- ``optical_flow``: Farneback dense flow between the last two context frames, the moving pixels
  splatted forward h times the flow (constant velocity, no gravity, no contacts) onto the
  last frame with the moving pixels inpainted away.
- ``truth``: the simulator replays the scenario: zero error, the upper bound.
- ``perturbed_truth``: the simulator replays with a tiny nudge of every object's state after
  the context; its error is the physical variance, the 1 of the normalized scores.
- ``random_episode``: the simulator plays another episode of the same world and split (another
  seed, the same actions), ignoring context and caption: the floor of the text suite.

Truth predictors need the scenario's seed and env id, not only its frames: they implement
``prepare(scenarios)``, which :func:`worldsim.evals.scenarios.predict_scenarios` calls before
each ``predict``.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from gymnasium import spaces

from worldsim.evals.protocol import Predictor, RewardPrediction, Scenario
from worldsim.evals.scenarios import make_env, replay_rewards
from worldsim.targets import load_target


class CopyLastPredictor:
    """Every future frame is the last context frame."""

    name = "copy_last"

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int) -> np.ndarray:
        last = context_frames[:, -1:]  # (B, 1, h, w, 3)
        return np.repeat(last, horizon, axis=1)

    def predict_rewards(
        self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int
    ) -> RewardPrediction:
        """A world that stops pays nothing and never ends: the floor a reward head must beat.

        Zero is what Push pays when nothing moves (it pays the target's progress), so it is the
        consistent reward of this prediction, not an arbitrary constant.
        """
        B = len(context_frames)
        return RewardPrediction(
            self.predict(context_frames, actions, text, horizon), np.zeros((B, horizon)), np.zeros((B, horizon), bool)
        )


class OpticalFlowPredictor:
    """Extrapolates the last frame with the dense flow between the last two context frames.

    Forward splatting, not backward warping: backward warping samples the flow at the target
    pixel, which for an object moving over a still background is the background's zero flow, so
    nothing would move. ``min_flow``: pixels moving less (px/frame) are background.
    """

    name = "optical_flow"

    def __init__(self, min_flow: float = 0.25) -> None:
        self.min_flow = min_flow

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int) -> np.ndarray:
        if context_frames.shape[1] < 2:
            return CopyLastPredictor().predict(context_frames, actions, text, horizon)
        return np.stack([self.extrapolate(clip[-2], clip[-1], horizon) for clip in context_frames])

    def flow(self, previous: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Flow (h, w, 2) in px/frame (dx, dy) of each pixel of ``previous`` to ``last``."""
        a = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(last, cv2.COLOR_RGB2GRAY)
        # Small windows and two levels suit 64 px frames with 5-20 px objects.
        return cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 2, 7, 5, 5, 1.1, 0)

    def extrapolate(self, previous: np.ndarray, last: np.ndarray, horizon: int) -> np.ndarray:
        """(horizon, h, w, 3): ``last`` with its moving pixels carried ``k`` flows further at step k.

        The flow found at a pixel of ``last`` is the motion that brought it there, so moving
        pixels of ``last`` keep going with it.
        """
        height, width = last.shape[:2]
        flow = self.flow(previous, last)
        moving = np.linalg.norm(flow, axis=-1) > self.min_flow
        if not moving.any():
            return np.repeat(last[None], horizon, axis=0)
        hole = cv2.dilate(moving.astype(np.uint8), np.ones((3, 3), np.uint8))
        background = cv2.inpaint(last, hole, 3, cv2.INPAINT_TELEA)
        rows, cols = np.nonzero(moving)
        colors = last[rows, cols]
        out = np.empty((horizon, height, width, 3), np.uint8)
        for step in range(1, horizon + 1):
            x = np.rint(cols + step * flow[rows, cols, 0]).astype(np.int64)
            y = np.rint(rows + step * flow[rows, cols, 1]).astype(np.int64)
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            frame = background.copy()
            frame[y[inside], x[inside]] = colors[inside]
            out[step - 1] = frame
        return out


class GroundTruthPredictor:
    """The simulator replays each prepared scenario from its seed and actions (upper bound).

    Checks that the context it is asked about is the prepared scenarios' context, so a suite that
    forgets ``prepare`` fails loudly instead of scoring the wrong episodes.
    """

    name = "truth"
    text_to_video = True  # with no context frames it replays the whole episode

    def __init__(self) -> None:
        self.scenarios: list[Scenario] = []
        self.envs: dict[tuple[str, str], Any] = {}

    def prepare(self, scenarios: list[Scenario]) -> None:
        self.scenarios = list(scenarios)

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int) -> np.ndarray:
        return self.predict_rewards(context_frames, actions, text, horizon).frames

    def predict_rewards(
        self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int
    ) -> RewardPrediction:
        """The replayed frames with what the simulator paid for each step: the real rewards exactly."""
        if len(self.scenarios) != len(context_frames) or not all(
            np.array_equal(s.context_frames, c) for s, c in zip(self.scenarios, context_frames)
        ):
            raise ValueError(
                f"{self.name} was prepared with {len(self.scenarios)} scenarios that do not match the "
                f"{len(context_frames)} contexts given to predict: call prepare(scenarios) with the same "
                "batch first (predict_scenarios does)"
            )
        replayed = []
        for scenario, scenario_actions in zip(self.scenarios, actions):
            if scenario.horizon != horizon or not np.array_equal(scenario.actions, scenario_actions):
                raise ValueError(
                    f"{self.name} replays recorded episodes only: scenario seed {scenario.seed} has horizon "
                    f"{scenario.horizon} and its own actions, got horizon {horizon} or other actions"
                )
            replayed.append(replay_rewards(scenario, self._env(scenario), self.perturbation(scenario)))
        frames, rewards, terminated = (np.stack(part) for part in zip(*replayed))
        return RewardPrediction(frames, rewards, terminated)

    def perturbation(self, scenario: Scenario) -> Callable[[Any, np.random.Generator], None] | None:
        return None

    def _env(self, scenario: Scenario) -> Any:
        key = (scenario.env_id, repr(sorted(scenario.env_kwargs.items())))
        if key not in self.envs:
            self.envs[key] = make_env(scenario.env_id, scenario.env_kwargs)
        return self.envs[key]

    def close(self) -> None:
        for env in self.envs.values():
            env.close()
        self.envs.clear()


class PerturbedGroundTruthPredictor(GroundTruthPredictor):
    """The simulator replays with the world nudged after the last context frame.

    Each world's ``perturb(rng, scale)`` says how: PyBullet worlds move each object by ``scale``
    times its size and its velocities by ``scale`` relative; BlockWorld moves the player ``scale``
    blocks. Directions are seeded by the scenario: a difference far below what any camera sees, so
    the divergence it causes (chaotic contacts, mostly) is the physical variance, the error no
    model can be blamed for.
    """

    name = "perturbed_truth"

    def __init__(self, scale: float = 1e-3) -> None:
        super().__init__()
        self.scale = scale

    def supports(self, scenario: Scenario) -> bool:
        """Only worlds that say how to nudge themselves (``perturb``) can be replayed nudged."""
        return hasattr(self._env(scenario).unwrapped, "perturb")

    def perturbation(self, scenario: Scenario) -> Callable[[Any, np.random.Generator], None]:
        return lambda env, rng: env.unwrapped.perturb(rng, self.scale)


class RandomEpisodePredictor(GroundTruthPredictor):
    """The simulator's episode of another reset seed, same world, split and actions: a caption-ignoring floor.

    Its videos are as real as the truth's, so what it scores on a caption's attributes is what
    chance agreement with a real episode of the world gives (the text suite's floor).
    """

    name = "random_episode"

    def predict_rewards(
        self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int
    ) -> RewardPrediction:
        prepared = self.scenarios
        # Same frames (what the truth checks the context against), another seed (what it replays).
        self.scenarios = [dataclasses.replace(s, seed=other_seed(s.seed)) for s in prepared]
        try:
            return super().predict_rewards(context_frames, actions, text, horizon)
        finally:
            self.scenarios = prepared


def other_seed(seed: int) -> int:
    """A reset seed unrelated to ``seed``, the same every time."""
    return int(np.random.SeedSequence([seed, 1]).generate_state(1)[0])


class WorldModelPredictor:
    """Trained worldsim models (exported ``model.pt`` files) rolled out from each scenario's context.

    ``checkpoint`` is one model file, or a directory of them (one per world, as in
    ``worldsim/reference``): each scenario is predicted by the model of its world, and worlds no
    model was trained on are skipped (``supports``) rather than scored on garbage. Each ``predict``
    call samples with the same ``seed``, so a report is reproducible. ``sampling``: a
    ``worldsim.SamplingConfig`` (or a dict of its fields); unset fields keep each model file's
    default sampling.
    """

    text_to_video = True  # imagines from the caption alone when given no context frames

    def __init__(
        self, checkpoint: str, device: str | None = None, seed: int = 0, name: str = "model", sampling: Any = None
    ) -> None:
        from worldsim.references import is_world_model_file
        from worldsim.sampling import SamplingConfig  # torch only when the model is scored
        from worldsim.world_model import WorldModel

        self.sampling = SamplingConfig.of(
            sampling
        )  # a misspelt or invalid setting fails now, not after the baselines ran
        path = Path(checkpoint)
        # A directory's inverse-dynamics models (worldsim/reference/*_idm.pt) read actions; they predict no frames.
        files = sorted(filter(is_world_model_file, path.glob("*.pt"))) if path.is_dir() else [path]
        if not files:
            raise ValueError(
                f"predictor {name!r}: {path} holds no model files (*.pt): pass a <run>/model.pt or a directory of them"
            )
        self.models = {}
        for file in files:
            model = WorldModel.from_checkpoint(file, device)
            if model.env_id in self.models:
                raise ValueError(
                    f"predictor {name!r}: {file} and {self.models[model.env_id][1]} are both models of "
                    f"{model.env_id or 'an unknown world'}: keep one per world in {path}"
                )
            self.models[model.env_id] = (model, file)
        self.name, self.checkpoint, self.seed = name, str(checkpoint), seed
        self.model, self.file = next(iter(self.models.values()))

    def _entry(self, env_id: str):
        return self.models.get(env_id) or self.models.get("")

    def supports(self, scenario: Scenario) -> bool:
        """Only worlds a model was trained on: other worlds may share its shapes, not its physics."""
        return self._entry(scenario.env_id) is not None

    def prepare(self, scenarios: list[Scenario]) -> None:
        entry = self._entry(scenarios[0].env_id)
        if entry is None:
            raise ValueError(
                f"predictor {self.name!r} has no model of {scenarios[0].env_id} (it has "
                f"{sorted(self.models)}): leave that suite out"
            )
        self.model, self.file = entry

    def round_trip(self, frames: np.ndarray) -> np.ndarray:
        """Frames (N, H, W, 3) uint8 through the prepared model's autoencoder (the reconstruction audit)."""
        return self.model.decode(self.model.encode(frames))

    def predict(self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int) -> np.ndarray:
        return self._rollout(context_frames, actions, text, horizon)

    def predict_rewards(
        self, context_frames: np.ndarray, actions: np.ndarray, text: list[str], horizon: int
    ) -> RewardPrediction:
        """The rollout's frames with its reward head's rewards; an episode ends where the termination
        head's probability passes 0.5, as ``WorldBatch.step`` decides it."""
        import torch

        frames, out = self._rollout(context_frames, actions, text, horizon, return_latents=True)
        return RewardPrediction(
            frames, out.reward.float().cpu().numpy(), (torch.sigmoid(out.termination_logit.float()) > 0.5).cpu().numpy()
        )

    def _rollout(
        self,
        context_frames: np.ndarray,
        actions: np.ndarray,
        text: list[str],
        horizon: int,
        return_latents: bool = False,
    ) -> Any:
        model = self.model
        frames_fit = tuple(context_frames.shape[2:]) == tuple(model.frame_shape)
        space = model.action_space
        actions_fit = not model.has_actions or tuple(actions.shape[2:]) == tuple(space.shape)
        if not (frames_fit and actions_fit):
            raise ValueError(
                f"predictor {self.name!r} ({self.file}) was trained on {model.env_id or 'an unknown world'} with "
                f"{model.frame_shape} frames and actions {space}; this suite gives {tuple(context_frames.shape[2:])} "
                f"frames and actions of shape {tuple(actions.shape[2:])}: score it on the suites of its world"
            )
        if model.has_actions and isinstance(space, spaces.Box):
            actions = np.clip(actions, space.low, space.high)  # scenario actions beyond the trained range
        return model.rollout(
            context_frames,
            actions,
            list(text),
            horizon,
            seed=self.seed,
            sampling=self.sampling,
            return_latents=return_latents,
        )


def reference_predictor(**kwargs: Any) -> WorldModelPredictor:
    """The reference models shipped with worldsim (``worldsim/reference``), one per world."""
    from worldsim.references import REFERENCE_DIR

    return WorldModelPredictor(checkpoint=str(REFERENCE_DIR), name="reference", **kwargs)


#: Built-in predictors by the name tables show; ``model`` takes ``checkpoint=`` (a file or a directory).
BASELINES: dict[str, Callable[..., Predictor]] = {
    "copy_last": CopyLastPredictor,
    "optical_flow": OpticalFlowPredictor,
    "truth": GroundTruthPredictor,
    "perturbed_truth": PerturbedGroundTruthPredictor,
    "random_episode": RandomEpisodePredictor,
    "model": WorldModelPredictor,
    "reference": reference_predictor,
}


def make_predictor(spec: str, **kwargs: Any) -> Predictor:
    """A built-in name from ``BASELINES`` or an external ``module:callable`` / ``file.py:callable``."""
    if spec in BASELINES:
        return BASELINES[spec](**kwargs)
    if ":" not in spec:
        raise ValueError(
            f"predictor {spec!r} is neither a built-in ({', '.join(BASELINES)}) nor 'module:callable' or "
            "'path/to/file.py:callable'"
        )
    return load_predictor(spec, **kwargs)


def load_predictor(spec: str, **kwargs: Any) -> Predictor:
    """Load ``"package.module:attr"`` or ``"path/to/file.py:attr"`` as a predictor.

    ``attr`` may be a class or factory (called with ``kwargs``) or an object that already has
    ``predict``; dotted attributes (``module:Outer.make``) are followed. A predictor without a
    ``name`` gets ``attr``.
    """
    obj = load_target(spec, "predictor")
    if inspect.isclass(obj) or (callable(obj) and not hasattr(obj, "predict")):
        obj = obj(**kwargs)
    elif kwargs:
        raise ValueError(
            f"predictor {spec!r} is an object, not a class or factory: it takes no arguments {sorted(kwargs)}"
        )
    if not callable(getattr(obj, "predict", None)):
        raise ValueError(
            f"predictor {spec!r} gave {type(obj).__name__}, which has no predict(context_frames, actions, "
            "text, horizon) method: return an object that has one"
        )
    if not isinstance(getattr(obj, "name", None), str):
        try:
            obj.name = spec.rpartition(":")[2].split(".")[-1]
        except AttributeError as error:
            raise ValueError(f"predictor {spec!r} has no str attribute 'name' and none can be set: add one") from error
    return obj
