"""Every ``worldsim`` command the README and docs show composes: no misspelt key, no stale spelling.

Each command in a fenced shell block is composed with Hydra exactly as the CLI would compose it
(``worldsim <command> --cfg job`` without the process) and built into its typed config, so a key
that no longer exists, a value of the wrong type or a setting the config refuses fails here rather
than in a reader's terminal. A sweep (``--multirun a=1,2``) is composed at its first point;
placeholders such as ``<world>`` stand for any name and ``...`` for overrides left out. The commands are not run: what they measure is
in the docs beside them, with the machine it ran on.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from worldsim.cli import COMMANDS, register

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:bash|sh|shell)\n(.*?)^```", re.M | re.S)
PLACEHOLDER = re.compile(r"<[^<>\s]+>")
FLAGS = {"--cfg", "job", "--multirun", "-m", "--resolve"}


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `worldsim`) of every worldsim command in a shell block of the docs."""
    found = []
    for page in PAGES:
        for block in SHELL_BLOCK.findall(page.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                for part in re.split(r"&&|;", line):
                    words = shlex.split(part, comments=True)
                    if len(words) >= 2 and words[0] == "worldsim" and words[1] in COMMANDS:
                        found.append((f"{page.relative_to(REPO)}: {' '.join(words)}", words[1:]))
    return found


COMMAND_LINES = documented_commands()


def first_point(overrides: list[str]) -> list[str]:
    """A sweep's overrides at their first point (``a=1,2`` -> ``a=1``); others as they are."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for text, override in zip(overrides, parsed):
        if override.is_sweep_override():
            value = next(override.sweep_string_iterator())
            out.append(f"{override.get_key_element()}={value}")
        else:
            out.append(text)
    return out


def test_the_docs_show_every_command() -> None:
    shown = {argv[0] for _, argv in COMMAND_LINES}
    assert shown == set(COMMANDS), f"no documented example of {sorted(set(COMMANDS) - shown)}"


@pytest.mark.parametrize("where,argv", COMMAND_LINES, ids=[where for where, _ in COMMAND_LINES])
def test_documented_command_composes_into_its_typed_config(where: str, argv: list[str]) -> None:
    name, rest = argv[0], [word for word in argv[1:] if word not in FLAGS]
    if "--help" in rest or any(word.startswith("hydra/launcher=") for word in rest):
        pytest.skip("help, or a launcher plugin this machine does not install")
    words = [word for word in rest if word != "..." and not PLACEHOLDER.fullmatch(word)]
    overrides = first_point([PLACEHOLDER.sub("x", word) for word in words])
    register(name)
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="worldsim.configs", version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    OmegaConf.to_object(cfg)  # the typed config, checked by its own rules
