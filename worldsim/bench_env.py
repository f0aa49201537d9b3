"""Benchmarks of the learned world as an env (figures, never timed tests).

``bench_env(EnvBenchConfig(), SamplingConfig())`` returns and prints JSON: model-env step latency at batch 1,
throughput (frames/s) of the vector env at several batch sizes beside the real PyBullet env, step
time of the KV cache holding 8 vs 64 past frames (and recomputing the window without a cache), and
KV-cache bytes and process memory over a long stepped run. Without a checkpoint it times the
``tiny`` presets with random weights: speed does not depend on what the weights learned.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from worldsim.config_checks import check_at_least
from worldsim.sampling import SamplingConfig


@dataclass
class EnvBenchConfig:
    checkpoint: Optional[str] = None  # exported model.pt; None: tiny presets with random weights (Push's spaces)
    device: Optional[str] = None  # None: cuda when present
    batch_sizes: list[int] = field(default_factory=lambda: [1, 16, 64, 256])  # vector-env sub-env counts
    observation: str = "rgb"  # rgb (decode every frame) | latent
    seconds: float = 3.0  # minimum time measured per figure
    contexts: list[int] = field(default_factory=lambda: [8, 64])  # KV-cache windows compared
    memory_steps: int = 2000  # steps of the long run that checks memory stays flat
    real_env: str = "worldsim/Push-v0"  # ground-truth env timed beside the model
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default

    def __post_init__(self) -> None:
        check_at_least(self, "env", batch_sizes=1, seconds=1e-3, contexts=1, memory_steps=1, threads=0)


def tiny_model_file(path: Path) -> Path:
    """The tiny presets with random weights (never terminating) as an exported model file for Push-v0's spaces."""
    from worldsim.checkpoint import export_modules
    from worldsim.models.autoencoder import AUTOENCODER_PRESETS, FrameAutoencoder
    from worldsim.models.dit import VideoDiT, VideoDiTConfig
    from worldsim.models.text import TEXT_ENCODER_PRESETS, TextEncoder

    torch.manual_seed(0)
    autoencoder = FrameAutoencoder(AUTOENCODER_PRESETS["tiny"])
    dit = VideoDiT(
        VideoDiTConfig.preset("tiny", latent_channels=autoencoder.config.latent_channels, latent_size=8, action_dim=2)
    )
    with torch.no_grad():  # random heads would end episodes at random, timing resets instead of steps
        dit.heads.termination[-1].bias.fill_(-10.0)
    data = {
        "env_id": "worldsim/Push-v0",
        "env_kwargs": {},
        "frame_shape": [64, 64, 3],
        "observation_space": {"type": "Box", "shape": [64, 64, 3], "dtype": "uint8"},
        "action_space": {"type": "Box", "shape": [2], "dtype": "float32", "low": [-1.0, -1.0], "high": [1.0, 1.0]},
    }
    return export_modules(path, dit, TextEncoder(TEXT_ENCODER_PRESETS["tiny"]), autoencoder, data)


