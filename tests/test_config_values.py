"""Every command's config refuses out-of-range numbers when it is built, naming the key to fix.

Configs are composed as the CLI composes them (``configs/<command>.yaml`` over the typed schema),
so a value refused here never reaches numpy, a DataLoader or a simulator as an internal error.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Iterator

import pytest
from hydra import compose, initialize_config_module
from hypothesis import given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from worldsim.cli import COMMANDS, _load, register


def numeric_fields(schema: type, prefix: str = "") -> Iterator[tuple[str, type]]:
    """(dotted key, int, float or list) of every number field in a config dataclass tree, lists included."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        kind = hints[field.name]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        base = args[0] if typing.get_origin(kind) is typing.Union and args else kind
        if typing.get_origin(base) is list and typing.get_args(base)[0] in (int, float):
            yield f"{prefix}{field.name}", list
        elif dataclasses.is_dataclass(base) and field.default is None:
            continue  # a node unset by default (train's collect): its own command checks its fields
        elif dataclasses.is_dataclass(base):
            yield from numeric_fields(base, f"{prefix}{field.name}.")
        elif base in (int, float):
            yield f"{prefix}{field.name}", base


FIELDS = [
    (name, key, kind) for name, command in COMMANDS.items() for key, kind in numeric_fields(_load(command.config))
]
INTEGERS = [field for field in FIELDS if field[2] is not float]  # int fields and lists of ints


@pytest.fixture(scope="module")
def build():
    with initialize_config_module("worldsim.configs", version_base="1.3"):
        for name in COMMANDS:
            register(name)

        def built(name: str, key: str, value: Any) -> Any:
            return OmegaConf.to_object(compose(config_name=name, overrides=[f"{key}={value}"]))

        yield built


def refused_naming(build, name: str, key: str, value: Any) -> bool:
    try:
        build(name, key, value)
    except ValueError as error:
        assert key.split(".")[-1] in str(error), f"worldsim {name} {key}={value}: {error}"
        return True
    return False


@pytest.mark.parametrize("name, key, kind", INTEGERS, ids=[f"{n}:{k}" for n, k, _ in INTEGERS])
def test_no_count_size_seed_or_step_may_be_below_minus_one(build, name: str, key: str, kind: type) -> None:
    """-1 means "all" or "unset" for a few fields (keep_checkpoints, num_sanity_val_steps); nothing takes -2."""
    value = "[-2]" if kind is list else -2
    assert refused_naming(build, name, key, value), f"worldsim {name} {key}={value} was accepted"


@settings(max_examples=60, deadline=None)
@given(
    field=st.sampled_from(FIELDS),
    number=st.one_of(
        st.integers(-3, 3), st.sampled_from([math.nan, math.inf, -math.inf, 1e12]), st.floats(-2, 2, allow_nan=False)
    ),
)
def test_any_number_either_builds_or_is_refused_by_name(build, field, number) -> None:
    name, key, kind = field
    if kind is not float and isinstance(number, float):
        return  # Hydra itself refuses a float for an int field, with its own message
    value = f"[{number}]" if kind is list else number
    try:
        refused_naming(build, name, key, value)
    except Exception as error:
        raise AssertionError(f"worldsim {name} {key}={value}: {type(error).__name__}: {error}") from None
