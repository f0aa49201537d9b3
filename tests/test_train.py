"""worldsim train, stage 1: learning, exact resume, the NaN guard, DDP on CPU, configs and help."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.storage import DatasetError
from worldsim.training.autoencoder_module import AutoencoderStageConfig
from worldsim.training.guards import NonFiniteLossError
from worldsim.training.harness import TrainerConfig, counted_step, resolve_precision, resolve_resume, strategy_argument
from worldsim.training.optim import OptimConfig
from worldsim.training.train import AutoencoderModelConfig, TrainConfig, build_autoencoder_config, train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# A narrow autoencoder: a step takes a few ms on 2 cores, yet it learns visibly in a few dozen.
NARROW = {"base_channels": 8, "num_groups": 4}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "physics"
    collect(CollectConfig(env="worldsim/Physics-v0", episodes=4, max_steps=12, progress=False, out=str(out)))
    return out


def config(data: Path, out: Path, steps: int, every: int = 1000, lr: float = 3e-3, **trainer) -> TrainConfig:
    return TrainConfig(
        stage="autoencoder",
        data=str(data),
        out=str(out),
        seed=0,
        trainer=TrainerConfig(
            accelerator="cpu",
            devices="1",
            max_steps=steps,
            val_every_n_steps=every,
            checkpoint_every_n_steps=every,
            log_every_n_steps=1,
            progress_bar=False,
            **trainer,
        ),
        optim=OptimConfig(lr=lr, warmup_steps=3, ema_decay=0.9),
        autoencoder_model=AutoencoderModelConfig(overrides=dict(NARROW)),
        ae=AutoencoderStageConfig(batch_size=8, val_frames=8, statistics_frames=32, verify=False),
    )


def logged(out: Path, key: str) -> list[float]:
    with open(out / "autoencoder" / "csv" / "version_0" / "metrics.csv") as handle:
        return [float(row[key]) for row in csv.DictReader(handle) if row.get(key)]


@pytest.mark.slow
def test_autoencoder_loss_falls_and_validation_is_logged(dataset: Path, tmp_path: Path) -> None:
    results = train(config(dataset, tmp_path, steps=40, every=20))
    losses = logged(tmp_path, "train/loss")
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    psnrs = logged(tmp_path, "val/psnr")
    assert len(psnrs) == 2 and psnrs[1] > psnrs[0]
    assert logged(tmp_path, "val/object_psnr")
    assert results["autoencoder"] == tmp_path / "autoencoder.pt" and results["autoencoder"].is_file()
    # The reconstruction grid went to TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "autoencoder" / "tensorboard")).Reload()
    assert "val/reconstruction" in events.Tags()["images"]
    # Throughput: 8 frames a batch, and the FLOPs counted on the first step at every logged window.
    batches, samples = (
        logged(tmp_path, "train/device/batches_per_sec"),
        logged(tmp_path, "train/device/samples_per_sec"),
    )
    flops = logged(tmp_path, "train/device/flops_per_sec")
    assert len(batches) == len(samples) == len(flops) >= 30
    assert all(s / b == pytest.approx(8) for s, b in zip(samples, batches))
    per_batch = [f / b for f, b in zip(flops, batches)]
    assert per_batch[0] > 1e6 and all(x == pytest.approx(per_batch[0]) for x in per_batch)


def test_a_stage_shorter_than_the_validation_interval_validates_at_its_end(dataset: Path, tmp_path: Path) -> None:
    train(config(dataset, tmp_path, steps=6, every=1000))
    assert len(logged(tmp_path, "val/psnr")) == 1


def test_counted_step_counts_three_forward_passes_once() -> None:
    class Module(torch.nn.Module):
        flops_per_batch = None

    module, layer, x = Module(), torch.nn.Linear(10, 20), torch.randn(4, 10)
    out = counted_step(module, lambda: layer(x).sum())
    assert module.flops_per_batch == 3 * 2 * 4 * 10 * 20  # forward 2*B*in*out, backward twice that
    assert float(out) == pytest.approx(float(layer(x).sum()))
    module.flops_per_batch = 7
    counted_step(module, lambda: layer(x).sum())
    assert module.flops_per_batch == 7  # counted on the first step only


def test_latent_statistics_make_latents_unit_variance(dataset: Path, tmp_path: Path) -> None:
    from worldsim.checkpoint import load_autoencoder
    from worldsim.data.dataset import EpisodeDataset

    train(config(dataset, tmp_path, steps=10))
    model = load_autoencoder(tmp_path / "autoencoder.pt")
    frames = torch.from_numpy(EpisodeDataset(dataset).episode(0).frames).permute(0, 3, 1, 2)
    latents = model.encode_frames(frames)  # (T, C, h, w), normalized
    assert latents.mean().abs() < 0.5 and 0.5 < latents.std() < 2.0
    assert not torch.equal(model.latent_scale, torch.ones_like(model.latent_scale))


def state(path: Path) -> dict:
    return torch.load(path, weights_only=True)


@pytest.mark.slow
def test_resume_from_a_mid_run_checkpoint_equals_an_uninterrupted_run(dataset: Path, tmp_path: Path) -> None:
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train(config(dataset, whole, steps=8, every=3, deterministic=True))
    step3 = whole / "autoencoder" / "checkpoints" / "step=000003.ckpt"
    assert state(step3)["global_step"] == 3
    # A run killed after step 3 leaves exactly this file; a new process continues from it.
    train(dataclasses.replace(config(dataset, resumed, steps=8, every=3, deterministic=True), resume=str(step3)))
    a = state(whole / "autoencoder" / "checkpoints" / "last.ckpt")
    b = state(resumed / "autoencoder" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 8
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(opt_a[name], opt_b[name]), name
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 8
    assert a["worldsim"]["global_step"] == 8


def test_resume_with_a_run_directory_uses_its_last_checkpoint(tmp_path: Path) -> None:
    last = tmp_path / "run" / "autoencoder" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(b"")
    assert resolve_resume(str(tmp_path / "run"), "autoencoder") == last
    with pytest.raises(FileNotFoundError, match="without a last.ckpt.*'dynamics'"):
        resolve_resume(str(tmp_path / "run"), "dynamics")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_resume(str(tmp_path / "nothing.ckpt"), "autoencoder")


def test_non_finite_loss_stops_without_writing_a_checkpoint(dataset: Path, tmp_path: Path) -> None:
    # lr 1e30: after the first Adam step the weights are ~1e30 and the next loss overflows.
    cfg = config(dataset, tmp_path, steps=20, every=1, lr=1e30)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, warmup_steps=1, grad_clip=0.0))
    with pytest.raises(
        NonFiniteLossError,
        match=r"training loss is (nan|inf) at step (\d+).*stopping before"
        r" a broken checkpoint is saved",
    ) as failure:
        train(cfg)
    failed_at = int(failure.value.args[0].split(" at step ")[1].split()[0])
    checkpoints = tmp_path / "autoencoder" / "checkpoints"
    steps = [state(p)["global_step"] for p in checkpoints.glob("*.ckpt")]
    assert max(steps, default=0) <= failed_at  # nothing saved from the failed step on
    assert not (tmp_path / "autoencoder.pt").exists()


def test_dynamics_stage_refuses_actions_changed_in_place_before_encoding_or_training(
    dataset: Path, tmp_path: Path
) -> None:
    import shutil
    import time

    import numpy as np

    data = tmp_path / "data"
    shutil.copytree(dataset, data)  # the module's dataset stays intact for the other tests
    train(config(data, tmp_path / "run", steps=2))  # the autoencoder stage=dynamics starts from
    actions = data / "shard-00000" / "actions.npy"
    size = actions.stat().st_size
    time.sleep(0.05)  # past the filesystem's timestamp tick
    with open(actions, "r+b") as handle:  # in place, other finite values, the same size
        np.save(handle, np.load(actions) * 0.5)
    assert actions.stat().st_size == size
    cfg = dataclasses.replace(config(data, tmp_path / "run", steps=2), stage="dynamics")
    with pytest.raises(DatasetError) as error:
        train(cfg)
    assert f"{actions} has a different sha256 than the manifest records" in str(error.value)
    assert "re-run the same `worldsim collect` command" in str(error.value)
    assert not (tmp_path / "run" / "dynamics").exists()  # no step trained
    assert not list(data.glob("latents-*"))  # and no frame encoded


@pytest.mark.slow
def test_throughput_covers_whole_logging_intervals(dataset: Path, tmp_path: Path) -> None:
    """Logged every 4 steps, the rates count all 4 batches: FLOPs per batch match logging every step."""
    train(config(dataset, tmp_path / "every", steps=8))
    fourth_cfg = config(dataset, tmp_path / "fourth", steps=8)
    fourth_cfg.trainer.log_every_n_steps = 4
    train(fourth_cfg)

    def per_batch(out: Path) -> list[float]:
        flops, batches = logged(out, "train/device/flops_per_sec"), logged(out, "train/device/batches_per_sec")
        return [f / b for f, b in zip(flops, batches)]

    every, fourth = per_batch(tmp_path / "every"), per_batch(tmp_path / "fourth")
    assert len(every) == 8 and len(fourth) == 2
    assert fourth == pytest.approx([every[0]] * 2)
    samples = logged(tmp_path / "fourth", "train/device/samples_per_sec")
    assert [
        s / b for s, b in zip(samples, logged(tmp_path / "fourth", "train/device/batches_per_sec"))
    ] == pytest.approx([8, 8])


@pytest.mark.slow
def test_max_time_stops_a_stage_early_and_still_exports_its_last_step(dataset: Path, tmp_path: Path) -> None:
    results = train(config(dataset, tmp_path, steps=100_000, max_time="00:00:00:02"))
    last = state(tmp_path / "autoencoder" / "checkpoints" / "last.ckpt")
    assert 0 < last["global_step"] < 100_000
    assert results["autoencoder"].is_file()
    assert len(logged(tmp_path, "train/loss")) == last["global_step"]


def test_precision_follows_the_hardware() -> None:
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    if torch.cuda.is_available():
        assert resolve_precision("auto", "gpu") in ("bf16-mixed", "16-mixed")
    else:
        assert resolve_precision("auto", "auto") == "32-true"


def group_options() -> list[tuple[str, str]]:
    return [(group, path.stem) for group in ("model", "trainer") for path in sorted((CONFIGS / group).glob("*.yaml"))]


@pytest.mark.parametrize("group,option", group_options())
def test_every_config_group_option_composes_into_typed_configs(group: str, option: str) -> None:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from worldsim.cli import hydra_app
    from worldsim.training.dynamics_module import build_networks

    hydra_app("train")  # registers train_schema and train_help, as the CLI does
    with initialize_config_module("worldsim.configs", version_base="1.3"):
        cfg = OmegaConf.to_object(compose("train", overrides=[f"{group}={option}"]))
    assert isinstance(cfg, TrainConfig) and isinstance(cfg.trainer, TrainerConfig)
    if group == "model":
        assert cfg.dynamics.preset == option
        build_autoencoder_config(cfg.autoencoder_model)
        dit, text = build_networks(cfg.dynamics, {"latent_channels": 16, "latent_size": 8})
        assert dit.text_width == text.width
    else:
        strategy = strategy_argument(cfg.trainer)
        assert (strategy == "auto") == (cfg.trainer.strategy == "auto")
        assert resolve_precision(cfg.trainer.precision, "cpu") in ("32-true", "bf16-mixed")


def test_slurm_launcher_config_targets_submitit() -> None:
    # Composing it needs hydra-submitit-launcher, which is not a dependency; check its shape only.
    text = (CONFIGS / "hydra" / "launcher" / "slurm.yaml").read_text()
    assert "pip install hydra-submitit-launcher" in text
    launcher = yaml.safe_load(text)
    assert launcher["defaults"] == ["submitit_slurm"]
    assert launcher["nodes"] == "${trainer.num_nodes}"
