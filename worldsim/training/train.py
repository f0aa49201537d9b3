"""``worldsim train``: stage 1 trains the frame autoencoder, stage 2 the latent dynamics model.

``train(cfg)`` is a plain function (the CLI's Hydra app only builds ``cfg``), so tests call it::

    <out>/autoencoder/checkpoints/{step=000250,last}.ckpt   stage-1 training checkpoints
    <out>/autoencoder/{tensorboard,csv}/                    stage-1 logs
    <out>/autoencoder.pt                                    stage-1 export (EMA weights, configs, meta)
    <out>/dynamics/...                                      the same for stage 2
    <out>/model.pt                                          stage-2 export: DiT + text + autoencoder

``stage=idm`` trains BlockWorld's inverse-dynamics model instead (``<out>/idm/...``, ``<out>/idm.pt``),
the reader of the action suite (``worldsim.training.idm_module``).

``stage=all`` runs stage 1, caches the dataset's latents with its autoencoder, then stage 2.
``stage=dynamics init=<model.pt>`` fine-tunes an exported model on new data; with
``dynamics.trainable=heads`` only its reward and termination heads learn, so it predicts the same frames.

A recipe (``configs/experiment/<name>.yaml``, ``worldsim train experiment=<name>``) names a shipped
model's whole run, its data included: with ``collect`` set, ``train`` first records the dataset into
``data`` (``worldsim collect``'s resume: a finished dataset of the same settings is left as it is,
one of other settings is refused) and then trains on it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import lightning
from lightning.pytorch.utilities import rank_zero_only

from worldsim.checkpoint import (
    EXPORT_DTYPES,
    EXPORT_KEY,
    CheckpointError,
    autoencoder_config,
    dataset_meta,
    export_checkpoint,
    load_autoencoder,
    load_checkpoint,
    part_state_dict,
    recorded_sampling,
    set_default_sampling,
    set_record_fields,
)
from worldsim.config_checks import check_at_least

# The schema needs CollectConfig's type, so collect is not imported lazily: it adds ~30 ms to train's ~3 s.
from worldsim.data.collect import CollectConfig, CollectionBusy, collect, content_config, recorded_config
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.storage import DatasetError, read_manifest
from worldsim.models.autoencoder import AUTOENCODER_PRESETS, AutoencoderConfig
from worldsim.sampling import DEFAULT_SAMPLING, SamplingConfig
from worldsim.training.autoencoder_module import AutoencoderModule, AutoencoderStageConfig
from worldsim.training.datamodules import FrameDataModule, LatentClipDataConfig
from worldsim.training.dynamics_module import DynamicsConfig
from worldsim.training.harness import (
    TrainerConfig,
    WorldsimRecord,
    make_trainer,
    maybe_compile,
    resolve_resume,
    uses_cuda,
)
from worldsim.training.idm_module import IdmStageConfig
from worldsim.training.optim import OptimConfig

STAGES = ("autoencoder", "dynamics", "all", "idm")


@dataclass
class AutoencoderModelConfig:
    preset: str = "tiny"  # AUTOENCODER_PRESETS name: tiny (CPU; every shipped reference) | small (GPU)
    # AutoencoderConfig fields to change: +autoencoder_model.overrides={latent_channels:8}
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainConfig:
    # all (autoencoder, cache latents, dynamics) | autoencoder | dynamics | idm (BlockWorld's inverse-dynamics model)
    stage: str = "all"
    data: str = "data/episodes"  # dataset directory written by `worldsim collect`
    # run directory: <out>/<stage>/{checkpoints,tensorboard,csv}, exports <out>/autoencoder.pt, <out>/model.pt
    out: str = "runs/default"
    resume: Optional[str] = None  # a .ckpt, or a run directory (its <stage>/checkpoints/last.ckpt), to continue exactly
    # stage-1 checkpoint (.ckpt or .pt) for stage=dynamics; None: init's, else <out>/autoencoder.pt
    autoencoder: Optional[str] = None
    # exported model.pt that stage=dynamics starts from (fine-tuning): its networks, configs and recorded sampling
    init: Optional[str] = None
    seed: int = 0  # one seed: init, data order and every training step's noise
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # devices, strategy, precision, steps, intervals
    optim: OptimConfig = field(default_factory=OptimConfig)  # AdamW + warmup/cosine, clipping, EMA (both stages)
    # stage-1 network (model=... sets it)
    autoencoder_model: AutoencoderModelConfig = field(default_factory=AutoencoderModelConfig)
    ae: AutoencoderStageConfig = field(default_factory=AutoencoderStageConfig)  # stage-1 data and schedule
    # stage-2 network, objective and validation (model=... sets its preset)
    dynamics: DynamicsConfig = field(default_factory=DynamicsConfig)
    # float32 | float16 | bfloat16: weights of the exported .pt files (float16 halves a file to ship)
    export_dtype: str = "float32"
    # stage=idm: BlockWorld's inverse-dynamics model, its data and its held-out measurement; exports <out>/idm.pt
    idm: IdmStageConfig = field(default_factory=IdmStageConfig)
    # stage-2 clips; root, latents, clip_length and seed are set by train
    dynamics_data: LatentClipDataConfig = field(default_factory=LatentClipDataConfig)
    # how the model samples: in validation rollouts, and as the default its model.pt records (sampling.steps=2 ...);
    # unset: init's, else the library's
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # `worldsim collect` settings to record data with first (a finished dataset is kept); recipes set it, its out the
    # data folder
    collect: Optional[CollectConfig] = None

    def __post_init__(self) -> None:
        check_at_least(self, seed=0)
        if self.stage not in STAGES:
            raise ValueError(f"stage={self.stage!r} is not one of {STAGES}: pick one")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"export_dtype={self.export_dtype!r} is not one of {sorted(EXPORT_DTYPES)}")
        if self.init is not None and self.stage != "dynamics":
            raise ValueError(f"init={self.init} fine-tunes a trained model's dynamics: run it with stage=dynamics")
        if self.init is not None and (self.dynamics.dit or self.dynamics.text):
            raise ValueError(
                f"init={self.init} brings its own networks: drop the dynamics.dit / dynamics.text "
                "overrides (the model= preset is ignored too)"
            )
        if self.collect is not None and self.collect.out != self.data:
            raise ValueError(
                f"collect.out={self.collect.out} differs from data={self.data}: the dataset "
                "collect records is the one training reads; set collect.out=${data} (as the "
                "recipes do) and name the folder with data="
            )
        if self.autoencoder_model.preset not in AUTOENCODER_PRESETS:
            raise ValueError(
                f"autoencoder_model.preset={self.autoencoder_model.preset!r} is not one of "
                f"{sorted(AUTOENCODER_PRESETS)}"
            )


def build_autoencoder_config(cfg: AutoencoderModelConfig) -> AutoencoderConfig:
    fields = {**dataclasses.asdict(AUTOENCODER_PRESETS[cfg.preset]), **cfg.overrides}
    fields["channel_multipliers"] = tuple(fields["channel_multipliers"])
    unknown = sorted(set(cfg.overrides) - {f.name for f in dataclasses.fields(AutoencoderConfig)})
    if unknown:
        raise ValueError(f"autoencoder_model.overrides {unknown} are not AutoencoderConfig fields")
    return AutoencoderConfig(**fields)


def stage_resume(resume: Optional[str], stage: str, required: bool) -> Optional[Path]:
    """The checkpoint ``stage`` resumes from; with ``stage=all`` a stage not yet begun starts fresh."""
    if not resume:
        return None
    path = Path(resume)
    if path.is_file():
        written_by = readable_resume(path)["worldsim"].get("stage")
        if written_by == stage:
            return path
        if required:
            raise CheckpointError(
                f"resume={resume} is a {written_by!r} checkpoint, not a {stage!r} one: "
                f"pass a {stage} checkpoint or the run directory"
            )
        return None
    if not required and path.is_dir() and not (path / stage / "checkpoints" / "last.ckpt").is_file():
        return None
    resolved = resolve_resume(resume, stage)
    readable_resume(resolved)
    return resolved


def readable_resume(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, or an error naming the others it was saved beside to resume from."""
    try:
        return load_checkpoint(path)
    except CheckpointError as error:
        others = sorted(p.name for p in path.parent.glob("*.ckpt") if p != path)
        fix = (
            f"resume from another checkpoint of the run: {', '.join(str(path.parent / o) for o in others)}"
            if others
            else "no other checkpoint lies beside it: start the stage again without resume="
        )
        raise CheckpointError(f"resume={path} cannot be resumed from ({error}); {fix}") from None


