"""One action rule for every env (``worldsim.spaces.check_action``): the four real worlds, the model env
and its vector env give the same verdict for the same action, step valid actions in any numeric form
exactly as their float32 form, and keep error messages short for large inputs."""

from __future__ import annotations

import re
from typing import Any, Callable

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from test_world_model import one_thread, physics  # noqa: F401  (fixtures)

import worldsim  # noqa: F401  (registers the ids)
from worldsim.envs import WORLD_MODEL_ID, WORLDS
from worldsim.spaces import check_action
from worldsim.world_model import WorldModel

MODEL, VECTOR = "model", "model-vector"
ENVS = [*WORLDS, MODEL, VECTOR]
#: The worlds whose actions are integers (``MultiDiscrete``); the rest take ``Box(-1, 1)`` floats.
BLOCKWORLD = "worldsim/BlockWorld-v0"
BOX_ENVS = [name for name in ENVS if name != BLOCKWORLD]
#: Messages stay this short whatever the action's size.
MAX_MESSAGE = 500


def first(index: int) -> str:
    """The message's element index of the first offending value: [i] alone, [0, i] in a batch."""
    return rf"element \[(0, )?{index}\]"


#: (name, the bad action for an action size n, what the message must say).
BAD: list[tuple[str, Callable[[int], Any], str]] = [
    ("complex", lambda n: np.full(n, 0.5 + 0.5j), "not complex"),
    ("complex-zero-imaginary", lambda n: np.zeros(n, np.complex64), "not complex"),
    ("python-complex", lambda n: [0.5j] * n, "not complex"),
    ("bool", lambda n: np.ones(n, bool), "not bool"),
    ("python-bools", lambda n: [False] * n, "not bool"),
    ("numeric-strings", lambda n: ["0.5"] * n, "not a string"),
    ("one-numeric-string", lambda n: "0.5", "not a string"),
    ("bytes", lambda n: np.array([b"1"] * n), "not bytes"),
    ("objects", lambda n: np.zeros(n, object), "not a Python object"),
    ("none", lambda n: None, "not a Python object"),
    ("nan", lambda n: [np.nan] + [0.0] * (n - 1), rf"must be finite \({first(0)} is nan\)"),
    ("inf", lambda n: [0.0, np.inf] + [0.0] * (n - 2), rf"must be finite \({first(1)} is inf\)"),
    ("minus-inf-float32", lambda n: np.full(n, -np.inf, np.float32), rf"must be finite \({first(0)} is -inf\)"),
    ("out-of-bounds", lambda n: [0.0, 1.5] + [0.0] * (n - 2), rf"must lie in \[-1.0, 1.0\] \({first(1)} is 1.5\)"),
    ("integer-out-of-bounds", lambda n: [-2] + [0] * (n - 1), rf"must lie in \[-1.0, 1.0\] \({first(0)} is -2\)"),
    ("above-the-bound-in-float32", lambda n: [1.0000001] * n, r"must lie in \[-1.0, 1.0\]"),
    ("too-short", lambda n: np.zeros(n - 1, np.float32), r"must have shape \(.*\), not"),
    ("a-row", lambda n: np.zeros((1, n), np.float32), r"must have shape \(.*\), not"),
    ("a-scalar", lambda n: 0.5, r"must have shape \(.*\), not"),
    ("300x300", lambda n: np.zeros((300, 300)), r"\(an array of shape \(.*300, 300\) and dtype float64\)"),
    ("300x300-complex", lambda n: np.ones((300, 300), complex), "not complex"),
    ("ragged", lambda n: [[0.0], [0.0, 0.0]], "cannot be read as a numpy array"),
]

#: (name, a valid action for an action size n in some numeric form).
GOOD: list[tuple[str, Callable[[int], Any]]] = [
    ("float32", lambda n: np.linspace(-0.5, 0.5, n, dtype=np.float32)),
    ("python-floats", lambda n: [0.25, -0.75, 0.1][:n]),
    ("python-ints", lambda n: [1, 0, -1][:n]),
    ("int8", lambda n: np.array([-1, 1, 0][:n], np.int8)),
    ("float16-bounds", lambda n: np.array([-1.0, 1.0, -1.0][:n], np.float16)),
    # A float space judges the value it will use: float32 holds this as exactly 1.0.
    ("float64-onto-the-bound", lambda n: [np.nextafter(1.0, 2.0)] * n),
]


