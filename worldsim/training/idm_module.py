"""``worldsim train stage=idm``: BlockWorld's inverse-dynamics model on ground-truth frame pairs.

Pairs are every transition of the dataset's training episodes (two-frame clips), labelled with
the effective action the recorded ground truth gives (``effective_actions``); validation reads the
held-out episodes of the same split the other stages use. After training, the exported file's
accuracy per action group is measured on fresh episodes recorded in memory (``heldout_accuracy``:
seeds no collection uses, the ``id`` and ``ood`` splits) and written into its record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import gymnasium
import numpy as np
import torch
from torch.utils.data import Dataset

from worldsim.config_checks import check_at_least, check_within
from worldsim.data.clips import ClipDataset
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.policies import make_policy
from worldsim.data.recorder import EpisodeRecorder
from worldsim.models.inverse_dynamics import (
    STATE_KEYS,
    InverseDynamicsConfig,
    InverseDynamicsModel,
    effective_actions,
    group_accuracy,
    group_hits,
)
from worldsim.training.datamodules import FrameDataModule
from worldsim.training.ema import EMA
from worldsim.training.guards import FiniteLossGuard
from worldsim.training.harness import TrainingModule, counted_step, log_parameter_count
from worldsim.training.optim import OptimConfig, adamw_with_schedule

ENV_ID = "worldsim/BlockWorld-v0"
#: Salt of the held-out seed stream: collection seeds episode i from (seed, i), the evals from their own salt.
HELDOUT_STREAM = 0x1D_0A_CC


@dataclass
class IdmStageConfig:
    batch_size: int = 64  # frame pairs per batch
    max_steps: Optional[int] = None  # steps of the idm stage; None: trainer.max_steps
    num_workers: int = 0  # DataLoader worker processes
    val_fraction: float = 0.1  # share of episodes held out for validation (the other stages' split)
    val_pairs: int = 2048  # held-out pairs per validation, evenly spread over the val episodes
    # fresh episodes per split recorded after training to measure the exported file's accuracy (0: none)
    heldout_episodes: int = 16
    heldout_splits: list[str] = field(default_factory=lambda: ["id", "ood"])  # BlockWorld splits measured
    heldout_policy: str = "sticky"  # the policy of the held-out episodes
    heldout_steps: int = 300  # steps per held-out episode
    model: InverseDynamicsConfig = field(default_factory=InverseDynamicsConfig)  # the network
    # sha256-check every dataset file on setup; false skips it: unsafe, a file changed in place would train silently
    verify: bool = True

    def __post_init__(self) -> None:
        check_at_least(
            self, "idm", batch_size=1, max_steps=1, num_workers=0, val_pairs=1, heldout_episodes=0, heldout_steps=1
        )
        check_within(self, "idm", val_fraction=(0, 0.99))
        bad = [s for s in self.heldout_splits if s not in ("id", "ood")]
        if bad:
            raise ValueError(f"idm.heldout_splits={self.heldout_splits}: use 'id' and/or 'ood'")


class EffectivePairs(Dataset):
    """Two-frame clips of ``episodes`` with the effective action of their transition as ``labels``."""

    def __init__(self, episodes: EpisodeDataset, indices: np.ndarray) -> None:
        if episodes.env_id != ENV_ID:
            raise ValueError(f"{episodes.root} records {episodes.env_id!r}: the IDM reads {ENV_ID} episodes")
        missing = [key for key in STATE_KEYS if f"state.{key}" not in episodes.arrays]
        if missing:
            raise ValueError(f"{episodes.root} lacks state arrays {missing}: record it with this worldsim's collect")
        self.clips = ClipDataset(episodes, indices, 2, frames=True, transitions=False)
        names = [f"state.{key}" for key in STATE_KEYS]
        self.labels = {}
        for episode in self.clips.indices.tolist():
            clip = episodes.clip(episode, 0, episodes.frame_count(episode), names=["frames", *names])
            state = {name.removeprefix("state."): clip[name] for name in names}
            self.labels[episode] = effective_actions(state, clip["frames"])

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int) -> dict[str, Any]:
        clip = self.clips[item]
        clip["labels"] = torch.from_numpy(self.labels[clip["episode"]][clip["start"]])
        return clip


class IdmDataModule(FrameDataModule):
    """The frame stage's data module serving labelled frame pairs (``EffectivePairs``) instead of frames."""

    cfg: IdmStageConfig

    def items(self, episodes: EpisodeDataset, indices: np.ndarray) -> EffectivePairs:
        return EffectivePairs(episodes, indices)

    @property
    def val_count(self) -> int:
        return self.cfg.val_pairs


