"""worldsim train end to end: both stages with one export, resume by run dir, CPU ddp, --help."""

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_train import config, dataset, state  # noqa: F401  (dataset is a fixture)

from worldsim.data.collect import CollectConfig, collect
from worldsim.training.train import TrainConfig, train


def worldsim(*args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worldsim.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_two_process_cpu_ddp_run_completes(dataset: Path, tmp_path: Path) -> None:
    result = worldsim(
        "train",
        "stage=autoencoder",
        f"data={dataset}",
        f"out={tmp_path / 'run'}",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_steps=3",
        "trainer.progress_bar=false",
        "ae.batch_size=4",
        "ae.val_frames=4",
        "ae.statistics_frames=16",
        "optim.warmup_steps=1",
        "+autoencoder_model.overrides.base_channels=8",
        "+autoencoder_model.overrides.num_groups=4",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    assert "All distributed processes registered" in result.stderr + result.stdout
    last = state(tmp_path / "run" / "autoencoder" / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 3
    assert (tmp_path / "run" / "autoencoder.pt").is_file()
    assert f"inference file {tmp_path / 'run' / 'autoencoder.pt'}" in result.stdout


@pytest.mark.slow
def test_train_help_lists_every_field(tmp_path: Path) -> None:
    result = worldsim("train", "--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    for field in dataclasses.fields(TrainConfig):
        assert f"  {field.name}=" in result.stdout
    assert "model: tiny" not in result.stdout  # groups are applied, not shown as keys
    assert "preset: tiny" in result.stdout


@pytest.mark.slow
def test_stage_all_trains_both_stages_exports_one_file_and_resumes_from_the_run_dir(tmp_path: Path) -> None:
    from worldsim.checkpoint import load_autoencoder, load_checkpoint
    from worldsim.sampling import SamplingConfig
    from worldsim.training.dynamics_module import DynamicsModule

    data = tmp_path / "data"
    collect(CollectConfig(env="worldsim/Physics-v0", episodes=5, max_steps=10, progress=False, out=str(data)))
    cfg = config(data, tmp_path / "run", steps=4, every=2)
    cfg.stage = "all"
    cfg.ae.max_steps = 4
    cfg.dynamics.clip_length, cfg.dynamics.context_frames, cfg.dynamics.horizons = 4, 2, [1, 2]
    cfg.dynamics.dit = {"width": 32, "depth": 1, "heads": 2}
    cfg.dynamics_data.batch_size, cfg.dynamics_data.rollout_length, cfg.dynamics_data.rollout_clips = 4, 4, 1
    cfg.sampling = SamplingConfig(steps=2, min_change=8)
    results = train(cfg)
    exported = load_checkpoint(results["dynamics"])
    assert set(exported["weights"]) == {"dit", "text", "autoencoder"}
    assert exported["worldsim"]["sampling"] == {"steps": 2, "min_change": 8}  # the default it samples with
    assert exported["worldsim"]["stage"] == "dynamics" and "dynamics" in exported["worldsim"]["configs"]
    load_autoencoder(results["dynamics"])  # one file serves inference
    with open(tmp_path / "run" / "dynamics" / "csv" / "version_0" / "metrics.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("train/device/samples_per_sec")]
    assert rows and all(
        float(r["train/device/samples_per_sec"]) / float(r["train/device/batches_per_sec"]) == pytest.approx(4)
        for r in rows
    )  # clips per batch
    assert all(float(r["train/device/flops_per_sec"]) > 0 for r in rows)
    last = tmp_path / "run" / "dynamics" / "checkpoints" / "last.ckpt"
    DynamicsModule.from_checkpoint(str(last))
    # Resuming the run directory with a longer schedule continues stage 2 where it stopped.
    cfg.resume, cfg.trainer.max_steps = str(tmp_path / "run"), 6
    train(cfg)
    assert torch.load(last, weights_only=True)["global_step"] == 6
    assert (tmp_path / "run" / "dynamics" / "csv" / "version_1" / "metrics.csv").is_file()  # logs kept
    assert (
        torch.load(tmp_path / "run" / "autoencoder" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
        == 4
    )


@pytest.mark.slow
def test_dynamics_resume_from_a_mid_run_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    collect(CollectConfig(env="worldsim/Physics-v0", episodes=5, max_steps=10, progress=False, out=str(data)))
    cfg = config(data, tmp_path / "whole", steps=6, every=3, deterministic=True)
    cfg.stage, cfg.ae.max_steps = "all", 2
    cfg.dynamics.clip_length, cfg.dynamics.context_frames, cfg.dynamics.horizons = 4, 2, [1, 2]
    cfg.dynamics.dit = {"width": 32, "depth": 1, "heads": 2}
    cfg.dynamics.flow.rollout_prob = 1.0  # self-rollout context draws from the step's generator too
    cfg.dynamics_data.batch_size, cfg.dynamics_data.rollout_length, cfg.dynamics_data.rollout_clips = 4, 4, 1
    train(cfg)
    checkpoints = tmp_path / "whole" / "dynamics" / "checkpoints"
    # A run killed after step 3 leaves this file; a new process continues from it.
    resumed = dataclasses.replace(
        cfg,
        stage="dynamics",
        out=str(tmp_path / "resumed"),
        autoencoder=str(tmp_path / "whole" / "autoencoder.pt"),
        resume=str(checkpoints / "step=000003.ckpt"),
    )
    train(resumed)
    a = state(checkpoints / "last.ckpt")
    b = state(tmp_path / "resumed" / "dynamics" / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 6
    logged = (tmp_path / "whole" / "dynamics" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    column = logged[0].split(",").index("train/rollout_fraction")
    assert max(float(row.split(",")[column] or 0) for row in logged[1:]) > 0  # some steps did train on rollouts
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:  # weights and their EMA
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    for opt_a, opt_b in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(opt_a["exp_avg"], opt_b["exp_avg"]) and torch.equal(opt_a["exp_avg_sq"], opt_b["exp_avg_sq"])


@pytest.mark.slow
def test_fine_tuning_only_the_heads_keeps_every_frame_and_moves_the_reward(tmp_path: Path) -> None:
    import numpy as np

    from worldsim.checkpoint import set_default_sampling
    from worldsim.world_batch import WorldBatch
    from worldsim.world_model import WorldModel

    base_data, new_data = tmp_path / "push", tmp_path / "push-sticky"
    collect(
        CollectConfig(
            env="worldsim/Push-v0", episodes=5, max_steps=10, policy="scripted", progress=False, out=str(base_data)
        )
    )
    collect(
        CollectConfig(
            env="worldsim/Push-v0",
            env_kwargs={"start": "behind"},
            episodes=5,
            max_steps=10,
            policy="sticky",
            progress=False,
            out=str(new_data),
        )
    )
    cfg = config(base_data, tmp_path / "base", steps=3, every=3)
    cfg.stage, cfg.ae.max_steps = "all", 2
    cfg.dynamics.clip_length, cfg.dynamics.context_frames, cfg.dynamics.horizons = 4, 2, [1, 2]
    cfg.dynamics.dit = {"width": 32, "depth": 1, "heads": 2}
    cfg.dynamics_data.batch_size, cfg.dynamics_data.rollout_length, cfg.dynamics_data.rollout_clips = 4, 4, 1
    base = train(cfg)["dynamics"]
    set_default_sampling(base, steps=2, warm_start=0.0)
    tune = dataclasses.replace(
        cfg,
        stage="dynamics",
        data=str(new_data),
        out=str(tmp_path / "tuned"),
        init=str(base),
        dynamics=dataclasses.replace(cfg.dynamics, trainable="heads", dit={}),
    )
    tune.trainer.max_steps = 6
    tuned = train(tune)["dynamics"]

    from worldsim.training.dynamics_module import DynamicsModule

    DynamicsModule.from_checkpoint(str(tmp_path / "tuned" / "dynamics" / "checkpoints" / "last.ckpt"))
    a, b = WorldModel.from_checkpoint(base, "cpu"), WorldModel.from_checkpoint(tuned, "cpu")
    for name in ("dit", "text_encoder", "autoencoder"):
        before, after = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in before:
            assert torch.equal(before[key], after[key]) != key.startswith("heads."), (name, key)  # only heads moved
    assert b.default_sampling == a.default_sampling  # recorded with init, kept
    frames = np.zeros((1, 2, 64, 64, 3), np.uint8)
    actions = np.full((1, 4, 2), 0.5, np.float32)
    assert np.array_equal(
        a.rollout(frames, actions, "a push", horizon=3, seed=1), b.rollout(frames, actions, "a push", horizon=3, seed=1)
    )  # the same world
    stepped = [WorldBatch(model) for model in (a, b)]
    for batch in stepped:
        batch.start(frames, actions[:, :1], "a push", seed=1)
    assert stepped[0].step(actions[:, 1]).reward != stepped[1].step(actions[:, 1]).reward  # new heads

    with pytest.raises(ValueError, match="set dynamics.clip_length=4"):
        train(
            dataclasses.replace(
                tune, out=str(tmp_path / "bad"), dynamics=dataclasses.replace(tune.dynamics, clip_length=8)
            )
        )
    with pytest.raises(ValueError, match="run it with stage=dynamics"):
        dataclasses.replace(tune, stage="all")
    with pytest.raises(ValueError, match="drop the dynamics.dit"):
        dataclasses.replace(tune, dynamics=dataclasses.replace(tune.dynamics, dit={"width": 64}))