def _timed(step, seconds: float, warmup: int = 2, min_runs: int = 3) -> list[float]:
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def _step_ms_at(step_seconds: list[float], frames: tuple[int, ...], span: int = 16) -> dict[str, float]:
    """Median step time (ms) over the ``span`` steps up to each frame the run reached: whether a step
    costs more as the rollout grows (a memory model's bank fills, a window slides)."""
    return {
        str(frame): round(1e3 * statistics.median(step_seconds[max(0, frame - span) : frame]), 2)
        for frame in sorted(set(frames))
        if frame <= len(step_seconds)
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def bench_env(cfg: EnvBenchConfig, sampling: Optional[SamplingConfig] = None) -> dict[str, Any]:
    """The env suite's figures for ``cfg``'s model, sampled with ``sampling`` over its file's default."""
    import gymnasium

    import worldsim  # noqa: F401  (registers the envs)
    from worldsim.envs.world_model import WorldModelEnv, WorldModelVectorEnv
    from worldsim.world_batch import WorldBatch
    from worldsim.world_model import WorldModel

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tmp = tempfile.TemporaryDirectory(prefix="worldsim-bench-env-")
    checkpoint = Path(cfg.checkpoint) if cfg.checkpoint else tiny_model_file(Path(tmp.name) / "model.pt")
    model = WorldModel.from_checkpoint(checkpoint, cfg.device)
    sampling = SamplingConfig.of(sampling)
    effective = model.sampling_for(sampling)
    report: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": str(model.device),
            "gpu": torch.cuda.get_device_name() if model.device.type == "cuda" else None,
        },
        "model": {
            "checkpoint": str(cfg.checkpoint or "tiny presets, random weights"),
            "dit_parameters": model.dit.num_params(trainable_only=False),
            "window": model.window(effective),
            "sampling": effective.given(),
            "observation": cfg.observation,
        },
    }

    def sync() -> None:
        if model.device.type == "cuda":
            torch.cuda.synchronize()

    env = WorldModelEnv(model, observation=cfg.observation, horizon=10**9, sampling=sampling)
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape, env.action_space.dtype)
    times = _timed(lambda: (env.step(action), sync()), cfg.seconds)
    report["env_step_ms_batch1"] = {
        "median": round(1e3 * statistics.median(times), 2),
        "p90": round(1e3 * sorted(times)[int(0.9 * (len(times) - 1))], 2),
    }
    print(json.dumps({"env_step_ms_batch1": report["env_step_ms_batch1"]}), flush=True)

    throughput = []
    for n in cfg.batch_sizes:
        envs = WorldModelVectorEnv(n, model, observation=cfg.observation, horizon=10**9, sampling=sampling)
        envs.reset(seed=0)
        actions = np.zeros(envs.action_space.shape, envs.action_space.dtype)
        times = _timed(lambda: (envs.step(actions), sync()), cfg.seconds, warmup=1, min_runs=2)
        step = statistics.median(times)
        throughput.append({"batch": n, "step_ms": round(1e3 * step, 2), "frames_per_s": round(n / step, 1)})
        print(json.dumps(throughput[-1]), flush=True)
    report["vector_env"] = throughput

    real = gymnasium.make(cfg.real_env)
    real.reset(seed=0)
    zero = np.zeros(real.action_space.shape, real.action_space.dtype)

    def real_step() -> None:
        if real.step(zero)[3]:
            real.reset()

    times = _timed(real_step, cfg.seconds)
    real.close()
    report["real_env"] = {
        "env": cfg.real_env,
        "frames_per_s": round(1 / statistics.median(times), 1),
        "step_ms": round(1e3 * statistics.median(times), 2),
    }
    print(json.dumps({"real_env": report["real_env"]}), flush=True)

    rng = np.random.default_rng(0)
    zero_action = np.zeros((1, *action.shape), action.dtype)
    cache_rows = []
    for window in cfg.contexts:
        frames = rng.integers(0, 256, (1, window, *model.frame_shape), dtype=np.uint8)
        batch = WorldBatch(model, SamplingConfig(window=window).over(sampling))
        batch.start(frames, None, "a scene", seed=0)
        times = _timed(lambda: (batch.step(zero_action, decode=False), sync()), cfg.seconds)
        latents = torch.zeros(1, window + 1, *model.latent_shape, device=model.device)
        tau = torch.ones(1, window + 1, device=model.device)
        # A memory network also reads, from the clip itself, the frames its bank would hold.
        memory = {"memory_from": latents} if model.dit.remembers else {}
        with torch.inference_mode():  # the same new frame without a cache: every pass re-reads the window
            recompute = _timed(
                lambda: ([model.dit(latents, tau, **memory) for _ in range(effective.steps + 1)], sync()), cfg.seconds
            )
        cache_rows.append(
            {
                "context": window,
                "cached_step_ms": round(1e3 * statistics.median(times), 2),
                "recompute_step_ms": round(1e3 * statistics.median(recompute), 2),
                "cache_mb": round(batch.cache_bytes() / 2**20, 3),
            }
        )
        print(json.dumps(cache_rows[-1]), flush=True)
    report["kv_cache"] = cache_rows

    batch = WorldBatch(model, sampling)
    batch.start(rng.integers(0, 256, (1, 4, *model.frame_shape), dtype=np.uint8), None, "a scene", seed=0)
    samples, step_seconds = [], []
    for i in range(cfg.memory_steps):
        t = time.perf_counter()
        batch.step(zero_action, decode=False)
        sync()
        step_seconds.append(time.perf_counter() - t)
        if i % max(cfg.memory_steps // 10, 1) == 0 or i == cfg.memory_steps - 1:
            sample = {"step": i + 1, "cache_mb": round(batch.cache_bytes() / 2**20, 3), "rss_mb": round(_rss_mb(), 1)}
            if model.device.type == "cuda":
                sample["gpu_allocated_mb"] = round(torch.cuda.memory_allocated(model.device) / 2**20, 1)
            samples.append(sample)
    report["memory"] = {
        "steps": cfg.memory_steps,
        "samples": samples,
        "cache_mb_first_last": [samples[0]["cache_mb"], samples[-1]["cache_mb"]],
        "rss_mb_growth_after_first_10pct": round(samples[-1]["rss_mb"] - samples[1]["rss_mb"], 1)
        if len(samples) > 1
        else 0.0,
        "step_ms_at_frame": _step_ms_at(step_seconds, (16, 600, cfg.memory_steps)),
    }
    tmp.cleanup()
    return report
