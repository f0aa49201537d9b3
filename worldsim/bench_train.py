"""``worldsim bench suites=[train]``: training throughput of each model preset, both stages.

Each stage's LightningModule is built at a preset's size (``configs/model/<preset>.yaml``) and timed
on one random in-memory batch, so the figure is the training step itself, what a data loader has to
keep fed: forward and loss (the module's ``training_step``), backward, gradient clipping, AdamW and
the EMA update, as ``worldsim train`` runs them, at the precision it would choose on this device
(``trainer.precision=auto``), eager and with the networks compiled.

Model FLOPs per sample are counted once on the step's real shapes (PyTorch's FlopCounterMode, three
times the forward pass, the convention MFU is quoted in), with attention through its math kernel so
that it is counted on a CPU too. MFU divides the achieved FLOPs/s by the device's dense peak at that
precision: Lightning's table for GPUs; for a CPU an estimate, cores x clock x FLOPs per cycle of the
vector units (32 fp32 for two AVX2 FMA units, 64 for AVX-512's), which the report names as such.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from worldsim.config_checks import check_at_least

STAGES = ("autoencoder", "dynamics")
CAPTIONS = ["a red ball bounces left", "two blue boxes fall", "a green ball rolls right and stops", "nothing moves"]


@dataclass
class TrainBenchConfig:
    presets: list[str] = field(default_factory=lambda: ["tiny"])  # model= presets: tiny | mid | small | base
    stages: list[str] = field(default_factory=lambda: list(STAGES))  # autoencoder | dynamics
    compile: list[bool] = field(default_factory=lambda: [False])  # eager (false) and/or compiled (true)
    device: Optional[str] = None  # None: cuda when present
    autoencoder_batch: int = 64  # frames per autoencoder step (train's ae.batch_size)
    dynamics_batch: int = 16  # clips per dynamics step (train's dynamics_data.batch_size)
    clip_length: int = 16  # frames per dynamics clip
    # overrides of the presets' DiT, as train's dynamics.dit: +train.dit={patch_size:2} (the quickstart's)
    dit: dict[str, Any] = field(default_factory=dict)
    # train's dynamics.memory, to time a memory model's step: +train.memory={slots:8,window:7} with clip_length=64
    memory: dict[str, Any] = field(default_factory=dict)
    frame_size: int = 64  # frame height and width in pixels
    steps: int = 10  # timed steps per figure
    warmup: int = 3  # untimed steps before them (compiled: also the compilation)
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        check_at_least(
            self,
            "train",
            autoencoder_batch=1,
            dynamics_batch=1,
            clip_length=2,
            frame_size=16,
            steps=1,
            warmup=1,
            threads=0,
        )


def model_preset(name: str) -> dict[str, str]:
    """The autoencoder and DiT presets that ``model=<name>`` selects, read from its config file."""
    from omegaconf import OmegaConf

    path = importlib.resources.files("worldsim.configs") / "model" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"train.presets: {name!r} is no model preset: use tiny, mid, small or base")
    config = OmegaConf.load(str(path))
    return {"autoencoder": config.autoencoder_model.preset, "dynamics": config.dynamics.preset}


def cpu_peak_flops() -> tuple[float, str]:
    """An estimate of this CPU's dense fp32 peak: cores x clock x FLOPs per cycle of its vector units."""
    flags, mhz = "", 0.0
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags") and not flags:
                    flags = line
                elif line.startswith("cpu MHz"):
                    mhz = max(mhz, float(line.split(":")[1]))
    per_cycle = 64 if "avx512f" in flags else 32 if "avx2" in flags else 16
    cores = len(os.sched_getaffinity(0))
    return cores * mhz * 1e6 * per_cycle, f"estimate: {cores} cores x {mhz:.0f} MHz x {per_cycle} fp32 FLOPs/cycle"


def peak_flops(device: torch.device, precision: str) -> tuple[Optional[float], str]:
    if device.type == "cpu":
        return cpu_peak_flops()
    from lightning.fabric.utilities.throughput import get_available_flops

    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(precision.split("-")[0], torch.float32)
    peak = get_available_flops(device, dtype)
    return peak, f"{torch.cuda.get_device_name(device)} dense {dtype}, Lightning's table"


def autoencoder_step(preset: str, cfg: TrainBenchConfig, device: torch.device):
    """(module, its networks, a batch, samples per batch) of the autoencoder stage at ``preset``."""
    from worldsim.models.autoencoder import AUTOENCODER_PRESETS
    from worldsim.training.autoencoder_module import AutoencoderModule
    from worldsim.training.optim import OptimConfig

    module = AutoencoderModule(AUTOENCODER_PRESETS[preset], OptimConfig(), max_steps=1000).to(device)
    frames = torch.randint(0, 256, (cfg.autoencoder_batch, 1, 3, cfg.frame_size, cfg.frame_size), dtype=torch.uint8)
    batch = {"frames": frames.to(device), "caption": [""] * cfg.autoencoder_batch}
    return module, [module.autoencoder], batch, cfg.autoencoder_batch


