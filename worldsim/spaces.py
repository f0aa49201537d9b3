"""Gymnasium spaces as JSON and back, the stored form of an action, and checking actions.

Datasets and model files describe their observation and action spaces as plain JSON
(``describe_space``), so reading them never unpickles anything; ``space_from_description`` rebuilds
the space. Numpy and Gymnasium only: collection workers and the ground-truth worlds import it
without torch.
"""

from __future__ import annotations

import reprlib
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
        out = {"type": "MultiDiscrete", "nvec": space.nvec.tolist()}
        if np.any(space.start != 0):  # written only when set, so older descriptions read the same
            out["start"] = space.start.tolist()
        return out
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
        nvec = np.asarray(description["nvec"], np.int64)
        return spaces.MultiDiscrete(nvec, start=np.asarray(description.get("start", np.zeros_like(nvec)), np.int64))
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    raise ValueError(
        f"action space {dict(description)} cannot be rebuilt: worldsim models take Box, "
        "Discrete, MultiDiscrete or MultiBinary actions"
    )


#: Above this many elements an error message shows an action's shape and dtype, not its values.
SHOWN_ELEMENTS = 16
#: Characters of an action's values, or of a space, that an error message shows at most.
SHOWN_CHARS = 160
#: What a refused dtype kind (numpy's ``dtype.kind`` code) is called, and how to convert it on purpose.
REFUSED_KINDS = {
    "b": ("bool", "cast it on purpose, e.g. action.astype(np.{dtype})"),
    "c": ("complex", "pass the real part on purpose, e.g. action.real, if the imaginary part is meant to be 0"),
    "U": ("a string", "parse it first, e.g. float(text)"),
    "S": ("bytes", "parse it first, e.g. float(text)"),
    "O": ("a Python object", "pass a number or an array of numbers"),
    "M": ("a datetime", "pass a number or an array of numbers"),
    "m": ("a timedelta", "pass a number or an array of numbers"),
    "V": ("raw bytes", "pass a number or an array of numbers"),
}


def check_action(
    space: gymnasium.Space, action: Any, where: str = "action", batch_shape: tuple[int, ...] = ()
) -> np.ndarray:
    """``action`` as an array of ``space``'s dtype, or ValueError saying what is wrong and what to do.

    The one rule of every worldsim env (the real worlds, the model env and its vector env, play and
    ``WorldModel`` rollouts), so that nothing invalid is silently truncated, wrapped or dropped:

    1. numbers only: integer or real dtypes (Python ints and floats, numpy scalars and arrays). bool,
       complex, strings and objects are refused: numpy would turn them into numbers silently
       (``True`` -> 1.0, ``1+2j`` -> 1.0, ``"0.5"`` -> 0.5).
    2. integer spaces (Discrete, MultiDiscrete, MultiBinary, an integer Box) take integer dtypes
       only: 2.0 is refused as Gymnasium's ``Discrete.contains`` refuses it, rather than truncated.
    3. the shape is ``batch_shape + space.shape`` exactly (no broadcasting, no squeezing).
    4. every value is finite and lies within the space's bounds: for a float space as the env will use
       it, in the space's dtype (which must keep it finite); for an integer space as given.

    ``batch_shape`` leads the shape for batched actions: ``(num_envs,)``, ``(B, T)``.
    """
    array = _as_array(action, where)
    low, high = action_bounds(space)
    problem = (
        _dtype_problem(array.dtype, space.dtype)
        or _shape_problem(array.shape, (*batch_shape, *space.shape))
        or _value_problem(array, low, high, space.dtype)
    )
    if problem:
        described = _clip(str(space), SHOWN_CHARS)
        target = f"a batch of shape {batch_shape} of actions in {described}" if batch_shape else f"in {described}"
        raise ValueError(f"{where} {summarize(array)} is not {target}: {problem}")
    return array.astype(space.dtype)


def zero_action(space: gymnasium.Space) -> np.ndarray:
    """The all-zeros action (a ``Discrete`` space's lowest): a no-op in every worldsim world."""
    if isinstance(space, spaces.Discrete):
        return np.asarray(space.start, np.int64)
    return np.zeros(space.shape, space.dtype)


