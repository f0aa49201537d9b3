"""What every training stage shares: precision by hardware, the Trainer, loggers, checkpoints, resume.

Exact resume rests on one rule: everything random in a training step is a function of
(seed, global step, rank). Batches come from :class:`StepSampler`, whose batch for step g on rank r
is drawn from ``default_rng([seed, g, r])`` and which starts each epoch at the trainer's restored global
step; modules draw their noise from :func:`step_generator`. Lightning restores weights, EMA
(a submodule), optimizer, scheduler and loop counters, so a run resumed from step k's checkpoint
takes exactly the steps an uninterrupted run would have taken.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, TypeVar, Union

import lightning
import numpy as np
import torch
from lightning.fabric.utilities.throughput import get_available_flops
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.utils.data import DataLoader, Sampler
from torch.utils.flop_counter import FlopCounterMode

from worldsim.checkpoint import worldsim_record
from worldsim.config_checks import check_at_least
from worldsim.training.optim import OptimConfig

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "ddp", "fsdp")
# Steps per Lightning epoch. Batches depend on the global step alone, so this only sets when
# epoch-end hooks run; fixed, so resuming with a different max_steps keeps epochs aligned.
STEPS_PER_EPOCH = 1000


@dataclass
class TrainerConfig:
    accelerator: str = "auto"  # cpu | gpu | auto (gpu when CUDA is present)
    devices: str = "auto"  # devices per node: a count ("2"), a list ("[0,1]") or "auto"
    strategy: str = "auto"  # auto | ddp | fsdp; ddp on CPU uses gloo
    num_nodes: int = 1  # machines; SLURM or torchrun start one process per device on each
    precision: str = "auto"  # auto: bf16-mixed on CUDA, 32-true on CPU; or any Lightning value
    max_steps: int = 2000  # optimizer steps of each stage
    # also stop a stage after this wall time, "DD:HH:MM:SS"; the LR schedule still follows max_steps
    max_time: Optional[str] = None
    val_every_n_steps: int = 250  # validate (and log images) every this many steps
    log_every_n_steps: int = 25  # scalar logging interval
    checkpoint_every_n_steps: int = 250  # write step=N.ckpt and refresh last.ckpt this often
    keep_checkpoints: int = 3  # most recent step checkpoints kept besides last.ckpt (-1: all)
    limit_val_batches: float = 1.0  # share (<= 1.0) or count (> 1) of val batches per validation
    num_sanity_val_steps: int = 0  # val batches run before training to catch bugs early
    deterministic: bool = False  # torch deterministic algorithms (slower on GPU)
    compile: bool = False  # torch.compile the inner model (only when CUDA is present)
    progress_bar: bool = True  # show Lightning's progress bar

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"trainer.strategy={self.strategy!r} is not one of {STRATEGIES}: pick "
                "one (ddp for several processes, fsdp to shard large models)"
            )
        check_at_least(
            self,
            "trainer",
            num_nodes=1,
            max_steps=1,
            val_every_n_steps=1,
            log_every_n_steps=1,
            checkpoint_every_n_steps=1,
            keep_checkpoints=-1,
            num_sanity_val_steps=-1,  # -1: all, as in Lightning
            limit_val_batches=0,
        )


def parse_devices(devices: Union[str, int, Sequence[int]]) -> Union[str, int, list[int]]:
    """``"auto"``, ``"2"`` or ``"[0, 1]"`` (strings from the CLI) as Lightning's devices argument."""
    if isinstance(devices, (int, list, tuple)):
        return list(devices) if isinstance(devices, tuple) else devices
    text = devices.strip()
    if text == "auto" or text == "-1":
        return text if text == "auto" else -1
    if text.startswith("["):
        return [int(d) for d in text.strip("[]").split(",") if d.strip()]
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"trainer.devices={devices!r}: expected 'auto', a count like 2 or a list like [0,1]") from None