def train_autoencoder(cfg: TrainConfig) -> Path:
    """Stage 1; returns the exported autoencoder file."""
    out, stage_dir = Path(cfg.out), Path(cfg.out) / "autoencoder"
    resume = stage_resume(cfg.resume, "autoencoder", required=cfg.stage == "autoencoder")
    max_steps = cfg.ae.max_steps or cfg.trainer.max_steps
    trainer_cfg = dataclasses.replace(cfg.trainer, max_steps=max_steps)
    lightning.seed_everything(cfg.seed, workers=True)
    config = build_autoencoder_config(cfg.autoencoder_model)
    module = AutoencoderModule(config, cfg.optim, max_steps, cfg.seed, cfg.ae.statistics_frames, cfg.ae.image_frames)
    maybe_compile([module.autoencoder], trainer_cfg)
    record = WorldsimRecord(
        "autoencoder",
        configs={"autoencoder": config, "optim": cfg.optim, "trainer": trainer_cfg, "ae": cfg.ae, "seed": cfg.seed},
        data=dataset_meta(cfg.data),
        parts=module.export_parts,
    )
    trainer = make_trainer(trainer_cfg, cfg.optim, stage_dir, [record], shards_own_data=True)
    # The dynamics stage's episode split, so both stages hold out the same episodes.
    frames = FrameDataModule(cfg.data, cfg.ae, cfg.seed, cfg.dynamics_data.split_seed)
    trainer.fit(module, datamodule=frames, ckpt_path=str(resume) if resume else None, weights_only=True)
    exported = out / "autoencoder.pt"
    if trainer.is_global_zero:
        export_checkpoint(stage_dir / "checkpoints" / "last.ckpt", exported, dtype=cfg.export_dtype)
    trainer.strategy.barrier("autoencoder export")  # other ranks read it in the next stage
    return exported


