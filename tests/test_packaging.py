"""The distribution installs envs/, evals/ and configs/ under the worldsim namespace."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest

import worldsim

REPO = Path(__file__).resolve().parents[1]


def test_import_registers_every_world() -> None:
    for name in ("Physics", "Push", "Occlusion", "Orbit"):
        assert f"worldsim/{name}-v0" in gymnasium.registry
    assert worldsim.__version__


@pytest.mark.slow
def test_plain_install_imports_mapped_packages(tmp_path: Path) -> None:
    """A non-editable wheel holds worldsim.envs/evals/configs and no top-level envs or evals."""
    wheels, target, source = tmp_path / "wheels", tmp_path / "site", tmp_path / "source"
    # Built from a copy: setuptools writes build/ beside the sources, and a stale one in the
    # repository would put files in the wheel that the sources no longer have.
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    for name in ("worldsim", "envs", "evals", "configs"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
    )
    (wheel,) = wheels.glob("worldsim-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], check=True)

    assert not (target / "envs").exists() and not (target / "evals").exists()
    assert (target / "worldsim" / "configs" / "collect.yaml").is_file()
    recipes = {path.name for path in (REPO / "configs" / "experiment").glob("*.yaml")}
    assert recipes and recipes <= {path.name for path in (target / "worldsim" / "configs" / "experiment").iterdir()}
    shipped = {path.name for path in (REPO / "worldsim" / "reference").iterdir()}
    assert shipped and shipped <= {path.name for path in (target / "worldsim" / "reference").iterdir()}
    assert {path.suffix for path in (target / "worldsim" / "reference").iterdir()} == {".pt", ".md"}  # models, not logs
    for package in (REPO / "worldsim").glob("*/__init__.py"):  # every subpackage is shipped
        assert (target / "worldsim" / package.parent.name / "__init__.py").is_file(), package
    probe = (
        "import gymnasium, worldsim, worldsim.envs, worldsim.evals, worldsim.configs;"
        "gymnasium.make('worldsim/Physics-v0').close();"
        "assert worldsim.reference_worlds() == ['blockworld', 'occlusion', 'orbit', 'physics', 'push'];"
        "print(worldsim.envs.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        check=True,
    )
    # PyBullet's C code prints a banner line of its own on stdout first.
    assert Path(result.stdout.splitlines()[-1]).is_relative_to(target)
