"""Checkpoints load with weights_only, round-trip exactly, export small, and refuse what they cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_train import config  # the tiny stage-1 run both files train (pytest puts tests/ on the path)

from worldsim.checkpoint import (
    CHECKPOINT_SCHEMA,
    CheckpointError,
    export_checkpoint,
    load_autoencoder,
    load_checkpoint,
)
from worldsim.data.collect import CollectConfig, collect
from worldsim.models.autoencoder import uint8_to_unit
from worldsim.training.autoencoder_module import AutoencoderModule
from worldsim.training.train import build_autoencoder_config, train


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    collect(CollectConfig(env="worldsim/Physics-v0", episodes=3, max_steps=8, progress=False, out=str(root / "data")))
    train(config(root / "data", root / "out", steps=6, every=3))
    return root / "out"


def test_training_checkpoint_loads_with_weights_only_and_records_the_run(run: Path) -> None:
    raw = torch.load(run / "autoencoder" / "checkpoints" / "last.ckpt", weights_only=True)
    record = raw["worldsim"]
    assert record["schema"] == CHECKPOINT_SCHEMA and record["stage"] == "autoencoder"
    assert record["kind"] == "lightning" and record["global_step"] == 6
    assert record["configs"]["autoencoder"]["base_channels"] == 8
    assert record["data"]["env_id"] == "worldsim/Physics-v0"
    assert record["data"]["action_space"]["type"] == "Box" and record["data"]["frame_shape"] == [64, 64, 3]
    assert "optimizer_states" in raw and "lr_schedulers" in raw


def test_reloaded_autoencoder_gives_identical_outputs(run: Path) -> None:
    checkpoint = load_checkpoint(run / "autoencoder" / "checkpoints" / "last.ckpt")
    cfg = config(Path("unused"), Path("unused"), steps=6)
    module = AutoencoderModule(build_autoencoder_config(cfg.autoencoder_model), cfg.optim, 6)
    module.load_state_dict(checkpoint["state_dict"])
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    expected = module.inference_model(uint8_to_unit(frames))[0]
    expected_latents = module.inference_model.encode_frames(frames)
    for path in (run / "autoencoder" / "checkpoints" / "last.ckpt", run / "autoencoder.pt"):
        model = load_autoencoder(path)
        assert torch.equal(model(uint8_to_unit(frames))[0], expected)
        assert torch.equal(model.encode_frames(frames), expected_latents)  # latent statistics travel too


def test_export_is_small_and_holds_only_inference_weights(run: Path, tmp_path: Path) -> None:
    out = export_checkpoint(run / "autoencoder" / "checkpoints" / "last.ckpt", tmp_path / "ae.pt")
    exported = torch.load(out, weights_only=True)
    assert set(exported) == {"worldsim", "weights"} and set(exported["weights"]) == {"autoencoder"}
    assert exported["worldsim"]["kind"] == "export" and exported["worldsim"]["global_step"] == 6
    assert out.stat().st_size < 0.5 * (run / "autoencoder" / "checkpoints" / "last.ckpt").stat().st_size


def test_half_precision_export_is_half_the_size_and_loads_into_float32(run: Path, tmp_path: Path) -> None:
    ckpt = run / "autoencoder" / "checkpoints" / "last.ckpt"
    full = export_checkpoint(ckpt, tmp_path / "ae32.pt")
    half = export_checkpoint(ckpt, tmp_path / "ae16.pt", dtype="float16")
    weights = torch.load(half, weights_only=True)["weights"]["autoencoder"]
    assert {v.dtype for v in weights.values() if v.is_floating_point()} == {torch.float16}
    assert half.stat().st_size < 0.6 * full.stat().st_size
    frames = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    reference, model = load_autoencoder(full), load_autoencoder(half)
    assert next(model.parameters()).dtype == torch.float32
    reconstruction = model(uint8_to_unit(frames))[0]
    assert torch.allclose(reconstruction, reference(uint8_to_unit(frames))[0], atol=1e-2)
    with pytest.raises(ValueError, match="export dtype 'int8' is not one of"):
        export_checkpoint(ckpt, tmp_path / "bad.pt", dtype="int8")


def test_incompatible_schema_is_refused_with_what_to_do(run: Path, tmp_path: Path) -> None:
    raw = torch.load(run / "autoencoder.pt", weights_only=True)
    for schema, advice in ((CHECKPOINT_SCHEMA + 1, "upgrade worldsim"), (0, "re-train it")):
        raw["worldsim"]["schema"] = schema
        torch.save(raw, tmp_path / "other.pt")
        with pytest.raises(
            CheckpointError,
            match=rf"was written by schema {schema}; this worldsim reads "
            rf"schema {CHECKPOINT_SCHEMA}: {advice}",
        ):
            load_autoencoder(tmp_path / "other.pt")


def test_missing_foreign_and_pickled_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="no 'worldsim' record"):
        load_checkpoint(tmp_path / "foreign.ckpt")
    torch.save({"worldsim": {"schema": CHECKPOINT_SCHEMA}, "obj": Path("x")}, tmp_path / "pickled.ckpt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(tmp_path / "pickled.ckpt")