def uses_cuda(accelerator: str) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str = "auto") -> str:
    """``"auto"`` -> ``bf16-mixed`` on CUDA (16-mixed without bf16 support), ``32-true`` on CPU.

    CPU stays at fp32: bf16 autocast made a small DiT ~20x slower on an AVX2 CPU. Any other value
    passes through to Lightning unchanged.
    """
    if precision != "auto":
        return precision
    if not uses_cuda(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def strategy_argument(cfg: TrainerConfig) -> Any:
    """Lightning's strategy for ``cfg``.

    Local multi-process DDP/FSDP uses the ``spawn`` start method: Lightning's default re-runs the
    command line per process, which cannot reproduce a ``worldsim <command>`` invocation. Under
    torchrun or SLURM the processes already exist and the start method is not used.
    """
    if cfg.strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(start_method="spawn")
    if cfg.strategy == "fsdp":
        from lightning.pytorch.strategies import FSDPStrategy

        return FSDPStrategy(state_dict_type="full")  # one consolidated file, as checkpoints expect
    return "auto"


T = TypeVar("T")


def counted_step(module: lightning.LightningModule, step: Callable[[], T]) -> T:
    """``step()`` (a training loss); the first time, also count its model FLOPs as ``module.flops_per_batch``.

    Model FLOPs are three times the forward pass's (a backward costs about two forwards), the
    convention MFU figures are quoted in. PyTorch's FlopCounterMode counts them on the real inputs:
    matrix products, convolutions, and attention on CUDA (PyTorch has no formula for the CPU
    attention kernel); elementwise work is left out, as model-FLOPs utilization intends. Passes run
    without gradients inside the loss (``dynamics.flow.rollout_prob``) are counted three times too.
    ``DeviceThroughput`` reads the attribute to log FLOPs/s and MFU.
    """
    if getattr(module, "flops_per_batch", None) is not None:
        return step()
    counter = FlopCounterMode(display=False)
    with counter:
        result = step()
    module.flops_per_batch = 3 * counter.get_total_flops()
    return result


def batch_size(batch: Any) -> int:
    """Samples in a training batch: clips of a dynamics batch, frames of an autoencoder batch (one-frame clips)."""
    return len(batch["caption"])


def step_generator(seed: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """The generator of one training step's noise: same (seed, step, rank), same draws."""
    mixed = int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(mixed)


class StepSampler(Sampler[int]):
    """Item indices whose batch for global step g is ``default_rng([seed, g, rank])`` draws, with replacement.

    Each ``__iter__`` starts at ``start_step()`` (the trainer's restored global step) and runs to
    the end of that step's epoch of ``steps_per_epoch`` steps; ``__len__`` is a whole epoch,
    which is what Lightning counts a resumed epoch's batch index against. With ``favoured`` items
    (an episode's first clip, say), each draw is one of them with chance ``favoured_prob`` and
    any item otherwise.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        seed: int,
        start_step: Callable[[], int],
        rank: int = 0,
        steps_per_epoch: int = STEPS_PER_EPOCH,
        favoured: Optional[np.ndarray] = None,
        favoured_prob: float = 0.0,
    ) -> None:
        if num_items < 1:
            raise ValueError("a StepSampler needs at least one item to draw")
        if favoured_prob > 0 and (favoured is None or len(favoured) == 0):
            raise ValueError(f"favoured_prob={favoured_prob} needs favoured items to draw")
        self.num_items, self.batch_size, self.seed, self.rank = num_items, batch_size, seed, rank
        self.start_step, self.steps_per_epoch = start_step, steps_per_epoch
        self.favoured, self.favoured_prob = favoured, favoured_prob

    def __len__(self) -> int:
        return self.steps_per_epoch * self.batch_size

    def batch(self, step: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, step, self.rank])
        items = rng.integers(0, self.num_items, self.batch_size)
        if self.favoured_prob > 0:  # extra draws only here, so other runs' batches are unchanged
            picked = rng.random(self.batch_size) < self.favoured_prob
            items[picked] = self.favoured[rng.integers(0, len(self.favoured), int(picked.sum()))]
        return items

    def __iter__(self) -> Iterator[int]:
        start = int(self.start_step())
        end = (start // self.steps_per_epoch + 1) * self.steps_per_epoch
        for step in range(start, end):
            yield from self.batch(step).tolist()


class StepDataLoader(DataLoader):
    """A DataLoader Lightning treats as resumable: its position is the trainer's global step.

    The state is empty because :class:`StepSampler` reads the restored global step itself; having
    ``state_dict``/``load_state_dict`` tells Lightning a mid-epoch resume is exact.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class WorldsimRecord(Callback):
    """Adds the ``"worldsim"`` record (configs, data meta, versions) to every checkpoint saved."""

    def __init__(
        self, stage: str, configs: Mapping[str, Any], data: Mapping[str, Any], parts: Mapping[str, str]
    ) -> None:
        self.record = worldsim_record(stage, configs, data, parts)

    def on_save_checkpoint(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        # Merged: a module may add its own entries (DynamicsModule adds "dynamics").
        checkpoint["worldsim"] = {
            **checkpoint.get("worldsim", {}),
            **self.record,
            "global_step": int(trainer.global_step),
        }


class DeviceThroughput(Callback):
    """Logs train/device/{batches,samples,flops}_per_sec and mfu over each logging interval.

    Lightning's ThroughputMonitor synchronizes CUDA after every batch to time it, so the host can
    never queue the next step while the GPU works on this one. This callback only counts batches
    between logging steps and synchronizes once per interval. FLOPs are the module's
    ``flops_per_batch`` (see ``counted_step``) times the interval's batches; MFU divides the FLOPs/s
    of one device by its dense peak at the run's precision, where Lightning knows the device.
    """

    def __init__(self, batch_size_fn: Callable[[Any], int]) -> None:
        self.batch_size_fn = batch_size_fn
        self._since: Optional[float] = None
        self._batches = self._samples = 0
        self._peak: Optional[float] = None

    def on_train_start(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(str(trainer.precision).split("-")[0], torch.float32)
        self._peak = get_available_flops(trainer.strategy.root_device, dtype)
        self._since = time.perf_counter()

    def on_train_batch_end(
        self, trainer: lightning.Trainer, pl_module: lightning.LightningModule, outputs: Any, batch: Any, *args: Any
    ) -> None:
        self._batches += 1
        self._samples += self.batch_size_fn(batch)
        if not trainer._logger_connector.should_update_logs or self._since is None:
            return
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        seconds, self._since = now - self._since, now
        metrics = {
            "train/device/batches_per_sec": self._batches / seconds,
            "train/device/samples_per_sec": self._samples / seconds,
        }
        flops = getattr(pl_module, "flops_per_batch", None)
        if flops:
            metrics["train/device/flops_per_sec"] = flops * self._batches / seconds
            if self._peak:
                metrics["train/device/mfu"] = metrics["train/device/flops_per_sec"] / self._peak
        self._batches = self._samples = 0
        pl_module.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)


class FinalCheckpoint(Callback):
    """At the end of a finished fit, let the module finalize (``finish_training``), then save last.ckpt.

    Periodic checkpoints fall on multiples of the interval; this one holds the last step. It
    is not reached when training raises (a non-finite loss), so no broken file is written.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_end(self, trainer: lightning.Trainer, pl_module: lightning.LightningModule) -> None:
        finish = getattr(pl_module, "finish_training", None)
        if finish is not None:
            finish()
        trainer.save_checkpoint(self.path, weights_only=False)  # full state: last.ckpt resumes


def make_trainer(
    cfg: TrainerConfig,
    optim: OptimConfig,
    stage_dir: Union[str, Path],
    callbacks: Sequence[Callback] = (),
    shards_own_data: bool = False,
) -> lightning.Trainer:
    """A Trainer writing checkpoints to ``<stage_dir>/checkpoints`` and logs to ``<stage_dir>/{tensorboard,csv}``.

    ``shards_own_data``: the train loader already gives each rank its own batches (``StepSampler``),
    so Lightning must not wrap its sampler in a DistributedSampler.
    """
    stage_dir = Path(stage_dir)
    # The EMA copy is in eval mode on purpose; Lightning warns about any eval-mode module.
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    checkpoint_dir = stage_dir / "checkpoints"
    step_checkpoints = ModelCheckpoint(
        dirpath=checkpoint_dir,
        filename="step={step:06d}",
        auto_insert_metric_name=False,
        every_n_train_steps=cfg.checkpoint_every_n_steps,
        # "step" always exists, so keeping the top k by step keeps the k most recent.
        monitor="step",
        mode="max",
        save_top_k=cfg.keep_checkpoints,
        save_last=True,
        enable_version_counter=False,
    )
    loggers = [
        TensorBoardLogger(save_dir=str(stage_dir), name="tensorboard", version=""),
        # A CSV file cannot be appended to across runs the way TensorBoard events are: each
        # (resumed) run writes csv/version_N/metrics.csv, N counting up.
        CSVLogger(save_dir=str(stage_dir), name="csv"),
    ]
    return lightning.Trainer(
        accelerator=cfg.accelerator,
        devices=parse_devices(cfg.devices),
        strategy=strategy_argument(cfg),
        num_nodes=cfg.num_nodes,
        precision=resolve_precision(cfg.precision, cfg.accelerator),
        max_steps=cfg.max_steps,
        max_time=cfg.max_time,
        max_epochs=-1,
        # Capped at the run's length, so a stage shorter than the interval still validates once, at its end.
        val_check_interval=min(cfg.val_every_n_steps, cfg.max_steps),
        check_val_every_n_epoch=None,
        limit_val_batches=cfg.limit_val_batches,
        num_sanity_val_steps=cfg.num_sanity_val_steps,
        log_every_n_steps=cfg.log_every_n_steps,
        gradient_clip_val=optim.grad_clip if optim.grad_clip > 0 else None,
        gradient_clip_algorithm="norm",
        deterministic=cfg.deterministic,
        enable_progress_bar=cfg.progress_bar,
        enable_model_summary=False,
        # Logs train/device/samples_per_sec, and flops_per_sec and mfu (against the GPU's dense peak at
        # this precision) once the module has counted its flops_per_batch.
        callbacks=[
            step_checkpoints,
            DeviceThroughput(batch_size),
            *callbacks,
            FinalCheckpoint(checkpoint_dir / "last.ckpt"),
        ],
        logger=loggers,
        default_root_dir=str(stage_dir),
        use_distributed_sampler=not shards_own_data,
    )


def fuses_adamw(device: torch.device, precision: str, sharded: bool = False) -> bool:
    """Whether training on ``device`` at ``precision`` uses a fused AdamW (``TrainingModule``): on CUDA,
    but not under fp16 loss scaling or FSDP (``sharded``), where Lightning's own clipping is needed."""
    return device.type == "cuda" and precision != "16-mixed" and not sharded


class TrainingModule(lightning.LightningModule):
    """Base of every stage's LightningModule: AdamW fused on CUDA, and gradient clipping Lightning accepts for it.

    A fused AdamW updates every parameter in one kernel launch instead of several per tensor.
    Lightning refuses to clip its gradients under mixed precision, because with an fp16 loss scale
    such an optimiser unscales inside its step. Under bf16 and fp32 there is no loss scale, so the
    norm is clipped here, on the device, without a host sync. fp16 loss scaling and FSDP (whose
    gradient norms are sharded) keep the unfused optimiser and Lightning's own clipping.
    """

    @property
    def fused_adamw(self) -> bool:
        """Whether ``configure_optimizers`` builds a fused AdamW for this run."""
        trainer = self._trainer
        if trainer is None:
            return False
        return fuses_adamw(self.device, trainer.precision, isinstance(trainer.strategy, FSDPStrategy))

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        if not (self.fused_adamw and gradient_clip_val):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, float(gradient_clip_val), foreach=True)


def maybe_compile(models: Sequence[nn.Module], cfg: TrainerConfig) -> None:
    """``torch.compile`` each model in place (state_dict keys unchanged) when asked and CUDA is present."""
    if not cfg.compile:
        return
    if not uses_cuda(cfg.accelerator):
        rank_zero_info("trainer.compile=true ignored: compiling pays off on CUDA only")
        return
    for model in models:
        model.compile()


def log_parameter_count(name: str, model: nn.Module) -> int:
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    rank_zero_info(f"{name}: {count / 1e6:.2f}M trainable parameters")
    return count


def resolve_resume(resume: Optional[str], stage: str) -> Optional[Path]:
    """``resume`` as a checkpoint path: a .ckpt as given; a run dir -> <run>/<stage>/checkpoints/last.ckpt."""
    if not resume:
        return None
    path = Path(resume)
    if path.is_dir():
        candidates = [
            path / stage / "checkpoints" / "last.ckpt",
            path / "checkpoints" / "last.ckpt",
            path / "last.ckpt",
        ]
        for candidate in candidates:
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"resume={resume} is a directory without a last.ckpt (looked for "
            f"{', '.join(str(c) for c in candidates)}): pass a run directory that has trained stage "
            f"{stage!r}, or a .ckpt file"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"resume={resume} does not exist: pass a .ckpt file or a run directory "
            "(its <stage>/checkpoints/last.ckpt is used)"
        )
    return path
