"""The ``worldsim`` console script: subcommands, Hydra overrides, help and multirun."""

from __future__ import annotations

import dataclasses
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from worldsim.cli import COMMANDS, _load, field_docs
from worldsim.data.dataset import EpisodeDataset


def worldsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldsim.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    result = worldsim("--help", cwd=tmp_path)
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_unknown_subcommand_is_refused(tmp_path: Path) -> None:
    result = worldsim("colect", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown command 'colect'" in result.stderr and "collect" in result.stderr


def test_progress_reaches_a_pipe_while_the_job_still_runs(tmp_path: Path) -> None:
    """A job's prints arrive line by line when its output goes to a file or a pipe, not at exit."""
    job = (
        "import sys\n"
        "from worldsim import cli\n"
        "cli.hydra_app = lambda name: lambda: (print('step 1 of 2'), sys.stdin.readline())\n"
        "cli.main(['imagine'])\n"
    )
    buffered = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    process = subprocess.Popen(
        [sys.executable, "-c", job],
        cwd=tmp_path,
        env=buffered,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        assert ready, "the job's print did not reach the pipe while the job was running"
        assert process.stdout.readline() == "step 1 of 2\n"
        process.stdin.close()
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_config_field_is_documented(name: str) -> None:
    schema = _load(COMMANDS[name].config)
    docs = field_docs(schema)
    assert set(docs) == {field.name for field in dataclasses.fields(schema)}
    assert all(docs.values())


def test_subcommand_help_shows_fields_and_docs(tmp_path: Path) -> None:
    result = worldsim("collect", "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "worldsim collect:" in result.stdout
    assert "  episodes=64\n      episodes in the finished dataset" in result.stdout


def test_misspelt_override_is_an_error(tmp_path: Path) -> None:
    result = worldsim("collect", "episdoes=3", cwd=tmp_path)
    assert result.returncode != 0
    assert "episdoes" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.slow
@pytest.mark.parametrize("order", ["flag first", "overrides first"])
def test_cfg_job_prints_the_composed_config_with_overrides(tmp_path: Path, order: str) -> None:
    overrides = ["model=small", "+dynamics.dit={width:256,depth:5}", "optim.lr=5e-4"]
    args = ["--cfg", "job", *overrides] if order == "flag first" else [*overrides, "--cfg", "job"]
    result = worldsim("train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "preset: small" in result.stdout
    assert "  dit:\n    width: 256\n    depth: 5\n" in result.stdout
    assert "lr: 0.0005" in result.stdout
    assert not (tmp_path / "runs").exists()  # printing the config runs nothing


def test_collect_overrides_and_multirun(tmp_path: Path) -> None:
    result = worldsim(
        "collect",
        "--multirun",
        "env=worldsim/Physics-v0",
        "episodes=2",
        "shard_episodes=1",
        "max_steps=5",
        "progress=false",
        "seed=1,2",
        "out=runs/seed${seed}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    first, second = (EpisodeDataset(tmp_path / f"runs/seed{seed}") for seed in (1, 2))
    assert len(first) == len(second) == 2
    assert first.lengths.tolist() == [5, 5]
    assert first.manifest["seed"] == 1 and second.manifest["seed"] == 2
    assert (first.episode(0).frames != second.episode(0).frames).any()
    assert "frames/s" in result.stdout


def test_quickstart_draws_one_strip_per_world(tmp_path: Path) -> None:
    result = worldsim(
        "quickstart",
        "out=qs",
        "episodes=1",
        "workers=1",
        "strip_frames=3",
        "train=false",
        "eval=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    picture = cv2.imread(str(tmp_path / "qs" / "worlds.png"))
    # five rows of 64x64 frames drawn twice as large, each with a 4-pixel margin
    assert picture.shape[0] == 5 * (128 + 4)
    for name in ("physics", "push", "occlusion", "orbit", "blockworld"):
        assert len(EpisodeDataset(tmp_path / "qs" / "data" / name)) == 1


@pytest.mark.slow
def test_quickstart_runs_the_whole_loop(tmp_path: Path) -> None:
    """Record, train both stages and evaluate every suite, at a size that only proves the wiring."""
    result = worldsim(
        "quickstart",
        "out=qs",
        "worlds=[worldsim/Physics-v0]",
        "episodes=1",
        "workers=1",
        "train_episodes=3",
        "ae_steps=2",
        "dynamics_steps=2",
        "eval_n=1",
        "reference=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "qs" / "run" / "model.pt").is_file()
    rows = json.loads((tmp_path / "qs" / "eval" / "results.json").read_text())["rows"]
    assert {r["suite"] for r in rows} == {
        "physics",
        "permanence",
        "consistency",
        "action",
        "rollout",
        "reconstruction",
        "conditioning",
    }
    # its own world only: physics, rollout and its autoencoder on Physics, the caption probe (one scenario: no
    # actions to shuffle)
    assert {r["suite"] for r in rows if r["predictor"] == "model"} == {
        "physics",
        "rollout",
        "reconstruction",
        "conditioning",
    }
    assert "quickstart finished" in result.stdout and "report.html" in result.stdout
