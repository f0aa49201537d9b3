"""Presets and recipes: every size has a name, and each shipped model's recipe composes to its record."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

import worldsim
from worldsim.models.dit import DIT_PRESETS, VideoDiT, VideoDiTConfig
from worldsim.models.text import TEXT_ENCODER_PRESETS, TextEncoder
from worldsim.training.checkpoint import load_checkpoint, part_state_dict
from worldsim.training.dynamics_module import build_networks
from worldsim.training.train import TrainConfig


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