def action_bounds(space: gymnasium.Space) -> tuple[np.ndarray, np.ndarray]:
    """(low, high), the inclusive bounds of ``space``'s actions, shaped to broadcast against them."""
    if isinstance(space, spaces.Box):
        return space.low, space.high
    if isinstance(space, spaces.Discrete):
        return np.asarray(space.start), np.asarray(space.start + space.n - 1)
    if isinstance(space, spaces.MultiDiscrete):
        return space.start, space.start + space.nvec - 1
    if isinstance(space, spaces.MultiBinary):
        return np.zeros(space.shape, np.int64), np.ones(space.shape, np.int64)
    raise ValueError(
        f"action space {_clip(str(space), SHOWN_CHARS)} is not supported: worldsim checks Box, Discrete, "
        "MultiDiscrete and MultiBinary actions; flatten it with a wrapper first"
    )


def summarize(array: np.ndarray) -> str:
    """A short picture of an action for an error message: its values when few, else shape and dtype."""
    if array.size <= SHOWN_ELEMENTS and array.dtype.kind not in "OV":
        return _clip(repr(array.tolist()), SHOWN_CHARS)
    return f"(an array of shape {array.shape} and dtype {_clip(str(array.dtype), 40)})"


def _as_array(action: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(action)
    except (TypeError, ValueError) as error:  # ragged nested lists, a tensor on a GPU, ...
        raise ValueError(
            f"{where} {_clip(reprlib.repr(action), SHOWN_CHARS)} cannot be read as a numpy array "
            f"({_clip(str(error), SHOWN_CHARS)}): "
            "pass a number or an array of numbers"
        ) from None


def _dtype_problem(dtype: np.dtype, space_dtype: np.dtype) -> str | None:
    if dtype.kind in REFUSED_KINDS:
        name, hint = REFUSED_KINDS[dtype.kind]
        return (
            f"actions must be integer or real numbers, not {name} (dtype {_clip(str(dtype), 40)}), "
            f"which numpy would convert silently: {hint.format(dtype=np.dtype(space_dtype))}"
        )
    if np.issubdtype(space_dtype, np.integer) and dtype.kind == "f":
        return (
            f"actions must be integers, not {dtype}, which would be truncated silently: "
            "round on purpose, e.g. np.rint(action).astype(np.int64)"
        )
    return None


def _shape_problem(shape: tuple[int, ...], expected: tuple[int, ...]) -> str | None:
    return None if shape == expected else f"actions must have shape {expected}, not {shape}"


def _value_problem(array: np.ndarray, low: np.ndarray, high: np.ndarray, dtype: np.dtype) -> str | None:
    """What is wrong with the first non-finite, out-of-bounds or unrepresentable value, or None.

    A float space judges the value the env will use, the action in the space's dtype, so a float64
    0.1 meets a float32 bound of 0.1; an integer space judges the integers as given, so nothing wraps.
    """
    if array.dtype.kind == "f":
        index = _first(~np.isfinite(array))
        if index is not None:
            return f"actions must be finite{_element(array, index)}"
    values = array
    if np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore"):
            values = array.astype(dtype)
    index = _first((values < low) | (values > high))
    if index is not None:
        lo, hi = np.broadcast_to(low, array.shape)[index], np.broadcast_to(high, array.shape)[index]
        return f"actions must lie in [{lo}, {hi}]{_element(array, index)}"
    index = _first(~np.isfinite(values)) if values.dtype.kind == "f" else None
    if index is not None:  # within infinite bounds, but too large for the dtype
        return (
            f"actions must fit {np.dtype(dtype)}, whose largest value is {np.finfo(dtype).max}{_element(array, index)}"
        )
    return None


def _first(mask: np.ndarray) -> tuple[int, ...] | None:
    """The index of the first True of ``mask`` (() for a 0-d one), or None when there is none."""
    flat = np.flatnonzero(mask)
    return None if flat.size == 0 else tuple(int(i) for i in np.unravel_index(flat[0], mask.shape))


def _element(array: np.ndarray, index: tuple[int, ...]) -> str:
    value = _clip(str(array[index]), 40)
    return f" (it is {value})" if array.ndim == 0 else f" (element {list(index)} is {value})"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
