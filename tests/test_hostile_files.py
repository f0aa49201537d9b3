"""Files users load are data: what a model file records never chooses code to import, and files that
are not what they claim are refused with the file named (docs/trust.md lists every case)."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium
import pytest
import torch
from test_world_model import build_model_file, one_thread, physics  # noqa: F401  (fixtures)

import worldsim  # noqa: F401  (registers the ids)
from worldsim.checkpoint import CheckpointError
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
    with pytest.raises(ValueError, match=r"'somemodule:X-v0'.*never imports a module a file names: `import somemodule`"):
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
