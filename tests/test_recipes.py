"""Presets and recipes: every size has a name, and each shipped model's recipe composes to its record."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from test_train import config

import worldsim
from worldsim.checkpoint import load_checkpoint, part_state_dict, plain
from worldsim.data.collect import CollectConfig, collect, content_config
from worldsim.models.dit import DIT_PRESETS, VideoDiT, VideoDiTConfig
from worldsim.models.text import TEXT_ENCODER_PRESETS, TextEncoder, TextEncoderConfig
from worldsim.training.dynamics_module import DynamicsConfig, build_networks, networks_of
from worldsim.training.harness import TrainerConfig
from worldsim.training.optim import OptimConfig
from worldsim.training.train import TrainConfig, build_autoencoder_config, train

REPO = Path(__file__).resolve().parents[1]


def compose(command: str, overrides: list[str]) -> Any:
    """``worldsim <command> <overrides>``'s config object, composed as the CLI composes it."""
    import hydra
    from omegaconf import OmegaConf

    from worldsim.cli import hydra_app

    hydra_app(command)  # registers the schema, its help and the ${reference:...} resolver, as the CLI does
    with hydra.initialize_config_module("worldsim.configs", version_base="1.3"):
        return OmegaConf.to_object(hydra.compose(command, overrides=overrides))


def compose_train(*overrides: str) -> TrainConfig:
    return compose("train", list(overrides))


def record(world: str) -> dict[str, Any]:
    """The ``worldsim`` record of the shipped reference model of ``world``."""
    return load_checkpoint(worldsim.reference_checkpoint(world))["worldsim"]