@pytest.fixture(scope="module")
def envs(physics) -> dict[str, Any]:
    """Every env once, reset: the real worlds as users make them, the model env and a vector env of 2."""
    checkpoint = str(physics[1])
    made: dict[str, Any] = {env_id: gymnasium.make(env_id) for env_id in WORLDS}
    made[MODEL] = gymnasium.make(WORLD_MODEL_ID, checkpoint=checkpoint, device="cpu", horizon=1000)
    made[VECTOR] = gymnasium.make_vec(
        WORLD_MODEL_ID, num_envs=2, vectorization_mode="vector_entry_point", checkpoint=checkpoint, device="cpu"
    )
    for env in made.values():
        env.reset(seed=0)
    yield made
    for env in made.values():
        env.close()


def action_size(env: Any) -> int:
    return getattr(env, "single_action_space", env.action_space).shape[0]


def step(name: str, env: Any, action: Any) -> Any:
    """The observation after ``action``; the vector env gets it for both sub-envs."""
    return env.step([action, action] if name == VECTOR else action)[0]


@pytest.mark.parametrize("bad,rule", [(make, rule) for _, make, rule in BAD], ids=[name for name, *_ in BAD])
def test_every_env_refuses_the_same_bad_action_with_a_short_message(envs, bad, rule: str) -> None:
    for name in BOX_ENVS:
        env = envs[name]
        with pytest.raises(ValueError) as error:
            step(name, env, bad(action_size(env)))
        message = str(error.value)
        assert re.search(rule, message), f"{name}: {message!r} does not say {rule!r}"
        assert len(message) < MAX_MESSAGE, f"{name}: {len(message)} chars"


@pytest.mark.parametrize("good", [make for _, make in GOOD], ids=[name for name, _ in GOOD])
def test_every_env_steps_a_valid_action_in_any_numeric_form_as_its_float32_form(envs, good) -> None:
    for name in BOX_ENVS:
        env = envs[name]
        action = good(action_size(env))
        env.reset(seed=1)
        observed = step(name, env, action)
        env.reset(seed=1)
        expected = step(name, env, np.asarray(action, np.float32))
        assert np.array_equal(observed, expected), name


#: (name, a bad action for BlockWorld's MultiDiscrete([3, 3, 2, 3, 3, 3, 5]), what the message must say).
BAD_INTEGER: list[tuple[str, Any, str]] = [
    ("floats", np.zeros(7, np.float32), "must be integers, not float32, which would be truncated"),
    ("python-floats", [1.0] + [0] * 6, "must be integers, not float64"),
    ("complex", np.zeros(7, complex), "not complex"),
    ("bools", np.zeros(7, bool), "not bool"),
    ("strings", ["1"] * 7, "not a string"),
    ("none", None, "not a Python object"),
    ("above-a-component", [0, 0, 2, 0, 0, 0, 0], r"must lie in \[0, 1\] \(element \[2\] is 2\)"),
    ("negative", [0, -1, 0, 0, 0, 0, 0], r"must lie in \[0, 2\] \(element \[1\] is -1\)"),
    ("huge", np.array([2**40] + [0] * 6), r"must lie in \[0, 2\] \(element \[0\] is 1099511627776\)"),
    ("too-short", np.zeros(6, np.int64), r"must have shape \(7,\), not \(6,\)"),
    ("300x300", np.zeros((300, 300), np.int64), r"\(an array of shape \(300, 300\) and dtype int64\)"),
]


