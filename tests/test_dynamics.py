"""DynamicsModule: transition alignment, learning (overfits a few clips), validation metrics beside
the copy-last baseline, and checkpoints that load with weights_only=True."""

from __future__ import annotations

import math
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from gymnasium import spaces
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, RandomSampler, Subset

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.latents import cache_latents
from worldsim.models.actions import action_fields, model_actions
from worldsim.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from worldsim.spaces import describe_space, space_from_description
from worldsim.training import rollout_metrics
from worldsim.training.datamodules import LatentClipDataConfig, LatentClipDataModule
from worldsim.training.dynamics_module import DynamicsConfig, DynamicsModule, align_transitions
from worldsim.training.optim import OptimConfig

TINY = DynamicsConfig(
    dit=dict(width=64, depth=2, heads=2, text_width=64, head_width=64),
    text=dict(depth=1),
    clip_length=8,
    horizons=[1, 4, 16],
)
STEPS = 200


def trainer(tmp: Path | None = None, **kwargs) -> lightning.Trainer:
    return lightning.Trainer(
        accelerator="cpu",
        logger=TensorBoardLogger(str(tmp)) if tmp else False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[LatentClipDataModule, FrameAutoencoder]:
    root = tmp_path_factory.mktemp("physics") / "data"
    collect(CollectConfig(env="worldsim/Physics-v0", episodes=4, max_steps=12, progress=False, out=str(root)))
    torch.manual_seed(0)
    ae = FrameAutoencoder(
        AutoencoderConfig(base_channels=8, channel_multipliers=(1, 1, 2, 2), latent_channels=4, num_groups=4)
    ).eval()
    module = LatentClipDataModule(
        LatentClipDataConfig(
            root=str(root),
            latents=cache_latents(str(root), ae),
            clip_length=8,
            batch_size=4,
            val_fraction=0.25,
            rollout_clips=1,
            rollout_length=13,
        )
    )
    module.setup("fit")
    return module, ae


@pytest.fixture(scope="module")
def overfit(data) -> tuple[DynamicsModule, dict, float]:
    """A tiny model trained on 4 fixed clips; its loss on them before training."""
    datamodule, _ = data
    clips = Subset(datamodule.train_set, [0, 2, 4, 6])
    batch = next(iter(DataLoader(clips, batch_size=4)))
    torch.manual_seed(0)
    model = DynamicsModule(TINY, OptimConfig(lr=2e-3, warmup_steps=10), STEPS, datamodule.meta)
    before = fixed_noise_loss(model, batch)
    loader = DataLoader(clips, batch_size=4, sampler=RandomSampler(clips, replacement=True, num_samples=4 * STEPS))
    trainer(max_steps=STEPS, limit_val_batches=0).fit(model, loader)
    return model, batch, before


def fixed_noise_loss(model: DynamicsModule, batch: dict, networks=None) -> float:
    networks = networks if networks is not None else model.networks
    with torch.no_grad():
        losses = [
            model.flow.loss(
                networks["dit"], *model._inputs(batch, networks["text"]), generator=torch.Generator().manual_seed(i)
            )[0].item()
            for i in range(8)
        ]
    return sum(losses) / len(losses)


def test_transitions_shift_right_by_one() -> None:
    actions = torch.arange(1, 7, dtype=torch.float32).view(1, 3, 2)  # actions[t] taken at frame t
    rewards = torch.tensor([[0.5, 1.5, 2.5]])
    terminated = torch.tensor([[False, True, False]])
    shifted, mask, into_rewards, into_terminated = align_transitions(actions, rewards, terminated)
    assert shifted.tolist() == [[[0, 0], [1, 2], [3, 4]]]  # frame t gets actions[t - 1]
    assert mask.tolist() == [[False, True, True]]
    assert math.isnan(into_rewards[0, 0]) and into_rewards[0, 1:].tolist() == [0.5, 1.5]
    assert into_terminated.tolist() == [[False, False, True]]
    discrete, mask, _, _ = align_transitions(torch.tensor([[4, 5, 6]]), rewards, terminated)
    assert discrete.tolist() == [[0, 4, 5]] and mask.tolist() == [[False, True, True]]
    none, mask, _, _ = align_transitions(None, rewards, terminated)
    assert none is None and mask is None


def test_action_spaces_map_to_the_dit() -> None:
    assert action_fields({"type": "Box", "shape": [3]}) == {
        "action_kind": "continuous",
        "action_dim": 3,
        "num_actions": 0,
    }
    assert action_fields({"type": "Box", "shape": []})["action_dim"] == 1
    assert action_fields({"type": "Discrete", "n": 7, "start": 0})["num_actions"] == 7
    assert action_fields(None)["action_dim"] == 0
    with pytest.raises(ValueError, match="not supported"):
        action_fields({"type": "Dict", "repr": "Dict(...)"})
    ids = model_actions(torch.tensor([[1, 3]]), {"type": "Discrete", "n": 3, "start": 1})
    assert ids.tolist() == [[0, 2]] and ids.dtype == torch.long
    assert model_actions(torch.ones(2, 5), {"type": "Box", "shape": []}).shape == (2, 5, 1)


def test_multi_discrete_actions_reach_the_dit_as_one_hots_per_component() -> None:
    """A camera bin or a key is a category: bin 4 is not twice bin 2, so each component is one-hot."""
    space = spaces.MultiDiscrete([3, 5, 2], start=[0, -2, 1])
    description = describe_space(space)
    assert space_from_description(description) == space
    assert describe_space(spaces.MultiDiscrete([3, 4])) == {"type": "MultiDiscrete", "nvec": [3, 4]}
    assert action_fields(description)["action_dim"] == 10
    actions = torch.tensor([[[2, -2, 1], [0, 2, 2]]])  # (B=1, T=2, 3)
    one_hots = model_actions(actions, description)
    assert one_hots.shape == (1, 2, 10) and one_hots.sum(-1).tolist() == [[3.0, 3.0]]
    assert one_hots[0, 0].nonzero().flatten().tolist() == [2, 3, 8]
    assert one_hots[0, 1].nonzero().flatten().tolist() == [0, 7, 9]


def test_config_refuses_data_fields_and_mismatched_text_width() -> None:
    with pytest.raises(ValueError, match="set from the data"):
        DynamicsConfig(dit={"latent_channels": 8})
    cfg = DynamicsConfig(dit={"text_width": 64}, text={"width": 32})
    with pytest.raises(ValueError, match="text_width"):
        DynamicsModule(cfg, OptimConfig(), 10, {"latent_channels": 4, "latent_size": 8})


def test_copy_last_baseline_and_psnr_on_a_known_case() -> None:
    context = torch.full((1, 2, 3, 4, 4), 100, dtype=torch.uint8)
    context[:, 0] = 0
    truth = torch.full((1, 3, 3, 4, 4), 110, dtype=torch.uint8)
    truth[:, 2] = 100
    copied = rollout_metrics.copy_last(context, 3)
    assert copied.shape == (1, 3, 3, 4, 4) and (copied == 100).all()
    psnr = rollout_metrics.psnr_per_frame(copied, truth)
    assert psnr[0, :2].tolist() == pytest.approx([10 * math.log10(255**2 / 100)] * 2)  # 28.13 dB
    assert psnr[0, 2].item() == 100.0  # identical frames: capped, not inf
    metrics = rollout_metrics.at_horizons(psnr, [1, 4, 16], "psnr")
    assert list(metrics) == ["psnr_h1"]  # horizons the rollout does not reach are left out


def test_comparison_grid_puts_each_prediction_under_its_truth() -> None:
    context = torch.full((2, 2, 3, 4, 4), 10, dtype=torch.uint8)
    truth = torch.full((2, 3, 3, 4, 4), 20, dtype=torch.uint8)
    prediction = torch.full((2, 3, 3, 4, 4), 30, dtype=torch.uint8)
    grid = rollout_metrics.comparison_grid(context, truth, prediction, gutter=2)
    assert grid.shape == (3, 2 * 2 * 6 + 6, 5 * 6 + 6) and grid.dtype == torch.uint8
    x = 2 * 6 + 6  # first future column, after the wider context gutter
    assert (grid[:, 0:4, 0:4] == 10).all() and (grid[:, 0:4, x : x + 4] == 20).all()
    assert (grid[:, 6:10, x : x + 4] == 30).all() and (grid[:, 6:10, 0:4] == 48).all()


@pytest.mark.slow
def test_a_tiny_model_overfits_a_handful_of_clips(overfit) -> None:
    model, batch, before = overfit
    after = fixed_noise_loss(model, batch)
    assert after < before / 4, f"loss fell only from {before:.3f} to {after:.3f}"
    assert fixed_noise_loss(model, batch, model.ema.model) < before / 4  # the EMA weights learned too
    assert int(model.ema.updates) == STEPS


@pytest.mark.slow  # trains the module-scoped overfit model
def test_validation_reports_rollouts_beside_copy_last(data, overfit, tmp_path: Path) -> None:
    datamodule, ae = data
    model, _, _ = overfit
    model.set_autoencoder(ae)
    assert not any(k.startswith("_autoencoder") or "encoder.conv" in k for k in model.state_dict())
    run = trainer(tmp_path)
    metrics = run.validate(model, datamodule, verbose=False)
    logged = {k: v for result in metrics for k, v in result.items()}
    for name in (
        "val/loss",
        "val/loss_velocity",
        "val/latent_mse_h1",
        "val/latent_mse_h4",
        "val/copy_last_latent_mse_h1",
        "val/psnr_h1",
        "val/psnr_h4",
        "val/copy_last_psnr_h1",
        "val/copy_last_psnr_h4",
    ):
        assert name in logged and np.isfinite(logged[name]), name
    assert "val/psnr_h16" not in logged  # 13-frame rollout clips hold 9 future frames

    clip = next(iter(datamodule.val_dataloader()[1]))
    frames, latents = clip["frames"], clip["latents"]
    expected_psnr = rollout_metrics.psnr_per_frame(frames[:, 3:4], frames[:, 4:5]).mean().item()
    assert logged["val/copy_last_psnr_h1"] == pytest.approx(expected_psnr, rel=1e-5)
    expected_mse = (latents[:, 7] - latents[:, 3]).square().mean().item()  # h4 = 4 frames after the context
    assert logged["val/copy_last_latent_mse_h4"] == pytest.approx(expected_mse, rel=1e-5)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    [event_file] = tmp_path.rglob("events.out.tfevents.*")
    events = EventAccumulator(str(event_file.parent))
    events.Reload()
    assert "val/rollout" in events.Tags()["images"]


@pytest.mark.slow  # trains the module-scoped overfit model
def test_checkpoints_load_with_weights_only(data, overfit, tmp_path: Path) -> None:
    datamodule, _ = data
    model, batch, _ = overfit
    run = trainer(max_steps=1, limit_val_batches=0)
    run.fit(model, DataLoader(Subset(datamodule.train_set, [0]), batch_size=1))
    path = tmp_path / "dynamics.ckpt"
    run.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    record = checkpoint["worldsim"]["dynamics"]
    assert record["meta"] == datamodule.meta and record["config"]["dit"]["width"] == 64
    assert record["dit"]["max_frames"] == 8 and record["dit"]["action_dim"] == 3
    restored = DynamicsModule.from_checkpoint(str(path))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, restored.state_dict()[name]), name
    assert fixed_noise_loss(restored, batch) == pytest.approx(fixed_noise_loss(model, batch))
    assert restored.sampling == model.sampling  # how its validation rollouts sample
    # A record written before the one sampling node kept validation sampling in the dynamics config.
    record["config"] = {**record["config"], "rollout_steps": 4, "rollout_warm_start": 0.0}
    torch.save(checkpoint, tmp_path / "older.ckpt")
    assert DynamicsModule.from_checkpoint(str(tmp_path / "older.ckpt")).cfg == model.cfg

    wider = DynamicsConfig(**{**TINY.__dict__, "dit": {**TINY.dit, "width": 128}})
    with pytest.raises(ValueError, match="differs from this run"):
        DynamicsModule(wider, OptimConfig(), 10, datamodule.meta).on_load_checkpoint(checkpoint)