def train_dynamics(cfg: TrainConfig) -> Path:
    """Stage 2 on latents of the stage-1 autoencoder; returns the exported model file."""
    from worldsim.data.latents import cache_latents
    from worldsim.training.datamodules import LatentClipDataModule
    from worldsim.training.dynamics_module import DynamicsModule

    out, stage_dir = Path(cfg.out), Path(cfg.out) / "dynamics"
    resume = stage_resume(cfg.resume, "dynamics", required=cfg.stage == "dynamics")
    init = load_checkpoint(cfg.init) if cfg.init else None
    if init is not None and init["worldsim"].get("kind") != "export":
        raise CheckpointError(
            f"init={cfg.init} is not an exported model file: pass the <run>/model.pt that "
            "`worldsim train` writes (or a shipped reference)"
        )
    if init is not None and "dit" not in init[EXPORT_KEY]:
        raise CheckpointError(
            f"init={cfg.init} holds {sorted(init[EXPORT_KEY])}, no dynamics model to fine-tune: pass a "
            f"<run>/model.pt (or a shipped reference); an autoencoder file goes to autoencoder={cfg.init}"
        )
    autoencoder_path = Path(cfg.autoencoder or cfg.init or out / "autoencoder.pt")
    if not autoencoder_path.is_file():
        raise CheckpointError(
            f"stage=dynamics needs a trained autoencoder, and {autoencoder_path} does not exist: train "
            f"one first (`worldsim train stage=autoencoder out={cfg.out}`) or pass autoencoder=<.ckpt or .pt>"
        )
    autoencoder = load_autoencoder(autoencoder_path)
    device = "cuda" if uses_cuda(cfg.trainer.accelerator) else "cpu"
    # Refuse a changed dataset before spending minutes encoding it; the DataModule's check is then free.
    EpisodeDataset(cfg.data, verify=cfg.dynamics_data.verify)
    # Every rank may call this: the cache is built under a file lock and reused when fresh.
    latents = cache_latents(cfg.data, autoencoder.to(device), device=device)
    autoencoder.cpu()
    data = LatentClipDataModule(
        dataclasses.replace(
            cfg.dynamics_data, root=cfg.data, latents=latents, clip_length=cfg.dynamics.clip_length, seed=cfg.seed
        )
    )
    data.setup("fit")
    lightning.seed_everything(cfg.seed, workers=True)
    # Validation rollouts sample as the exported model will: this run's sampling over init's record.
    sampling = cfg.sampling.over(recorded_sampling(init["worldsim"]) if init is not None else DEFAULT_SAMPLING)
    module = DynamicsModule(
        cfg.dynamics,
        cfg.optim,
        cfg.trainer.max_steps,
        data.meta,
        autoencoder,
        seed=cfg.seed,
        init=init,
        sampling=sampling,
    )
    maybe_compile([module.networks["dit"]], cfg.trainer)
    prefix = "ema.model." if module.ema is not None else "networks."
    ae_record = load_checkpoint(autoencoder_path)["worldsim"]
    record = WorldsimRecord(
        "dynamics",
        configs={
            "dynamics": cfg.dynamics,
            "dit": module.dit_config,
            "text": module.text_config,
            "optim": cfg.optim,
            "trainer": cfg.trainer,
            "seed": cfg.seed,
            "autoencoder_source": str(autoencoder_path.resolve()),
            "init": str(Path(cfg.init).resolve()) if cfg.init else None,
        },
        data={**dataset_meta(cfg.data), "latents": str(latents), **data.meta},
        parts={"dit": f"{prefix}dit.", "text": f"{prefix}text."},
    )
    trainer = make_trainer(cfg.trainer, cfg.optim, stage_dir, [record], shards_own_data=True)
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True)
    exported = out / "model.pt"
    if trainer.is_global_zero:
        ae_checkpoint = load_checkpoint(autoencoder_path)
        export_checkpoint(
            stage_dir / "checkpoints" / "last.ckpt",
            exported,
            extra_parts={"autoencoder": part_state_dict(ae_checkpoint, "autoencoder")},
            extra_configs={"autoencoder": autoencoder_config(ae_record)},
            dtype=cfg.export_dtype,
        )
        recorded = cfg.sampling.given() or (init["worldsim"].get("sampling") if init is not None else None)
        if recorded:  # what this config sets, else a fine-tuned model samples as its init did
            set_default_sampling(exported, **recorded)
    trainer.strategy.barrier("dynamics export")
    return exported


