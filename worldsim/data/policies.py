"""Policies for collection: the random policy and loading ``"module:callable"`` specs."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import gymnasium
import numpy as np

from worldsim.envs.policy import Policy
from worldsim.targets import load_target


class RandomPolicy:
    """Uniform samples from the action space, reseeded per episode so episodes are reproducible."""

    def __init__(self, action_space: gymnasium.Space) -> None:
        self.action_space = action_space

    def reset(self, seed: int) -> None:
        self.action_space.seed(seed)

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        return self.action_space.sample()


class MixedPolicy:
    """The world's scripted policy with bursts of random actions.

    A world model learns what actions do only from data where they vary: a scripted policy alone
    covers the task's states with few actions, a random one many actions in few states. Each step
    not already in a burst starts a burst of 1-8 uniform random actions with ``burst_prob``.
    """

    def __init__(self, scripted: Policy, action_space: gymnasium.Space, burst_prob: float = 0.1) -> None:
        self.scripted, self.action_space, self.burst_prob = scripted, action_space, burst_prob
        self.rng = np.random.default_rng(0)
        self.burst = 0

    def reset(self, seed: int) -> None:
        self.scripted.reset(seed)
        self.action_space.seed(seed)
        self.rng = np.random.default_rng(seed)
        self.burst = 0

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        scripted_action = self.scripted(observation, info)  # keeps a stateful script in step
        if self.burst == 0 and self.rng.random() < self.burst_prob:
            self.burst = int(self.rng.integers(1, 9))
        if self.burst > 0:
            self.burst -= 1
            return self.action_space.sample()
        return scripted_action


class StickyPolicy:
    """Segments of 1-``max_hold`` steps: one uniform random action held throughout, or the scripted policy.

    Held actions drive an agent in straight lines, into corners and past objects, as a trained agent
    does and neither a scripted nor a per-step random policy does; a world model (and its reward
    head) then learns what such drives are worth. Each segment follows ``scripted`` with
    probability ``scripted_share`` (none without a scripted policy).
    """

    def __init__(
        self, scripted: Optional[Policy], action_space: gymnasium.Space, max_hold: int = 16, scripted_share: float = 0.5
    ) -> None:
        if max_hold < 1:
            raise ValueError(f"max_hold={max_hold}: hold each action for at least 1 step")
        self.scripted, self.action_space, self.max_hold = scripted, action_space, int(max_hold)
        self.scripted_share = scripted_share if scripted is not None else 0.0
        self.rng = np.random.default_rng(0)
        self.left, self.held = 0, None

    def reset(self, seed: int) -> None:
        if self.scripted is not None:
            self.scripted.reset(seed)
        self.action_space.seed(seed)
        self.rng = np.random.default_rng(seed)
        self.left, self.held = 0, None

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        scripted_action = self.scripted(observation, info) if self.scripted is not None else None
        if self.left == 0:
            self.left = int(self.rng.integers(1, self.max_hold + 1))
            self.held = None if self.rng.random() < self.scripted_share else self.action_space.sample()
        self.left -= 1
        return scripted_action if self.held is None else self.held


class FunctionPolicy:
    """Adapts a stateless ``(observation, info) -> action`` function to the Policy protocol."""

    def __init__(self, function: Callable[[np.ndarray, dict[str, Any]], Any]) -> None:
        self.function = function

    def reset(self, seed: int) -> None:
        pass

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any:
        return self.function(observation, info)


def make_policy(spec: str, env: gymnasium.Env, kwargs: Optional[dict[str, Any]] = None) -> Policy:
    """The policy named by ``spec`` for ``env``; ``kwargs`` go to a ``"module:Class"`` policy's constructor.

    ``"random"``: uniform actions. ``"scripted"``: ``env.unwrapped.scripted_policy()``.
    ``"mixed"``: the scripted policy with bursts of random actions (``MixedPolicy``). ``"sticky"``:
    random actions held for 1-16 steps, half the segments scripted where the world has a script
    (``StickyPolicy``).
    ``"module:name"`` or ``"file.py:name"``: a Policy object; a class, instantiated with the
    env's action space as its first argument (unless the constructor takes none, or ``kwargs``
    name it) and ``kwargs``; or a plain function ``(observation, info) -> action``.
    """
    kwargs = dict(kwargs or {})
    if kwargs and ":" not in spec:
        raise ValueError(
            f"policy_kwargs {sorted(kwargs)} given to policy {spec!r}: they are for a "
            "'module:Class' policy's constructor; drop them or name such a class"
        )
    if spec == "random":
        return RandomPolicy(env.action_space)
    if spec == "sticky":
        factory = getattr(env.unwrapped, "scripted_policy", None)
        return StickyPolicy(factory() if factory is not None else None, env.action_space)
    if spec in ("scripted", "mixed"):
        factory = getattr(env.unwrapped, "scripted_policy", None)
        if factory is None:
            raise ValueError(
                f"policy {spec!r}: {env.spec.id if env.spec else env} has no scripted_policy(); "
                "only worldsim worlds provide one: use policy=random or policy=module:callable"
            )
        return factory() if spec == "scripted" else MixedPolicy(factory(), env.action_space)
    if ":" not in spec:
        raise ValueError(
            f"policy {spec!r} is unknown: use 'random', 'scripted', 'mixed', 'sticky' or 'module:callable'"
        )
    target = load_target(spec, "policy")
    if inspect.isclass(target):
        names = list(inspect.signature(target).parameters)
        takes_action_space = bool(names) and names[0] not in kwargs
        try:
            target = target(env.action_space, **kwargs) if takes_action_space else target(**kwargs)
        except TypeError as error:
            raise ValueError(f"policy {spec!r} cannot be built with policy_kwargs {kwargs}: {error}") from None
    elif kwargs:
        raise ValueError(
            f"policy_kwargs {sorted(kwargs)} given to policy {spec!r}, which is not a class: "
            "only a policy class takes them"
        )
    if isinstance(target, Policy):
        return target
    if callable(target):
        return FunctionPolicy(target)
    raise ValueError(
        f"policy {spec!r} is a {type(target).__name__}: it must be a Policy "
        "(reset(seed) and __call__(observation, info)), a Policy class, or a function"
    )
