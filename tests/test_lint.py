"""The tree passes ruff's lint and is formatted as ruff formats it (the settings are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("ruff", reason="ruff comes with the test extra: pip install -e '.[test]'")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes(command: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", *command, "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, (
        f"ruff {' '.join(command)} . found:\n{result.stdout}{result.stderr}\n"
        f"fix with `ruff check --fix . && ruff format .`"
    )
