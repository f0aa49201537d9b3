"""The policy interface every collector and scripted world shares."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import gymnasium
import numpy as np

from worldsim.spaces import zero_action


@runtime_checkable
class Policy(Protocol):
    """Chooses actions for one env, one episode at a time.

    ``reset(seed)`` is called at the start of every episode so that a policy with randomness is
    reproducible; ``__call__`` receives the observation and ``info`` the env just returned and
    gives an action from the env's action space.
    """

    def reset(self, seed: int) -> None: ...

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> Any: ...


class ZeroPolicy:
    """The all-zeros action (the lowest, for ``Discrete``): a no-op in every worldsim world, and
    the world left alone while a model env records its context."""

    def __init__(self, action_space: gymnasium.Space) -> None:
        self.action = zero_action(action_space)

    def reset(self, seed: int) -> None:
        pass

    def __call__(self, observation: Any, info: dict[str, Any]) -> Any:
        return np.copy(self.action)
