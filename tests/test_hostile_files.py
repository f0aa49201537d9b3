"""Files users load are data: what a model file records never chooses code to import, and files that
are not what they claim are refused with the file named (docs/trust.md lists every case)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import gymnasium
import pytest
import torch
from test_world_model import build_model_file, one_thread, physics  # noqa: F401  (fixtures)

import worldsim  # noqa: F401  (registers the ids)
from worldsim.checkpoint import CheckpointError, weights_digest
from worldsim.training.train import stage_resume
from worldsim.world_model import WorldModel


def recording_env_id(physics, env_id: str, out: Path) -> Path:
    export = torch.load(physics[1], weights_only=True)
    export["worldsim"]["data"]["env_id"] = env_id
    torch.save(export, out)
    return out


def test_an_env_id_a_model_file_records_never_imports_a_module(
    physics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "somemodule.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    crafted = recording_env_id(physics, "somemodule:X-v0", tmp_path / "crafted.pt")
    with pytest.raises(
        ValueError, match=r"'somemodule:X-v0'.*never imports a module a file names: `import somemodule`"
    ):
        gymnasium.make("worldsim/WorldModel-v0", checkpoint=str(crafted)).reset(seed=0)
    assert not marker.exists() and "somemodule" not in sys.modules

    # The bare id, once its package registered it, is what worldsim makes; the prefix is ignored.
    prefixed = recording_env_id(physics, "somemodule:worldsim/Physics-v0", tmp_path / "prefixed.pt")
    assert WorldModel.from_checkpoint(prefixed).real_env_id() == "worldsim/Physics-v0"
    env = gymnasium.make("worldsim/WorldModel-v0", checkpoint=str(prefixed), context="env", device="cpu")
    env.reset(seed=0)
    env.close()
    assert not marker.exists() and "somemodule" not in sys.modules

    unknown = recording_env_id(physics, "Nowhere-v3", tmp_path / "unknown.pt")
    with pytest.raises(ValueError, match=r"'Nowhere-v3', which is not registered: import the package"):
        WorldModel.from_checkpoint(unknown).real_env_id()


def test_files_that_are_no_model_are_refused_with_the_file_named(tmp_path: Path) -> None:
    noise = tmp_path / "noise.pt"
    noise.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(CheckpointError, match=rf"{noise}: .*no file torch.save wrote"):
        WorldModel.from_checkpoint(noise)
    with pytest.raises(CheckpointError, match=rf"{tmp_path} is a directory: pass a model file"):
        WorldModel.from_checkpoint(tmp_path)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(Path(noise).read_bytes()[:10])
    with pytest.raises(CheckpointError, match="truncated, corrupt, or another format"):
        WorldModel.from_checkpoint(truncated)


def worldsim_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "worldsim.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


@pytest.mark.slow
def test_an_autoencoder_file_as_init_is_one_clear_error_without_a_traceback(physics, tmp_path: Path) -> None:
    export = torch.load(physics[1], weights_only=True)
    export["weights"] = {"autoencoder": export["weights"]["autoencoder"]}
    export["worldsim"].update(stage="autoencoder", weights_sha256=weights_digest(export["weights"]))
    torch.save(export, tmp_path / "autoencoder.pt")
    result = worldsim_cli(
        "train", "stage=dynamics", f"init={tmp_path / 'autoencoder.pt'}", f"data={physics[0]}", "out=run", cwd=tmp_path
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.search(
        r"worldsim train: error: init=.*autoencoder.pt holds \['autoencoder'\], no dynamics model", result.stderr
    )
    assert "HYDRA_FULL_ERROR=1" in result.stderr


def test_a_truncated_last_checkpoint_names_the_checkpoints_to_resume_from(physics, tmp_path: Path) -> None:
    checkpoints = tmp_path / "run" / "dynamics" / "checkpoints"
    checkpoints.mkdir(parents=True)
    record = torch.load(physics[1], weights_only=True)["worldsim"]
    torch.save({"worldsim": {**record, "kind": "lightning", "stage": "dynamics"}}, checkpoints / "step=000004.ckpt")
    (checkpoints / "last.ckpt").write_bytes((checkpoints / "step=000004.ckpt").read_bytes()[:100])
    with pytest.raises(
        CheckpointError,
        match=r"last.ckpt cannot be resumed from .*resume from another checkpoint of the run: .*step=000004.ckpt",
    ):
        stage_resume(str(tmp_path / "run"), "dynamics", required=True)
    with pytest.raises(CheckpointError, match=r"resume from another checkpoint of the run: .*step=000004.ckpt"):
        stage_resume(str(checkpoints / "last.ckpt"), "dynamics", required=True)
    assert (
        stage_resume(str(checkpoints / "step=000004.ckpt"), "dynamics", required=True)
        == checkpoints / "step=000004.ckpt"
    )


def test_a_model_file_whose_weights_changed_is_refused_and_the_references_still_load(physics, tmp_path: Path) -> None:
    export = torch.load(physics[1], weights_only=True)
    export["weights"]["dit"]["final_layer.linear.weight"].view(-1)[7] += 1e-3  # one value, as a flipped byte would
    torch.save(export, tmp_path / "changed.pt")
    with pytest.raises(CheckpointError, match=r"changed.pt: its weights differ from the sha256 it records"):
        WorldModel.from_checkpoint(tmp_path / "changed.pt")
    assert WorldModel.from_checkpoint(physics[1]).env_id == "worldsim/Physics-v0"
    for world in ("physics", "push"):  # shipped before files recorded a digest: they load unchecked
        assert "weights_sha256" not in torch.load(worldsim.reference_checkpoint(world), weights_only=True)["worldsim"]
        WorldModel.from_checkpoint(worldsim.reference_checkpoint(world))
