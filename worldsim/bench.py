"""``worldsim bench``: performance figures printed as JSON (benchmarks, never timed tests)."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldsim.data.collect import CollectConfig, collect
from worldsim.quickstart import WORLDS


@dataclass
class BenchConfig:
    worlds: list[str] = field(default_factory=lambda: list(WORLDS))  # env ids to measure
    workers: list[int] = field(default_factory=lambda: [1, 2])  # collection process counts
    episodes: int = 64  # episodes per measurement
    size: int = 64  # frame height and width in pixels
    policy: str = "random"  # random | scripted | module:callable
    out: str = ""  # also write the JSON here (empty: print only)


def bench_collect(cfg: BenchConfig) -> list[dict[str, Any]]:
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
    report = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "python": platform.python_version(),
        },
        "collect": bench_collect(cfg),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if cfg.out:
        Path(cfg.out).write_text(text + "\n")
    return report
