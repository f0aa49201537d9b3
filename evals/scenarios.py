"""Seeded, fixed scenarios from the ground-truth worlds, and feeding them to predictors.

A scenario is one episode from its reset: frame 0 is the reset observation and frame t + 1
follows ``actions[t]``, so ``(env_id, env_kwargs, seed, split, actions)`` replay it exactly
(:func:`replay`). Episode ``i`` of ``make_scenarios(..., seed=s)`` is reset with a seed drawn
from ``(EVAL_STREAM, s, i)``, a stream that training collection (seeded from ``(seed, i)``)
never uses, so eval episodes are not training episodes whatever seeds both were given.

Besides every ``info["state"]`` array, ``Scenario.state`` holds the rendered ground truth
``segmentation`` (T, h, w) int16 (slot + 1, 0 = background or scenery) and ``depth``
(T, h, w) float32 (meters along the viewing axis): the tracker is validated against them.

Predictors that need more than frames and actions (the simulator itself) may implement
``prepare(scenarios)``: :func:`predict_scenarios` calls it with exactly the scenarios of a batch
right before ``predict`` on that batch. Suites call predictors only through
:func:`predict_scenarios`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol, runtime_checkable

import gymnasium
import numpy as np

import worldsim  # noqa: F401  (registers the worldsim/* env ids)
from worldsim.evals.protocol import Predictor, Scenario, check_prediction
from worldsim.spaces import check_action

#: Salt of the eval seed stream; training collection seeds episode i from (seed, i) only.
EVAL_STREAM = 0x5EED_E7A1
POLICIES = ("scripted", "random", "zero", "mixed", "sticky")
#: A perturbation hook: (env, rng) -> None, applied after the last context frame (see replay()).
Perturbation = Callable[[Any, np.random.Generator], None]


@runtime_checkable
class ScenarioAware(Protocol):
    """A predictor that wants the scenarios of a batch (their seeds, env ids) before predicting."""

    def prepare(self, scenarios: list[Scenario]) -> None: ...


def scenario_seed(seed: int, index: int) -> int:
    """The reset seed of scenario ``index`` of an eval set seeded ``seed``."""
    return int(np.random.SeedSequence([EVAL_STREAM, seed, index]).generate_state(1)[0])


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    """The bare world (no TimeLimit or checker wrappers: scenarios may run past 64 steps)."""
    try:
        return gymnasium.make(env_id, **(env_kwargs or {})).unwrapped
    except gymnasium.error.Error as error:
        raise ValueError(
            f"cannot make env {env_id!r} with {env_kwargs or {}}: {error}; use a registered id such "
            "as 'worldsim/Physics-v0'"
        ) from error


def _policy(env: Any, policy: str, seed: int) -> Callable[[np.ndarray, dict[str, Any]], np.ndarray]:
    if policy == "scripted":
        scripted = env.scripted_policy()
        scripted.reset(seed)
        return scripted
    space = env.action_space
    if policy in ("mixed", "sticky"):  # collection's policies (worldsim.data.policies), seeded per scenario
        from worldsim.data.policies import make_policy

        chosen = make_policy(policy, env)
        chosen.reset(seed)
        return chosen
    if policy == "zero":  # a MultiDiscrete world's no-op is its first value in every component
        zero = space.start if isinstance(space, gymnasium.spaces.MultiDiscrete) else np.zeros(space.shape, np.float32)
        return lambda observation, info: zero
    if policy == "random":
        if isinstance(space, gymnasium.spaces.Box):
            rng = np.random.default_rng(seed)
            return lambda observation, info: rng.uniform(-1.0, 1.0, space.shape).astype(np.float32)
        space.seed(seed)
        return lambda observation, info: space.sample()
    raise ValueError(f"policy {policy!r} is not one of {POLICIES}")


def _stack(infos: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    state = {key: np.stack([np.asarray(info["state"][key]) for info in infos]) for key in infos[0]["state"]}
    state["segmentation"] = np.stack([info["segmentation"] for info in infos]).astype(np.int16)
    state["depth"] = np.stack([info["depth"] for info in infos]).astype(np.float32)
    return state


#: What picks a scenario's actions: a name of ``POLICIES``, or a callable (observation, info) -> action
#: such as a suite's scripted plan (evals/memory.py walks loops and comes back with one).
PolicySpec = str | Callable[[np.ndarray, dict[str, Any]], np.ndarray]


def make_scenario(
    env: Any,
    env_id: str,
    env_kwargs: dict[str, Any],
    seed: int,
    split: str,
    context: int,
    horizon: int,
    policy: PolicySpec,
) -> Scenario:
    """Run one episode of ``env`` from ``reset(seed)`` for ``context + horizon`` frames."""
    observation, info = env.reset(seed=seed, options={"split": split})
    act = policy if callable(policy) else _policy(env, policy, seed)
    frames, infos, actions = [observation], [info], []
    for _ in range(context + horizon - 1):
        # In the space's dtype (float32 for the Box worlds, int64 for BlockWorld's MultiDiscrete), checked as the env will
        action = check_action(
            env.action_space,
            act(observation, info),
            f"{env_id}'s {policy if isinstance(policy, str) else 'scripted plan'} action",
        )
        observation, _, _, _, info = env.step(action)
        frames.append(observation)
        infos.append(info)
        actions.append(action)
    return Scenario(
        env_id=env_id,
        env_kwargs=dict(env_kwargs),
        seed=seed,
        split=split,
        context=context,
        horizon=horizon,
        frames=np.stack(frames),
        actions=np.stack(actions),
        caption=infos[0]["caption"],
        state=_stack(infos),
        params=infos[0]["params"],
    )


def make_scenarios(
    env_id: str,
    n: int,
    context: int,
    horizon: int,
    split: str = "id",
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    policy: str = "scripted",
) -> list[Scenario]:
    """``n`` reproducible scenarios of ``context`` + ``horizon`` frames: same arguments, same frames.

    ``policy``: ``"scripted"`` (the world's own), ``"random"`` (uniform actions, seeded per
    scenario), ``"zero"`` (no-ops), or collection's ``"mixed"`` and ``"sticky"`` (seeded per scenario). ``split``: ``"id"`` or ``"ood"`` parameters.
    """
    if n < 1 or context < 1 or horizon < 1:
        raise ValueError(f"n={n}, context={context}, horizon={horizon}: all must be at least 1")
    if split not in ("id", "ood"):
        raise ValueError(f"split {split!r} is not one of ('id', 'ood')")
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} is not one of {POLICIES}")
    kwargs = dict(env_kwargs or {})
    env = make_env(env_id, kwargs)
    try:
        return [
            make_scenario(env, env_id, kwargs, scenario_seed(seed, i), split, context, horizon, policy)
            for i in range(n)
        ]
    finally:
        env.close()


def replay(scenario: Scenario, env: Any = None, perturbation: Perturbation | None = None) -> np.ndarray:
    """Re-simulate ``scenario`` from its seed and actions; returns its future frames (H, h, w, 3).

    ``perturbation(env, rng)`` runs after the last context frame was rendered (so the context a
    predictor saw is untouched) with an rng seeded by the scenario seed. Pass ``env`` to reuse one.
    """
    return replay_rewards(scenario, env, perturbation)[0]


def replay_rewards(
    scenario: Scenario, env: Any = None, perturbation: Perturbation | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``replay``, with what the env paid: future frames (H, h, w, 3), rewards (H,) and terminated (H,).

    ``rewards[h]`` and ``terminated[h]`` belong to the transition into future frame h.
    """
    own = env is None
    env = make_env(scenario.env_id, scenario.env_kwargs) if own else env
    try:
        observation, _ = env.reset(seed=scenario.seed, options={"split": scenario.split})
        frames, rewards, terminations = [observation], [], []
        for t, action in enumerate(scenario.actions):
            if perturbation is not None and t == scenario.context - 1:
                perturbation(env, np.random.default_rng(scenario.seed))
            observation, reward, terminated, *_ = env.step(action)
            frames.append(observation)
            rewards.append(reward)
            terminations.append(terminated)
        future = slice(scenario.context - 1, None)  # transition t leads to frame t + 1
        return (
            np.stack(frames[scenario.context :]),
            np.asarray(rewards[future], np.float64),
            np.asarray(terminations[future], bool),
        )
    finally:
        if own:
            env.close()