class IdmModule(TrainingModule):
    """Steps, optimiser, EMA and logging around a plain ``InverseDynamicsModel``."""

    def __init__(self, config: InverseDynamicsConfig, optim: OptimConfig, max_steps: int) -> None:
        super().__init__()
        self.config, self.optim, self.max_steps = config, optim, max_steps
        self.idm = InverseDynamicsModel(config)
        self.ema = EMA(self.idm, optim.ema_decay) if optim.ema_decay > 0 else None
        self.finite_guard = FiniteLossGuard()
        self.flops_per_batch: Optional[int] = None
        self._val: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def inference_model(self) -> InverseDynamicsModel:
        return self.ema.model if self.ema is not None else self.idm

    @property
    def export_parts(self) -> dict[str, str]:
        return {"idm": "ema.model." if self.ema is not None else "idm."}

    def on_fit_start(self) -> None:
        log_parameter_count("idm", self.idm)

    def configure_optimizers(self) -> dict[str, Any]:
        return adamw_with_schedule(self.idm, self.optim, self.max_steps, fused=self.fused_adamw)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        frames = batch["frames"]  # (B, 2, 3, H, W)
        loss, logs = counted_step(self, lambda: self.idm.loss(frames[:, 0], frames[:, 1], batch["labels"]))
        self.finite_guard.watch(loss, self.global_step, logs)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict({f"train/{k}": v for k, v in logs.items()})
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.finite_guard.check()

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)  # the EMA follows right after, as in the other stages
        if self.ema is not None:
            self.ema.update(self.idm)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        frames = batch["frames"]
        logits = self.inference_model(frames[:, 0], frames[:, 1])
        read = torch.stack([lg.argmax(1) for lg in logits], dim=1)
        self._val.append((read.cpu().numpy(), batch["labels"].cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        read, labels = (np.concatenate(parts) for parts in zip(*self._val))
        self._val = []
        for group, accuracy in group_accuracy(read, labels).items():
            self.log(f"val/{group}_accuracy", accuracy if np.isfinite(accuracy) else 0.0, prog_bar=group == "camera")


def heldout_seed(seed: int, index: int) -> int:
    """The reset seed of held-out episode ``index``: a stream training collection and evals never use."""
    return int(np.random.SeedSequence([HELDOUT_STREAM, seed, index]).generate_state(1)[0])


def heldout_transitions(
    split: str, episodes: int, steps: int, policy: str = "sticky", seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames before (N, H, W, 3), after, and effective actions (N, len(COMPONENTS)) of fresh episodes."""
    env = gymnasium.make(ENV_ID, split=split).unwrapped
    recorder = EpisodeRecorder(
        env, make_policy(policy, env), frame_size=None, max_steps=steps, record_images=False, env_id=ENV_ID
    )
    before, after, labels = [], [], []
    try:
        for index in range(episodes):
            episode = recorder.record(heldout_seed(seed, index))
            before.append(episode.frames[:-1])
            after.append(episode.frames[1:])
            labels.append(effective_actions(episode.state, episode.frames))
    finally:
        env.close()
    return np.concatenate(before), np.concatenate(after), np.concatenate(labels)


def heldout_accuracy(model: InverseDynamicsModel, cfg: IdmStageConfig, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per split: per-group accuracy, with the transitions each group was scored on, on fresh episodes."""
    results = {}
    for split in cfg.heldout_splits:
        before, after, labels = heldout_transitions(
            split, cfg.heldout_episodes, cfg.heldout_steps, cfg.heldout_policy, seed
        )
        read = model.read(before, after)
        hits = group_hits(read, labels)
        results[split] = {
            **group_accuracy(read, labels),
            **{f"{group}_n": int(np.sum(~np.isnan(h))) for group, h in hits.items()},
            "transitions": len(labels),
        }
    return results
