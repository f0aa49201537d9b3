"""``worldsim quickstart``: the whole loop on a fresh machine, CPU-sized.

1. record a small dataset of every ground-truth world and draw one frame strip per world;
2. record a larger dataset of one world and train the ``tiny`` model on it (both stages);
3. score the fresh model beside the baselines and the simulator on every suite (``reference=true``
   adds the shipped reference models), write the report.

The training recipe is sized for 2 CPU cores (docs/training.md, "Learning more per CPU minute").
The tiny DiT reads 2x2 latent patches, 16 tokens per frame instead of 64: a step costs a quarter,
so four times as many steps fit. Its noise levels centre on the warm start a rollout samples from,
and nine clips in ten train the rollout case (real context, then frames to predict). With 64
tokens per frame the same minutes left it erasing objects at horizon 1; with 16 it beats
copy-last on its own world. ``train=false`` or ``eval=false`` stop earlier.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from worldsim.config_checks import check_at_least
from worldsim.data.collect import CollectConfig, collect
from worldsim.data.dataset import EpisodeDataset
from worldsim.envs import WORLDS, world_name
from worldsim.viz import frame_strip, labelled_rows, save_png


@dataclass
class QuickstartConfig:
    out: str = "quickstart"  # folder for the datasets, the picture, the training run and the report
    worlds: list[str] = field(default_factory=lambda: list(WORLDS))  # env ids to record and draw
    episodes: int = 16  # episodes per world for the picture
    policy: str = "scripted"  # random | scripted | mixed (scripted with random bursts) | module:callable
    workers: int = 2  # collection processes
    seed: int = 0  # drives every episode seed, the training run and the eval scenarios
    strip_frames: int = 8  # frames per world in the picture
    strip_stride: int = 4  # take every n-th frame of the first episode
    train: bool = True  # train the tiny model (about 10 minutes on 2 CPU cores)
    train_world: str = "worldsim/Physics-v0"  # the world the model learns
    train_episodes: int = 128  # episodes recorded to train on
    ae_steps: int = 600  # autoencoder steps (batch 32)
    dynamics_steps: int = 1200  # dynamics steps (batch 16, 8-frame clips of 16 tokens per frame)
    eval: bool = True  # score the model and the baselines on every suite
    eval_n: int = 16  # scenarios per suite, world and split
    # also score the reference models shipped with worldsim (about 5 more minutes on 2 CPU cores;
    # their figures are in the README, from `worldsim eval predictors=[reference,...]`)
    reference: bool = False

    def __post_init__(self) -> None:
        check_at_least(
            self,
            episodes=1,
            workers=1,
            strip_frames=1,
            strip_stride=1,
            train_episodes=2,
            seed=0,
            ae_steps=1,
            dynamics_steps=1,
            eval_n=1,
        )


#: The objective's settings for a short CPU run (FlowMatchingConfig fields). logit(0.3) = -0.85:
#: noise levels centre on sampling's warm start (worldsim.sampling.WARM_START), the one level a
#: rollout's frames are predicted from; most clips are the rollout case.
QUICKSTART_FLOW = {"logit_mean": -0.85, "logit_std": 0.7, "context_prob": 0.9}


def draw_worlds(cfg: QuickstartConfig, out: Path) -> Path:
    """Collect every world and save one frame strip per world as ``<out>/worlds.png``."""
    rows = []
    for env_id in cfg.worlds:
        name = world_name(env_id)
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


def train_tiny(cfg: QuickstartConfig, out: Path) -> Path:
    """Record ``train_world`` and train the tiny model on it; returns the exported ``model.pt``."""
    from worldsim.training.train import TrainConfig, train

    data = collect(
        CollectConfig(
            env=cfg.train_world,
            policy=cfg.policy,
            episodes=cfg.train_episodes,
            out=str(out / "data" / "train"),
            workers=cfg.workers,
            seed=cfg.seed + 1,
        )
    )
    run = TrainConfig(stage="all", data=data.root, out=str(out / "run"), seed=cfg.seed)
    every = max(1, cfg.dynamics_steps // 2)
    run.trainer = dataclasses.replace(
        run.trainer, max_steps=cfg.dynamics_steps, val_every_n_steps=every, checkpoint_every_n_steps=every
    )
    run.optim = dataclasses.replace(run.optim, lr=1e-3, warmup_steps=min(50, cfg.dynamics_steps))
    run.ae = dataclasses.replace(run.ae, max_steps=cfg.ae_steps, batch_size=32)
    flow = dataclasses.replace(run.dynamics.flow, **QUICKSTART_FLOW)
    run.dynamics = dataclasses.replace(run.dynamics, clip_length=8, dit={"patch_size": 2}, flow=flow)
    run.dynamics_data = dataclasses.replace(run.dynamics_data, batch_size=16)
    return train(run)["dynamics"]


def evaluate_all(cfg: QuickstartConfig, out: Path, checkpoint: Path | None) -> Path:
    """Every suite for the fresh model, the shipped reference models, the baselines and the simulator."""
    from worldsim.evals.run import EvalConfig, evaluate
    from worldsim.references import reference_worlds

    predictors = ["copy_last", "optical_flow", "truth"]
    if cfg.reference and reference_worlds():
        predictors.insert(0, "reference")
    if checkpoint is not None:
        predictors.insert(0, "model")
    return evaluate(
        EvalConfig(
            checkpoint=str(checkpoint) if checkpoint else None,
            predictors=predictors,
            n=cfg.eval_n,
            seed=cfg.seed,
            out=str(out / "eval"),
        )
    )


def quickstart(cfg: QuickstartConfig) -> Path:
    """Run the loop; returns the report (or the picture when ``eval=false``)."""
    start = time.perf_counter()
    out = Path(cfg.out)
    result = draw_worlds(cfg, out)
    checkpoint = train_tiny(cfg, out) if cfg.train else None
    if cfg.eval:
        result = evaluate_all(cfg, out, checkpoint)
    print(f"quickstart finished in {(time.perf_counter() - start) / 60:.1f} min: {result}")
    return result