def train_idm(cfg: TrainConfig) -> Path:
    """BlockWorld's inverse-dynamics model; returns the exported file, its held-out accuracy in its record."""
    from worldsim.checkpoint import load_inverse_dynamics
    from worldsim.training.idm_module import IdmDataModule, IdmModule, heldout_accuracy

    out, stage_dir = Path(cfg.out), Path(cfg.out) / "idm"
    resume = stage_resume(cfg.resume, "idm", required=True)
    max_steps = cfg.idm.max_steps or cfg.trainer.max_steps
    trainer_cfg = dataclasses.replace(cfg.trainer, max_steps=max_steps)
    lightning.seed_everything(cfg.seed, workers=True)
    data = IdmDataModule(cfg.data, cfg.idm, cfg.seed, cfg.dynamics_data.split_seed)
    module = IdmModule(cfg.idm.model, cfg.optim, max_steps)
    record = WorldsimRecord(
        "idm",
        configs={
            "idm": cfg.idm.model,
            "idm_stage": cfg.idm,
            "optim": cfg.optim,
            "trainer": trainer_cfg,
            "seed": cfg.seed,
        },
        data=dataset_meta(cfg.data),
        parts=module.export_parts,
    )
    trainer = make_trainer(trainer_cfg, cfg.optim, stage_dir, [record], shards_own_data=True)
    started = time.monotonic()
    trainer.fit(module, datamodule=data, ckpt_path=str(resume) if resume else None, weights_only=True)
    exported = out / "idm.pt"
    if trainer.is_global_zero:
        export_checkpoint(stage_dir / "checkpoints" / "last.ckpt", exported, dtype=cfg.export_dtype)
        fields: dict[str, Any] = {"train_seconds": round(time.monotonic() - started, 1)}
        if cfg.idm.heldout_episodes:
            # Measured on the exported weights (float16 when shipped), as users will load them.
            fields["accuracy"] = heldout_accuracy(load_inverse_dynamics(exported), cfg.idm)
            print(f"idm held-out accuracy per group: {fields['accuracy']}", flush=True)
        set_record_fields(exported, **fields)
    trainer.strategy.barrier("idm export")
    return exported