def dynamics_step(preset: str, autoencoder_preset: str, cfg: TrainBenchConfig, device: torch.device):
    """(module, its networks, a batch, samples per batch) of the dynamics stage at ``preset``, on latents
    of the size ``autoencoder_preset`` gives ``cfg.frame_size`` frames."""
    from worldsim.models.autoencoder import AUTOENCODER_PRESETS
    from worldsim.training.dynamics_module import DynamicsConfig, DynamicsModule
    from worldsim.training.optim import OptimConfig

    autoencoder = AUTOENCODER_PRESETS[autoencoder_preset]
    channels, size = autoencoder.latent_channels, cfg.frame_size // autoencoder.downsample_factor
    meta = {
        "latent_channels": channels,
        "latent_size": size,
        "action_space": {"type": "Box", "shape": [2], "low": [-1.0, -1.0], "high": [1.0, 1.0]},
    }
    module = DynamicsModule(
        DynamicsConfig(preset=preset, clip_length=cfg.clip_length, dit=dict(cfg.dit), memory=dict(cfg.memory)),
        OptimConfig(),
        max_steps=1000,
        meta=meta,
    ).to(device)
    B, T = cfg.dynamics_batch, cfg.clip_length
    batch = {
        "latents": torch.randn(B, T, channels, size, size, device=device),
        "actions": torch.rand(B, T, 2, device=device) * 2 - 1,
        "rewards": torch.zeros(B, T, device=device),
        "terminated": torch.zeros(B, T, dtype=torch.bool, device=device),
        "caption": [CAPTIONS[i % len(CAPTIONS)] for i in range(B)],
        "start": torch.zeros(B, dtype=torch.long, device=device),  # each clip's first frame in its episode
    }
    return module, list(module.networks.values()), batch, B


def model_flops_per_batch(module: Any, batch: dict[str, Any]) -> int:
    """Three times the forward pass's FLOPs on ``batch``, attention counted through its math kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        module.training_step(batch, 0)
    return 3 * counter.get_total_flops()


def seconds_per_step(step: Callable[[], None], device: torch.device, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps


def training_step(module: Any, batch: dict[str, Any], precision: str) -> Callable[[], None]:
    """One step as ``worldsim train`` takes it: loss, backward, clipping, AdamW (fused where training fuses it), EMA."""
    from worldsim.training.harness import fuses_adamw
    from worldsim.training.optim import adamw_with_schedule

    optimizer = adamw_with_schedule(module, module.optim, 1000, fused=fuses_adamw(module.device, precision))[
        "optimizer"
    ]
    parameters = [p for p in module.parameters() if p.requires_grad]
    clip = module.optim.grad_clip
    autocast = (
        torch.autocast(module.device.type, torch.bfloat16)
        if precision.startswith("bf16")
        else torch.autocast(module.device.type, torch.float16)
        if precision.startswith("16")
        else contextlib.nullcontext()
    )

    def step() -> None:
        with autocast:
            loss = module.training_step(batch, 0)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if module.ema is not None:
            module.ema.update(module.networks if hasattr(module, "networks") else module.autoencoder)

    return step


def bench_train(cfg: TrainBenchConfig) -> list[dict[str, Any]]:
    """One row per (preset, stage, compiled): samples/s, model FLOPs per sample, FLOPs/s and MFU."""
    import warnings

    from worldsim.training.harness import resolve_precision

    unknown = sorted(set(cfg.stages) - set(STAGES))
    if unknown:
        raise ValueError(f"train.stages {unknown} are unknown: choose from {list(STAGES)}")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = resolve_precision("auto", device.type)
    peak, peak_source = peak_flops(device, precision)
    rows = []
    for preset in cfg.presets:
        presets = model_preset(preset)
        for stage in cfg.stages:
            for compiled in cfg.compile:
                torch.manual_seed(0)
                if stage == "autoencoder":
                    module, networks, batch, samples = autoencoder_step(presets["autoencoder"], cfg, device)
                else:
                    module, networks, batch, samples = dynamics_step(
                        presets["dynamics"], presets["autoencoder"], cfg, device
                    )
                with warnings.catch_warnings():  # self.log outside a Trainer: nothing to log to here
                    warnings.simplefilter("ignore")
                    flops = model_flops_per_batch(module, batch)
                    if compiled:
                        for network in networks:
                            network.compile()
                    seconds = seconds_per_step(training_step(module, batch, precision), device, cfg.steps, cfg.warmup)
                achieved = flops / seconds
                tokens = (
                    samples * cfg.clip_length * module.networks["dit"].cfg.tokens_per_frame
                    if stage == "dynamics"
                    else None
                )
                rows.append(
                    {
                        "preset": preset,
                        "stage": stage,
                        "network": presets[stage],
                        "dit_overrides": dict(cfg.dit) if stage == "dynamics" else {},
                        "memory": dict(cfg.memory) if stage == "dynamics" else {},
                        "parameters_m": round(sum(p.numel() for n in networks for p in n.parameters()) / 1e6, 2),
                        "compiled": compiled,
                        "device": str(device),
                        "precision": precision,
                        "batch": samples,
                        "samples": "frames" if stage == "autoencoder" else f"{cfg.clip_length}-frame clips",
                        "ms_per_step": round(seconds * 1e3, 2),
                        "samples_per_s": round(samples / seconds, 1),
                        "tokens_per_s": round(tokens / seconds) if tokens else None,
                        "gflops_per_sample": round(flops / samples / 1e9, 3),
                        "tflops_per_s": round(achieved / 1e12, 4),
                        "mfu": round(achieved / peak, 4) if peak else None,
                        "peak": peak_source,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    return rows
