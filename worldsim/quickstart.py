"""``worldsim quickstart``: the main job on a fresh machine.

Today it records a small dataset of every ground-truth world and draws one frame strip per world;
later stages (train the tiny model, evaluate it, write the report) extend the same command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.dataset import EpisodeDataset
from worldsim.viz import frame_strip, labelled_rows, save_png

WORLDS = ["worldsim/Physics-v0", "worldsim/Push-v0", "worldsim/Occlusion-v0", "worldsim/Orbit-v0"]


@dataclass
class QuickstartConfig:
    out: str = "quickstart"  # folder for the datasets and pictures
    worlds: list[str] = field(default_factory=lambda: list(WORLDS))  # env ids to record
    episodes: int = 16  # episodes per world
    policy: str = "scripted"  # random | scripted | module:callable
    workers: int = 2  # collection processes
    seed: int = 0  # drives every episode seed
    strip_frames: int = 8  # frames per world in the picture
    strip_stride: int = 4  # take every n-th frame of the first episode


def quickstart(cfg: QuickstartConfig) -> Path:
    """Collect every world (each prints its frames/s) and save ``<out>/worlds.png``; returns its path."""
    out = Path(cfg.out)
    rows = []
    for env_id in cfg.worlds:
        name = env_id.split("/")[-1].removesuffix("-v0").lower()
        summary = collect(
            CollectConfig(
                env=env_id,
                policy=cfg.policy,
                episodes=cfg.episodes,
                out=str(out / "data" / name),
                workers=cfg.workers,
                seed=cfg.seed,
            )
        )
        frames = EpisodeDataset(summary.root).episode(0).frames
        rows.append((name, frame_strip(frames, cfg.strip_frames, cfg.strip_stride)))
    picture = save_png(out / "worlds.png", labelled_rows(rows))
    print(f"frame strips: {picture}")
    return picture