def _recorded_in_full(cfg: CollectConfig) -> bool:
    """Whether ``cfg.out`` already lists every episode ``cfg`` asks for, recorded with its settings."""
    try:
        manifest = read_manifest(Path(cfg.out))
    except DatasetError:
        return False
    return manifest["episodes"] == cfg.episodes and recorded_config(manifest) == content_config(cfg)


#: How long a process of a multi-process launch waits for rank zero's collection to commit a shard.
COLLECT_STALL_S = 600.0


def record_data(cfg: CollectConfig) -> None:
    """Record the dataset ``cfg`` describes into ``cfg.out``; a finished one of the same settings is kept.

    Under torchrun or SLURM every process runs ``train``: rank zero records, the others wait until
    the manifest holds every episode, or give up when no shard arrives for ``COLLECT_STALL_S``.
    """
    if rank_zero_only.rank == 0:
        try:
            collect(cfg)
        except CollectionBusy:
            if not _recorded_in_full(cfg):
                raise
            # Another run (an ablation beside this one) holds the lock only to check the finished data.
            print(f"{cfg.out} holds all {cfg.episodes} episodes; another run is checking it, training on it as is")
        return
    root, seen, since = Path(cfg.out), None, time.monotonic()
    while True:
        try:
            episodes = read_manifest(root)["episodes"]
        except DatasetError:  # not begun yet
            episodes = None
        if episodes == cfg.episodes:
            return
        if episodes != seen:
            seen, since = episodes, time.monotonic()
        elif time.monotonic() - since > COLLECT_STALL_S:
            raise RuntimeError(
                f"rank {rank_zero_only.rank} waited {COLLECT_STALL_S:.0f} s for rank zero's "
                f"collection into {root} to add a shard ({episodes} of {cfg.episodes} episodes): "
                "see rank zero's error, or record the data first with `worldsim collect`"
            )
        time.sleep(1.0)


def train(cfg: TrainConfig) -> dict[str, Path]:
    """Record ``cfg.collect``'s data if set, then run the stage(s) of ``cfg``; returns {stage: exported file}."""
    if cfg.collect is not None:
        record_data(cfg.collect)
    results: dict[str, Path] = {}
    if cfg.stage in ("autoencoder", "all"):
        results["autoencoder"] = train_autoencoder(cfg)
    if cfg.stage in ("dynamics", "all"):
        results["dynamics"] = train_dynamics(cfg)
    if cfg.stage == "idm":
        results["idm"] = train_idm(cfg)
    out = Path(cfg.out)
    lines = [f"worldsim train: finished stage {cfg.stage} in {out}"]
    for stage, exported in results.items():
        lines += [
            f"  {stage}: checkpoints {out / stage / 'checkpoints'} (last.ckpt resumes; "
            f"`worldsim train ... resume={out}`)",
            f"  {stage}: inference file {exported}",
            f"  {stage}: logs {out / stage / 'csv'} and `tensorboard --logdir {out / stage / 'tensorboard'}`",
        ]
    if rank_zero_only.rank == 0:
        print("\n".join(lines), flush=True)
    return results
