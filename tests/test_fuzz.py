"""Fuzzing what users hand the envs, with hypothesis: actions of any dtype and shape to every env, and
constructor arguments to the real worlds. Each either works or raises a short ValueError (TypeError
for arguments of the wrong type); never another exception, never a silent cast of an invalid value.

Examples are derandomized, so CI runs the same cases every time; the whole file takes seconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.envs.registration import load_env_creator
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_actions import ENVS, MAX_MESSAGE, VECTOR, envs  # noqa: F401  (fixtures)
from test_world_model import one_thread, physics  # noqa: F401  (fixtures)

from worldsim.envs import WORLDS
from worldsim.envs.base import PHYSICS_HZ, SIZE_RANGE
from worldsim.envs.params import SPLITS
from worldsim.envs.push import STARTS

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None)

#: Anything a user might pass by mistake: wrong types, out-of-range numbers, numpy values.
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.complex_numbers(),
    st.text(max_size=4),
    st.lists(st.integers(-3, 3), max_size=2),
    hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=1, max_side=2)),
    hnp.from_dtype(np.dtype(np.int64), min_value=-10, max_value=300),
    st.sampled_from([True, np.bool_(True), 64.0, np.float32(32), np.int64(2**40), 10**9, "ID", "id ", b"id"]),
)


def action_strategy(shape: tuple[int, ...]) -> st.SearchStrategy[Any]:
    """Actions of every kind: near-valid arrays of ``shape``, arrays of any dtype and shape, scalars, lists."""
    near_floats = hnp.arrays(hnp.floating_dtypes(), shape, elements={"min_value": -1.25, "max_value": 1.25})
    near_ints = hnp.arrays(hnp.integer_dtypes(), shape, elements={"min_value": -2, "max_value": 2})
    anything = hnp.arrays(
        st.one_of(hnp.scalar_dtypes(), hnp.unicode_string_dtypes(max_len=3), hnp.byte_string_dtypes(max_len=3)),
        st.one_of(st.just(shape), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    )
    scalars = st.one_of(st.floats(), st.integers(), st.booleans(), st.complex_numbers(), st.text(max_size=3))
    lists = st.lists(
        st.one_of(st.floats(-2, 2), st.integers(-2, 2), st.booleans(), st.text(max_size=2)),
        min_size=max(0, shape[-1] - 1),
        max_size=shape[-1] + 1,
    )
    return st.one_of(near_floats, near_ints, anything, scalars, lists)


def is_valid_action(action: Any, space: spaces.Space, shape: tuple[int, ...]) -> bool:
    """The rule, restated: real or integer numbers of ``shape``, finite, within the Box's bounds as float32;
    for an integer space (BlockWorld's MultiDiscrete), integers within its bounds as given."""
    try:
        array = np.asarray(action)
    except (TypeError, ValueError):
        return False
    if array.dtype.kind not in "iuf" or array.shape != shape:
        return False
    if isinstance(space, spaces.MultiDiscrete):
        return array.dtype.kind in "iu" and bool(np.all(array >= 0) and np.all(array < space.nvec))
    with np.errstate(over="ignore"):
        values = array.astype(space.dtype)
    return bool(np.all(np.isfinite(values)) and np.all(values >= space.low) and np.all(values <= space.high))


@pytest.mark.parametrize("name", ENVS)
def test_every_env_steps_a_valid_action_or_refuses_it_with_a_short_value_error(envs, name: str) -> None:
    env = envs[name]
    space = getattr(env, "single_action_space", env.action_space)
    shape = (env.num_envs, *space.shape) if name == VECTOR else space.shape

    @FUZZ
    @given(action=action_strategy(shape))
    def check(action: Any) -> None:
        valid = is_valid_action(action, space, shape)
        try:
            env.step(action)  # the vector env's batch shape is in the strategy
        except ValueError as error:
            assert not valid, f"{name} refused the valid action {action!r}: {error}"
            assert len(str(error)) < MAX_MESSAGE, f"{name}: a message of {len(str(error))} chars"
        else:
            assert valid, f"{name} stepped the invalid action {action!r}"

    check()


def is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and low <= value <= high


def is_name(value: Any, names: tuple[str, ...]) -> bool:
    return isinstance(value, str) and value in names


def invalid_kwargs(kwargs: dict[str, Any]) -> list[str]:
    """The names of the documented constructor arguments whose values break their rule."""
    rules = {
        "render_mode": lambda v: v is None or is_name(v, ("rgb_array",)),
        "width": lambda v: is_int(v, *SIZE_RANGE),
        "height": lambda v: is_int(v, *SIZE_RANGE),
        "split": lambda v: is_name(v, SPLITS),
        "frame_skip": lambda v: is_int(v, 1, PHYSICS_HZ),
        "start": lambda v: is_name(v, STARTS),
    }
    return [name for name, value in kwargs.items() if not rules[name](value)]


@st.composite
def kwargs_strategy(draw: st.DrawFn, env_id: str) -> dict[str, Any]:
    """Valid values (kept small, so valid envs are quick) for some documented arguments, and in three
    examples out of four junk for one of them, so every argument's rule is reached."""
    size = st.integers(32, 48)
    valid = {
        "render_mode": st.sampled_from([None, "rgb_array"]),
        "width": size,
        "height": size,
        "split": st.sampled_from(SPLITS),
    }
    if env_id != "worldsim/BlockWorld-v0":  # a voxel world has no physics substeps
        valid["frame_skip"] = st.integers(1, 8)
    if env_id == "worldsim/Push-v0":
        valid["start"] = st.sampled_from(STARTS)
    kwargs = draw(st.fixed_dictionaries({}, optional=valid))
    if draw(st.integers(0, 3)):
        kwargs[draw(st.sampled_from(sorted(valid)))] = draw(JUNK)
    return kwargs


@pytest.mark.parametrize("env_id", list(WORLDS))
def test_real_worlds_take_their_documented_arguments_or_refuse_them_clearly(env_id: str) -> None:
    # The class itself, not gymnasium.make: make reads render_mode before the env does (and calls
    # .endswith on it), so a non-string render_mode would test Gymnasium, not worldsim.
    world = load_env_creator(WORLDS[env_id][0])

    @FUZZ
    @given(kwargs=kwargs_strategy(env_id))
    def check(kwargs: dict[str, Any]) -> None:
        bad = invalid_kwargs(kwargs)
        if not bad:
            env = world(**kwargs)
            observation, _ = env.reset(seed=0)
            no_op = np.zeros(env.action_space.shape, env.action_space.dtype)
            assert env.observation_space.contains(env.step(no_op)[0])
            assert env.observation_space.contains(observation)
            env.close()
            return
        with pytest.raises((ValueError, TypeError)) as error:
            world(**kwargs).close()
        message = str(error.value)
        assert any(name in message for name in bad), f"{message!r} names none of {bad}"
        assert len(message) < MAX_MESSAGE, f"a message of {len(message)} chars"

    check()
