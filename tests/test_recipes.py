"""Presets and recipes: every size has a name, and each shipped model's recipe composes to its record."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from test_train import config

import worldsim
from worldsim.data.collect import CollectConfig, collect
from worldsim.models.dit import DIT_PRESETS, VideoDiT, VideoDiTConfig
from worldsim.models.text import TEXT_ENCODER_PRESETS, TextEncoder
from worldsim.training.checkpoint import load_checkpoint, part_state_dict
from worldsim.training.dynamics_module import build_networks
from worldsim.training.train import TrainConfig, train


def compose_train(*overrides: str) -> TrainConfig:
    """``worldsim train <overrides>``'s config, composed as the CLI composes it."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from worldsim.cli import hydra_app

    hydra_app("train")  # registers the schema, its help and the ${reference:...} resolver, as the CLI does
    with initialize_config_module("worldsim.configs", version_base="1.3"):
        return OmegaConf.to_object(compose("train", overrides=list(overrides)))


def record(world: str) -> dict[str, Any]:
    """The ``worldsim`` record of the shipped reference model of ``world``."""
    return load_checkpoint(worldsim.reference_checkpoint(world))["worldsim"]


def test_every_dit_preset_has_a_text_encoder_preset_of_its_text_width() -> None:
    assert set(DIT_PRESETS) == set(TEXT_ENCODER_PRESETS)
    for name in DIT_PRESETS:
        assert VideoDiTConfig.preset(name).text_width == TEXT_ENCODER_PRESETS[name].width, name


@pytest.mark.parametrize("world", ["physics", "push"])
def test_model_mid_builds_the_physics_and_push_references_networks(world: str) -> None:
    shipped = record(world)
    cfg = compose_train("model=mid", "dynamics.clip_length=16")
    dit, text = build_networks(cfg.dynamics, shipped["data"])
    assert dataclasses.asdict(dit) == shipped["configs"]["dit"]
    assert dataclasses.asdict(text) == shipped["configs"]["text"]
    assert cfg.autoencoder_model.preset == "tiny"
    # The shipped weights fit the preset's networks key for key and shape for shape.
    weights = load_checkpoint(worldsim.reference_checkpoint(world))
    VideoDiT(dit).load_state_dict(part_state_dict(weights, "dit"), strict=True)
    TextEncoder(text).load_state_dict(part_state_dict(weights, "text"), strict=True)
    counts = [sum(p.numel() for p in net.parameters()) for net in (VideoDiT(dit), TextEncoder(text))]
    assert [round(n / 1e6, 2) for n in counts] == [7.77, 0.83]  # as the preset table's comments say


def test_collect_records_the_data_then_trains_and_a_second_run_records_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    cfg = dataclasses.replace(config(data, tmp_path / "run", steps=2), collect=CollectConfig(
        env="worldsim/Physics-v0", episodes=4, max_steps=12, progress=False, out=str(data)))
    assert train(cfg)["autoencoder"].is_file()
    manifest = (data / "manifest.json").read_bytes()
    assert json.loads(manifest)["episodes"] == 4
    shards = {path: path.stat().st_mtime_ns for path in data.glob("shard-*/*")}
    assert shards and "collected 4 episodes" in capsys.readouterr().out

    assert train(dataclasses.replace(cfg, out=str(tmp_path / "again")))["autoencoder"].is_file()
    assert "collected 0 episodes" in capsys.readouterr().out
    assert (data / "manifest.json").read_bytes() == manifest
    assert {path: path.stat().st_mtime_ns for path in data.glob("shard-*/*")} == shards

    # Other settings on the same folder are refused before anything trains.
    other = dataclasses.replace(cfg, out=str(tmp_path / "other"), collect=dataclasses.replace(cfg.collect, seed=1))
    with pytest.raises(ValueError, match="different config: seed=0 .now 1."):
        train(other)
    assert not (tmp_path / "other").exists()
    with pytest.raises(ValueError, match="collect.out=.* differs from data="):
        dataclasses.replace(cfg, data=str(tmp_path / "elsewhere"))


def test_other_ranks_wait_for_rank_zeros_collection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from worldsim.training import train as train_module

    monkeypatch.setattr(train_module.rank_zero_only, "rank", 1)
    monkeypatch.setattr(train_module, "COLLECT_STALL_S", 0.5)
    done = CollectConfig(env="worldsim/Physics-v0", episodes=2, max_steps=5, progress=False, out=str(tmp_path / "done"))
    collect(done)
    train_module.record_data(done)  # complete: returns at once, records nothing
    with pytest.raises(RuntimeError, match="rank 1 waited 0 s for rank zero's collection"):
        train_module.record_data(dataclasses.replace(done, out=str(tmp_path / "never")))
    assert not (tmp_path / "never").exists()
