"""Gymnasium spaces as JSON and back, the stored form of an action, and checking actions.

Datasets and model files describe their observation and action spaces as plain JSON
(``describe_space``), so reading them never unpickles anything; ``space_from_description`` rebuilds
the space. Numpy and Gymnasium only: collection workers and the ground-truth worlds import it
without torch.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import gymnasium
import numpy as np
from gymnasium import spaces


def is_image_space(space: gymnasium.Space) -> bool:
    """Whether observations of ``space`` are RGB frames (H, W, 3) uint8."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3


def describe_space(space: gymnasium.Space) -> dict[str, Any]:
    """A JSON description of ``space`` for the manifest (bounds only when they are small)."""
    if isinstance(space, spaces.Box):
        out: dict[str, Any] = {"type": "Box", "shape": list(space.shape), "dtype": str(space.dtype)}
        if space.low.size <= 64:
            # JSON has no infinity; unbounded dimensions are written as the strings "inf"/"-inf".
            out["low"] = [float(v) if np.isfinite(v) else str(float(v)) for v in space.low.ravel()]
            out["high"] = [float(v) if np.isfinite(v) else str(float(v)) for v in space.high.ravel()]
        return out
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    return {"type": type(space).__name__, "repr": str(space)}


def action_codec(space: gymnasium.Space) -> tuple[Callable[[Any], np.ndarray], Callable[[np.ndarray], Any]]:
    """(to_stored, to_env): the stored array of a policy's action, and what the env is given.

    The env receives the stored value, so the dataset holds exactly the actions that produced
    its frames (a float64 policy output is rounded to float32 before stepping, not after).
    """
    if isinstance(space, spaces.Box):
        return (lambda a: np.array(a, dtype=np.float32).reshape(space.shape)), (lambda a: a)
    if isinstance(space, spaces.Discrete):
        return (lambda a: np.array(a, dtype=np.int64).reshape(())), (lambda a: int(a))
    if isinstance(space, (spaces.MultiDiscrete, spaces.MultiBinary)):
        return ((lambda a: np.array(a, dtype=np.int64).reshape(space.shape)), (lambda a: a.astype(space.dtype)))
    raise ValueError(
        f"action space {space} is not supported: worldsim stores Box, Discrete, "
        "MultiDiscrete and MultiBinary actions; flatten it with a wrapper first"
    )


def space_from_description(description: Optional[Mapping[str, Any]]) -> Optional[gymnasium.Space]:
    """The Gymnasium space ``describe_space`` described; None for no description."""
    if not description:
        return None
    kind = description.get("type")
    if kind == "Box":
        shape = tuple(description["shape"])
        dtype = np.dtype(description.get("dtype", "float32"))
        if "low" in description:
            low = np.asarray([float(v) for v in description["low"]], dtype).reshape(shape)
            high = np.asarray([float(v) for v in description["high"]], dtype).reshape(shape)
        else:  # large boxes are stored without bounds
            low, high = np.full(shape, -np.inf, dtype), np.full(shape, np.inf, dtype)
        return spaces.Box(low, high, shape, dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(description["n"]), start=int(description.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(description["nvec"], np.int64))
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    raise ValueError(
        f"action space {dict(description)} cannot be rebuilt: worldsim models take Box, "
        "Discrete, MultiDiscrete or MultiBinary actions"
    )


def check_action(space: gymnasium.Space, action: Any, where: str = "action") -> np.ndarray:
    """``action`` as an array of ``space``, or ValueError saying what is wrong with it."""
    array = np.asarray(action)
    if isinstance(space, spaces.Box):
        problem = None
        if array.shape != space.shape:
            problem = f"actions must have shape {space.shape}, not {array.shape}"
        elif not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array.astype(np.float64))):
            problem = "actions must be finite numbers"
        elif np.any(array < space.low) or np.any(array > space.high):
            problem = f"actions must lie in [{space.low.min()}, {space.high.max()}] (per dimension: the space's bounds)"
        if problem:
            raise ValueError(f"{where} {array.tolist()} is not in {space}: {problem}")
        return array.astype(space.dtype)
    if isinstance(space, spaces.Discrete):
        if array.shape != () or not np.issubdtype(array.dtype, np.integer) or not space.contains(np.int64(array)):
            raise ValueError(
                f"{where} {array.tolist()} is not in {space}: actions must be one integer in "
                f"[{space.start}, {space.start + space.n - 1}]"
            )
        return array.astype(np.int64)
    if not space.contains(array.astype(space.dtype) if array.shape == space.shape else array):
        raise ValueError(f"{where} {array.tolist()} is not in {space}")
    return array.astype(space.dtype)
