"""The two training stages' data as LightningDataModules: stage 1's frames, stage 2's latent clips.

Both read ``worldsim.data.clips.ClipDataset`` and split train/val by episode with the same
``split_episodes`` and seed, so the autoencoder never trains on the episodes the dynamics model is
validated on. Training batches follow from (seed, global step, rank) alone (``StepSampler``), so a
resumed run draws exactly the batches the interrupted one would have.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from worldsim.config_checks import check_at_least, check_within
from worldsim.data.clips import ClipDataset, FixedClipSampler, split_episodes
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.latents import LatentCache, LatentCacheError
from worldsim.training.autoencoder_module import AutoencoderStageConfig
from worldsim.training.harness import StepDataLoader, StepSampler

log = logging.getLogger(__name__)


class FrameDataModule(lightning.LightningDataModule):
    """Train frames drawn per global step (exactly resumable); fixed, evenly spread val frames.

    Subclasses serve other items of the same episodes by overriding ``items`` and ``val_count``
    (the IDM stage's labelled frame pairs).
    """

    def __init__(self, root: str, cfg: AutoencoderStageConfig, seed: int, split_seed: int = 0) -> None:
        super().__init__()
        self.root, self.cfg, self.seed, self.split_seed = root, cfg, seed, split_seed
        self.train_set: Optional[Dataset] = None
        self.val_set: Optional[Dataset] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return
        episodes = EpisodeDataset(self.root, verify=self.cfg.verify)
        train, val = split_episodes(len(episodes), self.cfg.val_fraction, self.split_seed)
        if len(train) == 0:
            raise ValueError(f"{self.root} has {len(episodes)} episodes: too few to train on; collect more")
        self.train_set = self.items(episodes, train)
        # Without held-out episodes, validate on training frames rather than not at all.
        self.val_set = self.items(episodes, val if len(val) else train)

    def items(self, episodes: EpisodeDataset, indices: np.ndarray) -> Dataset:
        """What the stage trains on from the given episodes: their single frames."""
        return ClipDataset(episodes, indices, 1, frames=True, transitions=False)

    @property
    def val_count(self) -> int:
        return self.cfg.val_frames

    def _global_step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        rank = self.trainer.global_rank if self.trainer is not None else 0
        sampler = StepSampler(len(self.train_set), self.cfg.batch_size, self.seed, self._global_step, rank)
        return StepDataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, "call setup() first"
        count = min(self.val_count, len(self.val_set))
        items = np.linspace(0, len(self.val_set) - 1, count).round().astype(int).tolist()
        return DataLoader(self.val_set, batch_size=self.cfg.batch_size, sampler=items, num_workers=self.cfg.num_workers)

    def statistics_frames(self, count: int) -> torch.Tensor:
        """``count`` training frames (uint8 (count, 3, H, W)), the same ones for a given seed."""
        assert self.train_set is not None, "call setup() first"
        rng = np.random.default_rng([self.seed, 1])
        picks = rng.choice(len(self.train_set), size=min(count, len(self.train_set)), replace=False)
        return torch.stack([self.train_set[int(i)]["frames"][0] for i in np.sort(picks)])


@dataclass
class LatentClipDataConfig:
    root: str = "data/episodes"  # episode dataset directory written by `worldsim collect`
    latents: Optional[str] = None  # latent cache directory returned by cache_latents (required)
    clip_length: int = 16  # frames per training clip (T)
    batch_size: int = 16  # clips per batch
    num_workers: int = 0  # DataLoader worker processes (each opens its own memory maps)
    val_fraction: float = 0.1  # share of episodes held out; the autoencoder stage holds out the same ones
    split_seed: int = 0  # seeds the train/val episode split (keep it equal to the AE stage's)
    seed: int = 0  # seeds which train clips each epoch draws
    # share of train clips drawn from their episode's first frame, the frames a caption describes
    # (a 16-frame clip of a 65-frame Physics episode starts there 1 time in 50 otherwise)
    start_prob: float = 0.0
    val_clips: Optional[int] = 64  # cap on val clips for the flow loss (evenly spread); None: all
    rollout_clips: int = 4  # fixed val clips rolled out at validation (second val loader); 0: none
    rollout_length: int = 20  # frames per rollout clip: context + longest horizon (cut to what val episodes hold)
    # sha256-check every dataset and latent-cache file on setup (files unchanged since their last check are not
    # hashed again); false skips it: unsafe, a file changed in place would train silently
    verify: bool = True
    pin_memory: Optional[bool] = None  # pin batches for asynchronous host-to-GPU copies; None: when CUDA is present

    def __post_init__(self) -> None:
        check_at_least(
            self,
            "dynamics_data",
            clip_length=2,
            batch_size=1,
            num_workers=0,
            val_clips=1,
            rollout_clips=0,
            rollout_length=2,
            split_seed=0,
            seed=0,
        )
        check_within(self, "dynamics_data", val_fraction=(0, 0.99), start_prob=(0, 1))


class LatentClipDataModule(lightning.LightningDataModule):
    """Stage 2's train/val clips of cached latents, split by episode as stage 1 splits its frames.

    ``val_dataloader`` returns two loaders: [0] flow-loss clips of ``clip_length``, [1] a few fixed
    ``rollout_length`` clips with frames for rollout metrics (left out when ``rollout_clips=0``).
    """

    def __init__(self, cfg: LatentClipDataConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.episodes: Optional[EpisodeDataset] = None
        self.cache: Optional[LatentCache] = None
        self.train_set: Optional[ClipDataset] = None
        self.val_set: Optional[ClipDataset] = None
        self.rollout_set: Optional[ClipDataset] = None

    @property
    def pin_memory(self) -> bool:
        """Pinned by default on CUDA: copying a pageable batch to the GPU first waits for the GPU to
        finish all queued work, which would stall every training step once per batch."""
        return self.cfg.pin_memory if self.cfg.pin_memory is not None else torch.cuda.is_available()

    def setup(self, stage: Optional[str] = None) -> None:
        if self.episodes is not None:
            return
        cfg = self.cfg
        if not cfg.latents:
            raise ValueError(
                "LatentClipDataConfig.latents is not set: pass the directory returned by "
                f"cache_latents({cfg.root!r}, autoencoder)"
            )
        self.episodes = EpisodeDataset(cfg.root, verify=cfg.verify)
        self.cache = LatentCache(cfg.latents, verify=cfg.verify)
        self.cache.check_source(cfg.root)
        if len(self.cache) != len(self.episodes) or not np.array_equal(self.cache.lengths, self.episodes.lengths):
            raise LatentCacheError(
                f"{cfg.latents} indexes other episodes than {cfg.root}: run cache_latents again to rebuild it"
            )
        train, val = split_episodes(len(self.episodes), cfg.val_fraction, cfg.split_seed)
        if len(train) == 0:
            raise ValueError(f"{cfg.root} has {len(self.episodes)} episodes: too few to train on; collect more")
        self.train_set = ClipDataset(self.episodes, train, cfg.clip_length, latents=self.cache)
        if len(val):
            self.val_set = ClipDataset(self.episodes, val, cfg.clip_length, latents=self.cache)
            if cfg.rollout_clips > 0:
                longest = int(self.episodes.lengths[val].max()) + 1
                length = min(cfg.rollout_length, longest)
                if length < cfg.rollout_length:
                    log.warning(
                        "rollout clips cut to %d frames: the longest validation episode of %s "
                        "has %d (rollout_length=%d)",
                        length,
                        cfg.root,
                        longest,
                        cfg.rollout_length,
                    )
                self.rollout_set = ClipDataset(self.episodes, val, length, latents=self.cache, frames=True)

    @property
    def meta(self) -> dict[str, Any]:
        """Data facts for ``DynamicsModule(meta=...)``; needs ``setup()`` first."""
        assert self.cache is not None, "call setup() first"
        return self.cache.meta()

    def _loader(self, dataset: Dataset, sampler, batch_size: int) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        # Each global step's clips follow from (seed, step, rank) alone, so a resumed run draws
        # exactly the batches the interrupted one would have, and each rank draws its own.
        trainer = self.trainer
        sampler = StepSampler(
            len(self.train_set),
            self.cfg.batch_size,
            self.cfg.seed,
            start_step=lambda: trainer.global_step if trainer is not None else 0,
            rank=trainer.global_rank if trainer is not None else 0,
            favoured=self.train_set.first_clip[:-1],
            favoured_prob=self.cfg.start_prob,
        )
        return StepDataLoader(
            self.train_set,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            num_workers=self.cfg.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def val_dataloader(self) -> list[DataLoader]:
        assert self.val_set is not None, (
            f"val_fraction={self.cfg.val_fraction} left no validation episodes of at least "
            f"clip_length={self.cfg.clip_length} frames"
        )
        loaders = [self._loader(self.val_set, FixedClipSampler(self.val_set, self.cfg.val_clips), self.cfg.batch_size)]
        if self.rollout_set is not None:
            sampler = FixedClipSampler(self.rollout_set, self.cfg.rollout_clips)
            loaders.append(self._loader(self.rollout_set, sampler, self.cfg.rollout_clips))
        return loaders
