"""Reward: does a Push model's reward head pay what the real env pays for the same actions?

Real Push episodes (pusher behind the target, as ``worldsim imagine`` trains) of five policies are
replayed open loop in each predictor, and the return it predicts is set against the real one:

- ``scripted``: the world's scripted pushes, which earn most of what can be earned;
- ``random``: uniform random actions;
- ``diagonal`` and ``left``: full-speed straight drives, actions (1, 1) and (-1, 0.3), which move
  the target little or not at all;
- ``still``: no action, which earns nothing.

A head that pays for what the real env does not, such as a straight drive that moves nothing, is
what PPO trained in imagination finds and exploits. Each episode begins with ``CONTEXT`` real frames
of the world left alone (``worldsim imagine``'s imagined episodes start from such frames), then the
policy acts for up to ``HORIZON`` steps, until the real episode ends. A predictor gets those context
frames and every action, and predicts the rewards (``predict_rewards``); its return is their sum up
to the step where it predicts the end (or to the real episode's last step). Where the color tracker
finds the target and the pusher in the last predicted frame, against the last real one, tells a
wrong predicted return apart from a wrong predicted world.

The simulator replayed (``truth``) predicts the real rewards exactly, the ceiling; ``copy_last``
predicts a world that stops, which pays nothing: the floor. Predictors without ``predict_rewards``
(optical flow, most external ones) are skipped.

Episode i of every policy starts from the reset seed of the eval's scenario i (its ``seed=`` and
``split=``), so ``n`` is the number of episodes per policy. Each episode is predicted alone: the
episodes end at different steps, and alone its prediction does not depend on which episodes share
its batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from worldsim.data.policies import FunctionPolicy, make_policy
from worldsim.envs.push import PUSHER, TARGET
from worldsim.evals.protocol import Predictor, Scenario, check_reward_prediction
from worldsim.evals.results import metric_row
from worldsim.evals.scenarios import ScenarioAware, make_env
from worldsim.evals.tracking import track

SUITE = "reward"
ENV_ID = "worldsim/Push-v0"
ENV_KWARGS = {"start": "behind"}  # the start PPO learns on (docs/agents.md)
CONTEXT = 15  # frames of the world left alone before the policy acts: the references' window
HORIZON = 48  # policy steps at most, worldsim imagine's horizon on Push behind the target


def _constant(action: tuple[float, float]) -> Callable[[Any], Any]:
    return lambda env: FunctionPolicy(lambda observation, info: np.array(action, np.float32))


#: policy name -> factory of the policy for an env
POLICIES: dict[str, Callable[[Any], Any]] = {
    "scripted": lambda env: make_policy("scripted", env),
    "random": lambda env: make_policy("random", env),
    "diagonal": _constant((1.0, 1.0)),
    "left": _constant((-1.0, 0.3)),
    "still": _constant((0.0, 0.0)),
}

_PER_POLICY = {
    "real_return": "the real env's return",
    "predicted_return": "the return the predictor's rewards add up to",
    "return_error": "predicted - real return (positive: the predictor overpays)",
    "return_abs_error": "|predicted - real return|",
    "target_found": "share of last predicted frames in which the tracker finds the target",
    "pusher_found": "share of last predicted frames in which the tracker finds the pusher",
    "target_error_px": "target centroid in the last predicted frame against the last real one (px, where both are found)",
    "pusher_error_px": "pusher centroid in the last predicted frame against the last real one (px, where both are found)",
}
_POOLED = ("return_abs_error", "target_found", "pusher_found", "target_error_px", "pusher_error_px")
METRICS = {
    **{metric: f"every policy's episodes: {_PER_POLICY[metric]}" for metric in _POOLED},
    **{
        f"{policy}_{metric}": f"{policy} episodes: {text}"
        for policy in POLICIES
        for metric, text in _PER_POLICY.items()
    },
}
HEADLINE = ["return_abs_error", "pusher_error_px"]
HIGHER_IS_BETTER = {metric for metric in METRICS if metric.endswith("_found")}
# Returns and the signed error have no better direction: closeness to the real return is what counts.
NO_BEST = tuple(metric for metric in METRICS if metric.endswith(("real_return", "predicted_return", "_return_error")))


@dataclass
class RewardEpisode:
    """One real episode of a policy, and what the real env paid for each of its steps."""

    policy: str
    scenario: Scenario  # CONTEXT frames of the world left alone, then the policy's steps until the episode ended
    rewards: np.ndarray  # (H,) float: the real reward of each policy step

    @property
    def real_return(self) -> float:
        return float(self.rewards.sum())


def record_episode(env: Any, policy: str, seed: int, split: str = "id") -> RewardEpisode:
    """Run ``policy`` in ``env`` (a bare Push env) from ``reset(seed)`` after ``CONTEXT - 1`` still steps."""
    observation, info = env.reset(seed=seed, options={"split": split})
    still = np.zeros(env.action_space.shape, np.float32)
    frames, infos, actions, rewards = [observation], [info], [], []
    for _ in range(CONTEXT - 1):
        observation, _, _, _, info = env.step(still)
        frames.append(observation)
        infos.append(info)
        actions.append(still)
    act = POLICIES[policy](env)
    act.reset(seed)
    terminated = False
    while not terminated and len(rewards) < HORIZON:
        action = np.asarray(act(observation, info), np.float32)
        observation, reward, terminated, _, info = env.step(action)
        frames.append(observation)
        infos.append(info)
        actions.append(action)
        rewards.append(reward)
    state = {key: np.stack([np.asarray(i["state"][key]) for i in infos]) for key in infos[0]["state"]}
    scenario = Scenario(
        env_id=ENV_ID,
        env_kwargs=dict(ENV_KWARGS),
        seed=seed,
        split=split,
        context=CONTEXT,
        horizon=len(rewards),
        frames=np.stack(frames),
        actions=np.stack(actions),
        caption=infos[0]["caption"],
        state=state,
        params=infos[0]["params"],
    )
    return RewardEpisode(policy, scenario, np.asarray(rewards, np.float64))


def score_episode(episode: RewardEpisode, predictor: Predictor) -> dict[str, Any]:
    """The predicted return of one episode, and the tracked objects in its last predicted frame.

    Returns ``real`` and ``predicted`` returns, ``found`` (2,) bool and ``error_px`` (2,) (NaN where
    either frame lacks the object) for the target, then the pusher.
    """
    scenario = episode.scenario
    if isinstance(predictor, ScenarioAware):
        predictor.prepare([scenario])
    name = getattr(predictor, "name", type(predictor).__name__)
    prediction = check_reward_prediction(
        predictor.predict_rewards(
            scenario.context_frames[None], scenario.actions[None], [scenario.caption], scenario.horizon
        ),
        1,
        scenario.horizon,
        scenario.frames.shape[1:],
        name,
    )
    ends = np.flatnonzero(prediction.terminated[0])
    last = int(ends[0]) if ends.size else scenario.horizon - 1
    colors = scenario.state["object_color"][0][[TARGET, PUSHER]]
    truth, guess = track(scenario.frames[-1:], colors), track(prediction.frames[0, last][None], colors)
    return {
        "real": episode.real_return,
        "predicted": float(prediction.rewards[0, : last + 1].sum()),
        "found": guess.found[0],
        "error_px": np.linalg.norm(guess.centroid[0] - truth.centroid[0], axis=-1),
    }


def score_reward(scenarios: list[Scenario], predictor: Predictor, batch_size: int = 1) -> list[dict[str, Any]]:
    """Metric rows of ``predictor`` on every policy's episodes from the seeds of ``scenarios``.

    ``batch_size`` is part of the probe suites' signature; episodes are predicted one by one (see
    the module docstring).
    """
    if not callable(getattr(predictor, "predict_rewards", None)):
        raise ValueError(
            f"predictor {predictor.name!r} has no predict_rewards(context_frames, actions, text, "
            "horizon): the reward suite scores predicted rewards; leave it out of suites=[reward]"
        )
    split = scenarios[0].split
    env = make_env(ENV_ID, ENV_KWARGS)
    try:
        scores = {
            policy: [score_episode(record_episode(env, policy, s.seed, split), predictor) for s in scenarios]
            for policy in POLICIES
        }
    finally:
        env.close()
    rows = []

    def add(prefix: str, episodes: list[dict[str, Any]]) -> None:
        real = np.array([e["real"] for e in episodes])
        predicted = np.array([e["predicted"] for e in episodes])
        found = np.array([e["found"] for e in episodes])  # (N, 2)
        error = np.array([e["error_px"] for e in episodes])  # (N, 2)
        values = {
            "real_return": real,
            "predicted_return": predicted,
            "return_error": predicted - real,
            "return_abs_error": np.abs(predicted - real),
            "target_found": found[:, 0],
            "pusher_found": found[:, 1],
            "target_error_px": error[:, 0],
            "pusher_error_px": error[:, 1],
        }
        for metric, samples in values.items():
            if f"{prefix}{metric}" in METRICS:
                rows.append(metric_row(SUITE, split, predictor.name, f"{prefix}{metric}", samples))

    add("", [episode for episodes in scores.values() for episode in episodes])
    for policy, episodes in scores.items():
        add(f"{policy}_", episodes)
    return rows