def _batches(items: list[Scenario], size: int) -> Iterable[list[Scenario]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def predict_scenarios(predictor: Predictor, scenarios: list[Scenario], batch_size: int = 32) -> np.ndarray:
    """Every scenario's predicted future, (N, H, h, w, 3) uint8, checked against the protocol.

    Scenarios of one call must share context, horizon and frame size (one ``make_scenarios`` call).
    """
    if not scenarios:
        raise ValueError("no scenarios to predict: make some with make_scenarios(...)")
    first = scenarios[0]
    shape = (first.context, first.horizon, first.frames.shape[1:])
    for s in scenarios:
        if (s.context, s.horizon, s.frames.shape[1:]) != shape:
            raise ValueError(
                f"scenario seed {s.seed} has context {s.context}, horizon {s.horizon}, frames "
                f"{s.frames.shape[1:]} but the first has {shape}: predict each shape separately"
            )
    name = getattr(predictor, "name", type(predictor).__name__)
    out = []
    for batch in _batches(scenarios, batch_size):
        if isinstance(predictor, ScenarioAware):
            predictor.prepare(batch)
        context_frames = np.stack([s.context_frames for s in batch])
        actions = np.stack([s.actions for s in batch])
        frames = predictor.predict(context_frames, actions, [s.caption for s in batch], first.horizon)
        out.append(check_prediction(frames, len(batch), first.horizon, first.frames.shape[1:], name))
    return np.concatenate(out)