@pytest.mark.slow
def test_the_cli_composes_a_recipe_with_the_shipped_file_it_names(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldsim.cli",
            "train",
            "experiment=push_reference",
            "data=data/mine",
            "--cfg",
            "job",
            "--resolve",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"autoencoder: {worldsim.reference_checkpoint('push')}\n" in result.stdout
    assert "  out: data/mine\n" in result.stdout and "  seed: 11\n" in result.stdout  # collect's


def test_every_dit_preset_has_a_text_encoder_preset_of_its_text_width() -> None:
    assert set(DIT_PRESETS) == set(TEXT_ENCODER_PRESETS)
    for name in DIT_PRESETS:
        assert VideoDiTConfig.preset(name).text_width == TEXT_ENCODER_PRESETS[name].width, name


@pytest.mark.parametrize("world", ["physics", "push"])
def test_model_mid_builds_the_physics_and_push_references_networks(world: str) -> None:
    shipped = record(world)
    cfg = compose_train("model=mid", "dynamics.clip_length=16")
    dit, text = build_networks(cfg.dynamics, shipped["data"])
    # Read as the loader reads it: fields added since (memory) take their defaults.
    assert dit == VideoDiTConfig(**shipped["configs"]["dit"])
    assert text == TextEncoderConfig(**shipped["configs"]["text"])
    assert cfg.autoencoder_model.preset == "tiny"
    # The shipped weights fit the preset's networks key for key and shape for shape.
    weights = load_checkpoint(worldsim.reference_checkpoint(world))
    VideoDiT(dit).load_state_dict(part_state_dict(weights, "dit"), strict=True)
    TextEncoder(text).load_state_dict(part_state_dict(weights, "text"), strict=True)
    counts = [sum(p.numel() for p in net.parameters()) for net in (VideoDiT(dit), TextEncoder(text))]
    assert [round(n / 1e6, 2) for n in counts] == [7.77, 0.83]  # as the preset table's comments say


RECIPES = sorted(path.stem for path in (REPO / "configs" / "experiment").glob("*.yaml"))
#: recipe -> the shipped file whose every recorded training setting it must reproduce
SHIPPED = {
    "physics_reference": "physics",
    "push_reference": "push",
    "occlusion_reference": "occlusion",
    "orbit_reference": "orbit",
    "blockworld_reference": "blockworld",
}
#: recipe -> the shipped file that holds the autoencoder it trains
AUTOENCODERS = {
    "physics_autoencoder": "physics",
    "push_autoencoder": "push",
    "occlusion_reference": "occlusion",
    "orbit_reference": "orbit",
    "blockworld_reference": "blockworld",
}
#: world-memory recipes (docs/memory.md): none has a shipped model yet
MEMORY_RECIPES = ("occlusion_memory", "orbit_memory", "occlusion_memory_gpu", "blockworld_memory_gpu")
#: DynamicsConfig fields that spell the size; the built networks are compared instead
SIZE_FIELDS = ("preset", "dit", "text")
#: How validation rollouts sampled, recorded in the dynamics config of files older than the one
#: sampling node (train's ``sampling`` now). Validation never changes the weights a run trains.
VALIDATION_SAMPLING = ("rollout_steps", "sampler", "rollout_warm_start", "cfg_text", "cfg_action")


def test_every_shipped_model_has_a_recipe() -> None:
    assert set(SHIPPED.values()) == set(worldsim.reference_worlds())
    others = {"push_imagine_finetune", "blockworld_idm", "physics_text", "physics_text_gpu", *MEMORY_RECIPES}
    assert set(SHIPPED) | set(AUTOENCODERS) | others == set(RECIPES)


def test_the_idm_recipe_composes_to_the_settings_its_shipped_file_records() -> None:
    cfg = compose_train("experiment=blockworld_idm")
    shipped = load_checkpoint(worldsim.reference_idm())["worldsim"]
    assert cfg.stage == "idm" and cfg.export_dtype == "float16"
    assert shipped["configs"]["idm_stage"] == plain(cfg.idm)
    assert shipped["configs"]["optim"] == plain(cfg.optim) and shipped["configs"]["seed"] == cfg.seed
    assert shipped["configs"]["trainer"]["max_steps"] == cfg.idm.max_steps


def test_the_text_recipe_trains_on_rich_captions_without_the_held_out_pairs_and_its_twins_change_one_thing() -> None:
    import gymnasium

    from worldsim.envs.physics import HELD_OUT
    from worldsim.models.text import WordTokenizer

    cfg = compose_train("experiment=physics_text")
    assert cfg.collect.env_kwargs == {"captions": "rich", "holdout": "combinations"}  # split id, the default
    meta = {"latent_channels": 16, "latent_size": 8, "action_space": record("physics")["data"]["action_space"]}
    dit, text = build_networks(cfg.dynamics, meta)
    assert text.tokenizer == "words" and dit.patch_size == 2 and cfg.dynamics.flow.context_prob == 0.25
    assert cfg.dynamics.flow.text_only_from_start and cfg.dynamics_data.start_prob == 0.75  # captions say how it begins
    env = gymnasium.make("worldsim/Physics-v0", **cfg.collect.env_kwargs)
    for seed in range(40):  # what it records never shows a held-out pair, and no caption is cut
        _, info = env.reset(seed=seed)
        assert not any(HELD_OUT.held(env.unwrapped.episode_params))
        assert len(WordTokenizer().words(info["caption"])) + 2 <= text.max_length, info["caption"]
    env.close()
    twins = {
        "bytes": ("dynamics.text.tokenizer=bytes", "dynamics.text.max_length=128"),
        "half": ("dynamics.flow.context_prob=0.5",),
    }
    for name, overrides in twins.items():
        twin = compose_train("experiment=physics_text", *overrides)
        assert plain(twin.collect) == plain(cfg.collect) and twin.trainer == cfg.trainer and twin.optim == cfg.optim
        twin_text = build_networks(twin.dynamics, meta)[1]
        assert (twin_text.tokenizer, twin_text.max_length) == (("bytes", 128) if name == "bytes" else ("words", 32))
    gpu = compose_train("experiment=physics_text_gpu")  # the same data and text, the mid DiT, more of both
    assert gpu.collect.env_kwargs == cfg.collect.env_kwargs and gpu.collect.episodes > cfg.collect.episodes
    assert gpu.dynamics.preset == "mid" and gpu.trainer.accelerator == "gpu"
    assert build_networks(gpu.dynamics, meta)[1] == dataclasses.replace(
        TEXT_ENCODER_PRESETS["mid"], **cfg.dynamics.text
    )


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_instantiates_and_records_its_data_where_it_trains(recipe: str) -> None:
    cfg = compose_train(f"experiment={recipe}")
    assert cfg.collect is not None and cfg.collect.out == cfg.data
    build_autoencoder_config(cfg.autoencoder_model)
    meta = {"latent_channels": 16, "latent_size": 8, "action_space": record("push")["data"]["action_space"]}
    if cfg.init is None:
        build_networks(cfg.dynamics, meta)
    else:  # fine-tunes a shipped model: its DiT takes this recipe's clips, and the data is its world's
        init = load_checkpoint(cfg.init)["worldsim"]
        networks_of({"worldsim": init}, init["data"], cfg.dynamics.clip_length, cfg.dynamics.memory)
        assert init["data"]["env_id"] == cfg.collect.env
    # A path given on the command line wins over the recipe's, and collect follows data.
    moved = compose_train(f"experiment={recipe}", "data=elsewhere")
    assert moved.data == moved.collect.out == "elsewhere"


@pytest.mark.parametrize("recipe,world", sorted(SHIPPED.items()))
def test_recipe_composes_to_the_settings_its_shipped_model_records(recipe: str, world: str) -> None:
    cfg, shipped = compose_train(f"experiment={recipe}"), record(world)
    configs = shipped["configs"]
    dit, text = build_networks(cfg.dynamics, shipped["data"])
    # The shipped configs read as the loader reads them: fields added since (memory, tokenizer) take their defaults.
    assert dit == VideoDiTConfig(**configs["dit"]) and text == TextEncoderConfig(**configs["text"])
    assert_as_recorded(
        without(plain(cfg.dynamics), SIZE_FIELDS),
        without(configs["dynamics"], (*SIZE_FIELDS, *VALIDATION_SAMPLING)),
        plain(DynamicsConfig()),
    )
    assert_as_recorded(plain(cfg.optim), configs["optim"], plain(OptimConfig()))
    assert_as_recorded(plain(cfg.trainer), configs["trainer"], plain(TrainerConfig()))
    assert cfg.seed == configs["seed"]
    assert cfg.sampling.given() == shipped.get("sampling", {})  # the default sampling the file records
    if cfg.stage == "all":
        assert plain(build_autoencoder_config(cfg.autoencoder_model)) == configs["autoencoder"]
    else:  # over the shipped file's own autoencoder
        assert cfg.stage == "dynamics" and Path(cfg.autoencoder) == worldsim.reference_checkpoint(world)
    weights = load_checkpoint(worldsim.reference_checkpoint(world))["weights"]
    assert cfg.export_dtype == "float16" and {
        t.dtype for part in weights.values() for t in part.values() if t.is_floating_point()
    } == {torch.float16}
    data = shipped["data"]
    assert (cfg.collect.env, cfg.collect.env_kwargs, cfg.collect.episodes) == (
        data["env_id"],
        data["env_kwargs"],
        data["episodes"],
    )


@pytest.mark.parametrize("recipe,world", sorted(AUTOENCODERS.items()))
def test_recipe_builds_the_autoencoder_its_shipped_model_holds(recipe: str, world: str) -> None:
    from worldsim.models.autoencoder import FrameAutoencoder

    cfg = compose_train(f"experiment={recipe}")
    assert cfg.stage in ("autoencoder", "all")
    config = build_autoencoder_config(cfg.autoencoder_model)
    assert plain(config) == record(world)["configs"]["autoencoder"]
    shipped = load_checkpoint(worldsim.reference_checkpoint(world))
    FrameAutoencoder(config).load_state_dict(part_state_dict(shipped, "autoencoder"), strict=True)


def test_the_fine_tune_recipe_tunes_the_push_reference_on_sticky_drives_from_behind() -> None:
    cfg = compose_train("experiment=push_imagine_finetune")
    assert Path(cfg.init) == worldsim.reference_checkpoint("push") and cfg.stage == "dynamics"
    assert (cfg.dynamics.trainable, cfg.dynamics.flow.rollout_prob) == ("all", 0.5)
    assert (cfg.collect.policy, cfg.collect.env_kwargs, cfg.collect.max_steps) == ("sticky", {"start": "behind"}, 64)


LOGS = REPO / "docs" / "reference-logs"
FINETUNE_LOGS = REPO / "benchmarks" / "results" / "imagine-push-behind"
#: recipe -> (the log of the run it repeats, the stages of that run the recipe trains)
RUN_LOGS = {
    "physics_autoencoder": ("physics-cpu-train.log", ["autoencoder"]),
    "push_autoencoder": ("push-cpu-train.log", ["autoencoder"]),
    "occlusion_reference": ("occlusion-train.log", ["autoencoder", "dynamics"]),
    "orbit_reference": ("orbit-train.log", ["autoencoder", "dynamics"]),
    "blockworld_reference": ("blockworld-train.log", ["autoencoder", "dynamics"]),
    "physics_reference": ("physics-train.log", ["dynamics"]),
    "push_reference": ("push-train.log", ["dynamics"]),
}
#: (recipe, Lightning CSV log of one of its stages, that stage)
CSV_LOGS = [
    (recipe, LOGS / f"{world}-{stage}-metrics.csv", stage)
    for recipe, world, stage in [
        ("physics_autoencoder", "physics", "autoencoder"),
        ("push_autoencoder", "push", "autoencoder"),
        ("occlusion_reference", "occlusion", "autoencoder"),
        ("occlusion_reference", "occlusion", "dynamics"),
        ("orbit_reference", "orbit", "autoencoder"),
        ("orbit_reference", "orbit", "dynamics"),
        ("blockworld_reference", "blockworld", "autoencoder"),
        ("blockworld_reference", "blockworld", "dynamics"),
        ("physics_reference", "physics", "dynamics"),
        ("push_reference", "push", "dynamics"),
    ]
]
CSV_LOGS.append(("push_imagine_finetune", FINETUNE_LOGS / "all-finetune-metrics.csv", "dynamics"))


def logged_commands(log: Path, program: str) -> list[list[str]]:
    """The overrides of each ``worldsim <program>`` command a log records: in its ``# `` header, or
    ``/usr/bin/time -v``'s "Command being timed" line."""
    commands = []
    for line in log.read_text().splitlines():
        line = line.strip()
        if line.startswith(f"# worldsim {program} "):
            commands.append(shlex.split(line[2:])[2:])
        elif line.startswith(f'Command being timed: "worldsim {program} '):
            commands.append(shlex.split(line.split(": ", 1)[1][1:-1])[2:])
    return commands


def stage_settings(cfg: TrainConfig, stage: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Everything stage ``stage`` of ``cfg`` reads, paths aside."""
    if stage == "autoencoder":
        trainer = dataclasses.replace(cfg.trainer, max_steps=cfg.ae.max_steps or cfg.trainer.max_steps)
        return plain(
            {
                "network": build_autoencoder_config(cfg.autoencoder_model),
                "ae": cfg.ae,
                "optim": cfg.optim,
                "trainer": trainer,
                "seed": cfg.seed,
                "split_seed": cfg.dynamics_data.split_seed,
                "export_dtype": cfg.export_dtype,
            }
        )
    dit, text = build_networks(cfg.dynamics, meta)
    return plain(
        {
            "dit": dit,
            "text": text,
            "dynamics": without(plain(cfg.dynamics), SIZE_FIELDS),
            "dynamics_data": cfg.dynamics_data,
            "optim": cfg.optim,
            "trainer": cfg.trainer,
            "seed": cfg.seed,
            "export_dtype": cfg.export_dtype,
        }
    )


@pytest.mark.parametrize("recipe", sorted(RUN_LOGS))
def test_recipe_trains_what_the_command_in_its_runs_log_trained(recipe: str) -> None:
    log, stages = RUN_LOGS[recipe]
    (logged, *_) = logged_commands(LOGS / log, "train")  # the first; later ones resumed the CPU dynamics
    cfg, run = compose_train(f"experiment={recipe}"), compose_train(*logged)
    meta = record(AUTOENCODERS.get(recipe) or SHIPPED[recipe])["data"]
    for stage in stages:
        assert cfg.stage in (stage, "all")
        assert stage_settings(cfg, stage, meta) == stage_settings(run, stage, meta), stage
    for collected in logged_commands(LOGS / log, "collect"):  # the GPU logs record their data's command too
        logged_collect = compose("collect", collected)
        assert content_config(cfg.collect) == content_config(logged_collect)
        assert cfg.collect.workers == logged_collect.workers


@pytest.mark.parametrize("recipe,path,stage", CSV_LOGS, ids=[f"{r}-{s}" for r, _, s in CSV_LOGS])
def test_recipe_agrees_with_its_runs_csv_log(recipe: str, path: Path, stage: str) -> None:
    """Logging and validation intervals, the last step and the batch size, as the run logged them."""
    cfg = compose_train(f"experiment={recipe}")
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    steps = [int(row["step"]) for row in rows if row.get("train/loss")]
    every, max_steps = cfg.trainer.log_every_n_steps, cfg.trainer.max_steps
    if stage == "autoencoder":
        max_steps = cfg.ae.max_steps or max_steps
    assert steps[:-1] == list(range(every - 1, steps[-1], every))
    if cfg.trainer.max_time is None:
        assert steps[-1] == max_steps - 1
    else:  # the time limit ended it early
        assert steps[-1] < max_steps - 1
    validated = {int(row["step"]) for row in rows if any(v for k, v in row.items() if k.startswith("val/"))}
    assert validated and all((step + 1) % cfg.trainer.val_every_n_steps == 0 or step == steps[-1] for step in validated)
    batch = cfg.ae.batch_size if stage == "autoencoder" else cfg.dynamics_data.batch_size
    sizes = {
        float(row["train/device/samples_per_sec"]) / float(row["train/device/batches_per_sec"])
        for row in rows
        if row.get("train/device/samples_per_sec")
    }  # logged since the GPU runs
    assert all(size == pytest.approx(batch) for size in sizes)


def cached_frames(log: Path) -> int:
    """The frame count of the dataset a run's log says it cached latents of."""
    return int(re.search(r"cached (\d+) latent frames", log.read_text()).group(1))


#: recipe -> how many frames its run's dataset held: the shipped file's record, or its log
DATA_FRAMES = {
    **{recipe: lambda world=world: record(world)["data"]["frames"] for recipe, world in SHIPPED.items()},
    "physics_autoencoder": lambda: cached_frames(LOGS / "physics-cpu-train.log"),
    "push_autoencoder": lambda: cached_frames(LOGS / "push-cpu-train.log"),
    "push_imagine_finetune": lambda: cached_frames(FINETUNE_LOGS / "all-finetune.log"),
    "blockworld_idm": lambda: load_checkpoint(worldsim.reference_idm())["worldsim"]["data"]["frames"],
}


@pytest.mark.long
@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_records_as_many_frames_as_its_runs_data_held(recipe: str, tmp_path: Path) -> None:
    """Episode lengths follow the seed and the policy, so the frame count fingerprints the data."""
    cfg = compose_train(f"experiment={recipe}")
    summary = collect(dataclasses.replace(cfg.collect, out=str(tmp_path / "data"), workers=2, progress=False))
    assert summary.frames == DATA_FRAMES[recipe]()


def without(mapping: dict[str, Any], keys: Any) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key not in keys}


def assert_as_recorded(composed: dict[str, Any], recorded: dict[str, Any], defaults: dict[str, Any]) -> None:
    """Every recorded field is equal; fields added since the run (e.g. trainer.max_time, newer than
    Push's file, or flow.clean_history) are at their defaults, which is what the run did without them."""
    for key, value in recorded.items():
        if isinstance(value, dict) and isinstance(composed.get(key), dict) and isinstance(defaults.get(key), dict):
            assert_as_recorded(composed[key], value, defaults[key])
        else:
            assert composed[key] == value, f"{key}: {composed[key]!r} composed, {value!r} recorded"
    added = without(composed, recorded)
    assert added == {key: defaults[key] for key in added}


@pytest.mark.slow
def test_collect_records_the_data_then_trains_and_a_second_run_records_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    cfg = dataclasses.replace(
        config(data, tmp_path / "run", steps=2),
        collect=CollectConfig(env="worldsim/Physics-v0", episodes=4, max_steps=12, progress=False, out=str(data)),
    )
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
    import worldsim.training.train as train_module

    monkeypatch.setattr(train_module.rank_zero_only, "rank", 1)
    monkeypatch.setattr(train_module, "COLLECT_STALL_S", 0.5)
    done = CollectConfig(env="worldsim/Physics-v0", episodes=2, max_steps=5, progress=False, out=str(tmp_path / "done"))
    collect(done)
    train_module.record_data(done)  # complete: returns at once, records nothing
    with pytest.raises(RuntimeError, match="rank 1 waited 0 s for rank zero's collection"):
        train_module.record_data(dataclasses.replace(done, out=str(tmp_path / "never")))
    assert not (tmp_path / "never").exists()


def test_a_run_beside_another_trains_on_their_finished_data_but_never_on_a_dataset_being_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import fcntl

    import worldsim.training.train as train_module
    from worldsim.data.collect import CollectionBusy

    done = CollectConfig(env="worldsim/Physics-v0", episodes=2, max_steps=5, progress=False, out=str(tmp_path / "done"))
    collect(done)
    manifest = (tmp_path / "done" / "manifest.json").read_bytes()
    with open(tmp_path / "done" / ".lock") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        train_module.record_data(done)
        assert "holds all 2 episodes; another run is checking it" in capsys.readouterr().out
        for unfinished in (dataclasses.replace(done, episodes=3), dataclasses.replace(done, seed=1)):
            with pytest.raises(CollectionBusy, match="another `worldsim collect` is writing to"):
                train_module.record_data(unfinished)
    assert (tmp_path / "done" / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("recipe", MEMORY_RECIPES)
def test_each_memory_recipe_trains_clips_longer_than_its_window_and_its_ablation_only_drops_the_bank(
    recipe: str,
) -> None:
    cfg = compose_train(f"experiment={recipe}")
    off = compose_train(f"experiment={recipe}", "dynamics.memory.slots=0")
    if cfg.init is None:
        meta = record(cfg.collect.env.split("/")[1].removesuffix("-v0").lower())["data"]
        on_dit, off_dit = build_networks(cfg.dynamics, meta)[0], build_networks(off.dynamics, meta)[0]
    else:
        init = {"worldsim": load_checkpoint(cfg.init)["worldsim"]}
        data = init["worldsim"]["data"]
        on_dit = networks_of(init, data, cfg.dynamics.clip_length, cfg.dynamics.memory)[0]
        off_dit = networks_of(init, data, off.dynamics.clip_length, off.dynamics.memory)[0]
    assert on_dit.memory_slots == 8 and on_dit.max_frames > 2 * (on_dit.window + 1)
    assert dataclasses.replace(on_dit, memory_slots=0) == off_dit
