"""``worldsim bench``: performance figures printed as JSON (benchmarks, never timed tests).

Suites: ``collect`` (recording frames/s of each ground-truth world with 1 and 2 processes),
``env`` (the learned world as an env: step latency, vector-env throughput beside the real env,
KV-cache step time, memory over a long run; see ``worldsim.bench_env``) and, when named,
``train`` (each model preset's training step: samples/s, model FLOPs, MFU; see
``worldsim.bench_train``).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldsim.bench_env import EnvBenchConfig, bench_env
from worldsim.bench_train import TrainBenchConfig, bench_train
from worldsim.config_checks import check_at_least
from worldsim.data.collect import CollectConfig, collect
from worldsim.envs import WORLDS
from worldsim.sampling import SamplingConfig

SUITES = ("collect", "env", "train")
DEFAULT_SUITES = ("collect", "env")  # train builds every preset asked for: run it by name


@dataclass
class CollectBenchConfig:
    worlds: list[str] = field(default_factory=lambda: list(WORLDS))  # env ids to measure
    workers: list[int] = field(default_factory=lambda: [1, 2])  # collection process counts
    episodes: int = 64  # episodes per measurement
    size: int = 64  # frame height and width in pixels
    policy: str = "random"  # random | scripted | mixed (scripted with random bursts) | module:callable

    def __post_init__(self) -> None:
        check_at_least(self, "collect", workers=1, episodes=1, size=8)


@dataclass
class BenchConfig:
    # collect (frames/s recording each world) | env (world-model env latency, throughput, KV cache, memory) | train
    # (training step of each model preset: samples/s, FLOPs, MFU; only when named)
    suites: list[str] = field(default_factory=lambda: list(DEFAULT_SUITES))
    collect: CollectBenchConfig = field(default_factory=CollectBenchConfig)  # what the collect suite records
    # what the env suite steps (checkpoint=None: tiny, random weights)
    env: EnvBenchConfig = field(default_factory=EnvBenchConfig)
    train: TrainBenchConfig = field(default_factory=TrainBenchConfig)  # what the train suite builds and times
    # how the env suite's model samples (sampling.steps=2 ...); unset fields: the model file's default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    out: str = ""  # also write the JSON report here (empty: print only)


def bench_collect(cfg: CollectBenchConfig) -> list[dict[str, Any]]:
    """End-to-end collection throughput: stepping, rendering, ground truth and writing shards."""
    rows = []
    for env_id in cfg.worlds:
        for workers in cfg.workers:
            with tempfile.TemporaryDirectory(prefix="worldsim-bench-") as root:
                start = time.perf_counter()
                summary = collect(
                    CollectConfig(
                        env=env_id,
                        env_kwargs={"width": cfg.size, "height": cfg.size},
                        policy=cfg.policy,
                        episodes=cfg.episodes,
                        out=str(Path(root) / "data"),
                        workers=workers,
                        progress=False,
                    )
                )
                seconds = time.perf_counter() - start
            rows.append(
                {
                    "env": env_id,
                    "workers": workers,
                    "frames": summary.frames,
                    "seconds": round(seconds, 3),
                    "frames_per_s": round(summary.frames / seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def bench(cfg: BenchConfig) -> dict[str, Any]:
    unknown = [suite for suite in cfg.suites if suite not in SUITES]
    if unknown:
        raise ValueError(f"bench suites {unknown} are unknown: choose from {list(SUITES)}")
    report: dict[str, Any] = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    }
    if "collect" in cfg.suites:
        report["collect"] = bench_collect(cfg.collect)
    if "env" in cfg.suites:
        report["env"] = bench_env(cfg.env, cfg.sampling)
    if "train" in cfg.suites:
        report["train"] = bench_train(cfg.train)
    text = json.dumps(report, indent=2)
    print(text)
    if cfg.out:
        Path(cfg.out).write_text(text + "\n")
    return report