@pytest.mark.parametrize("bad,rule", [(bad, rule) for _, bad, rule in BAD_INTEGER], ids=[n for n, *_ in BAD_INTEGER])
def test_blockworld_refuses_what_is_not_an_integer_action_of_its_space(envs, bad, rule: str) -> None:
    with pytest.raises(ValueError) as error:
        envs[BLOCKWORLD].step(bad)
    message = str(error.value)
    assert re.search(rule, message), message
    assert len(message) < MAX_MESSAGE


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int32, np.uint64, int])
def test_blockworld_steps_integers_of_any_width_as_its_int64_form(envs, dtype) -> None:
    env = envs[BLOCKWORLD]
    action = [1, 2, 1, 2, 1, 0, 3]
    env.reset(seed=1)
    observed = env.step(np.array(action, dtype) if dtype is not int else action)[0]
    env.reset(seed=1)
    assert np.array_equal(observed, env.step(np.array(action, np.int64))[0])


def test_rollouts_check_their_actions_by_the_same_rule(physics) -> None:
    model = WorldModel.from_checkpoint(physics[1], device="cpu")
    context = np.zeros((1, 1, 64, 64, 3), np.uint8)
    for actions, rule in (
        (np.full((1, 2, 3), 0.5 + 0.5j), "not complex"),
        (np.ones((1, 2, 3), bool), "not bool"),
        (np.full((1, 2, 3), np.nan), r"must be finite \(element \[0, 0, 0\] is nan\)"),
        (np.zeros((1, 300, 300)), r"must have shape \(1, 2, 3\), not \(1, 300, 300\)"),
    ):
        with pytest.raises(ValueError, match=rule) as error:
            model.rollout(context, actions, "a red ball", horizon=2)
        assert len(str(error.value)) < MAX_MESSAGE


@pytest.mark.parametrize(
    "space,action,verdict",
    [
        (spaces.Discrete(5, start=1), np.int64(5), np.int64),
        (spaces.Discrete(5), 2, np.int64),
        (spaces.Discrete(5), np.uint8(4), np.int64),
        (spaces.Discrete(5), 2.0, "must be integers, not float64, which would be truncated"),
        (spaces.Discrete(5), True, "not bool"),
        (spaces.Discrete(5, start=1), 0, r"must lie in \[1, 5\] \(it is 0\)"),
        (spaces.Discrete(5), [2], r"must have shape \(\), not \(1,\)"),
        (spaces.MultiDiscrete([3, 4]), [2, 3], np.int64),
        (spaces.MultiDiscrete([3, 4]), [1.0, 2.0], "must be integers"),
        (spaces.MultiDiscrete([3, 4]), [2, 4], r"must lie in \[0, 3\] \(element \[1\] is 4\)"),
        (spaces.MultiBinary(3), [0, 1, 1], np.int8),
        (spaces.MultiBinary(3), np.array([0, 1, 1], bool), "not bool"),
        (spaces.MultiBinary(3), [0, 2, 1], r"must lie in \[0, 1\]"),
        (spaces.Box(0, 10, (2,), np.int64), [3, 10], np.int64),
        (spaces.Box(0, 10, (2,), np.int64), [3.0, 1.0], "must be integers"),
        (
            spaces.Box(-np.inf, np.inf, (2,), np.float32),
            [0.0, 1e39],
            r"must fit float32, .* \(element \[1\] is 1e\+39\)",
        ),
        (spaces.Box(-np.inf, np.inf, (2,), np.float64), [0.0, 1e39], np.float64),
        (spaces.Box(0.1, 0.2, (1,), np.float32), [0.1], np.float32),  # float64 0.1 < float32 0.1, yet it is 0.1
        (spaces.Box(0, 100, (1,), np.int8), np.array([356], np.int64), r"must lie in \[0, 100\]"),  # no wrap to 100
    ],
)
def test_integer_spaces_take_integers_and_every_space_returns_its_dtype(space, action, verdict) -> None:
    if isinstance(verdict, str):
        with pytest.raises(ValueError, match=verdict):
            check_action(space, action)
        return
    checked = check_action(space, action)
    assert checked.dtype == verdict and np.array_equal(checked, np.asarray(action).astype(verdict))
