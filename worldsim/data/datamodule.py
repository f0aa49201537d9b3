"""Fixed-length training clips from an episode dataset, as a ``LightningDataModule``.

A clip of T frames starting at frame s of an episode of L steps holds frames s .. s+T-1 and the
actions taken at them (actions[t] leads from frames[t] to frames[t+1]), so every frame has its
action: s ranges over 0 .. L-T, which needs L >= T (the episode's last frame only ever appears
as the target of the previous action). Episodes shorter than T are left out.

Train and val are split by episode (never a clip of one episode in both) with a seeded
permutation. Train clips are drawn uniformly over all valid (episode, start) pairs by a sampler
that runs in the main process, seeded by (seed, epoch), so an epoch's clips are the same however
many DataLoader workers load them. Val clips are fixed: consecutive, non-overlapping clips of
each val episode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Optional

import lightning
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from worldsim.data.dataset import EpisodeDataset


@dataclass
class ClipDataConfig:
    root: str = "data/episodes"  # dataset directory written by `worldsim collect`
    clip_length: int = 16  # frames per clip (T); each comes with the action taken at it
    batch_size: int = 8  # clips per batch
    num_workers: int = 0  # DataLoader worker processes (each opens its own memory maps)
    val_fraction: float = 0.1  # share of episodes held out for validation
    split_seed: int = 0  # seeds the train/val episode split
    seed: int = 0  # seeds which train clips each epoch draws
    epoch_clips: int = 1024  # train clips per epoch
    val_clips: Optional[int] = None  # cap on val clips (evenly spread); None: all of them
    verify: bool = True  # check every shard's sha256 when the dataset is opened
    pin_memory: bool = False  # pin batches for faster host-to-GPU copies


def split_episodes(num_episodes: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) episode indices, sorted, disjoint, deterministic in ``seed``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction}: it must be in [0, 1)")
    num_val = int(round(num_episodes * val_fraction))
    if val_fraction > 0 and num_val == 0 and num_episodes > 1:
        num_val = 1  # a requested validation set should never silently vanish
    order = np.random.default_rng(seed).permutation(num_episodes)
    return np.sort(order[num_val:]), np.sort(order[:num_val])


class ClipDataset(Dataset):
    """Clips of ``clip_length`` frames from the given episodes; item k is the k-th valid clip.

    Valid clips are enumerated episode by episode (start 0 .. L-T), so a flat index maps to
    (episode, start) with one binary search and the object stays small to pickle.
    """

    def __init__(self, episodes: EpisodeDataset, indices: np.ndarray, clip_length: int) -> None:
        if clip_length < 1:
            raise ValueError(f"clip_length={clip_length}: a clip needs at least 1 frame")
        self.episodes = episodes
        self.clip_length = clip_length
        lengths = episodes.lengths[indices]
        usable = lengths >= clip_length
        if not usable.any():
            longest = int(lengths.max()) if len(lengths) else 0
            raise ValueError(
                f"clip_length={clip_length} needs episodes of at least {clip_length} steps, but the "
                f"longest of these {len(indices)} episodes of {episodes.root} has {longest}: use a "
                "shorter clip_length or collect longer episodes"
            )
        self.indices = np.asarray(indices)[usable]
        starts_per_episode = lengths[usable] - clip_length + 1
        self.first_clip = np.concatenate([[0], np.cumsum(starts_per_episode)])

    def __len__(self) -> int:
        return int(self.first_clip[-1])

    def locate(self, item: int) -> tuple[int, int]:
        """(episode index in the dataset, start frame) of clip ``item``."""
        position = int(np.searchsorted(self.first_clip, item, side="right")) - 1
        return int(self.indices[position]), int(item - self.first_clip[position])

    def __getitem__(self, item: int) -> dict[str, Any]:
        """frames (T, 3, H, W) uint8, actions (T, *A), rewards (T,), terminated (T,), caption."""
        episode, start = self.locate(item)
        clip = self.episodes.clip(episode, start, self.clip_length,
                                  names=["frames", "actions", "rewards", "terminated", "truncated"])
        # One copy out of the memory map, already in the CHW layout the model wants.
        frames = np.ascontiguousarray(clip["frames"].transpose(0, 3, 1, 2))  # (T, 3, H, W)
        return {
            "frames": torch.from_numpy(frames),
            "actions": torch.from_numpy(np.array(clip["actions"])),
            "rewards": torch.from_numpy(np.array(clip["rewards"])),
            "terminated": torch.from_numpy(np.array(clip["terminated"])),
            "truncated": torch.from_numpy(np.array(clip["truncated"])),
            "caption": self.episodes.caption(episode),
            "episode": episode,
            "start": start,
        }


class RandomClipSampler(Sampler[int]):
    """``num_samples`` clip indices drawn uniformly with replacement, new ones every epoch.

    The draw is seeded by (seed, epoch), where the epoch counts calls to ``__iter__``, or is set
    with :meth:`set_epoch` to reproduce a given epoch after resuming.
    """

    def __init__(self, num_clips: int, num_samples: int, seed: int) -> None:
        if num_samples < 1:
            raise ValueError(f"epoch_clips={num_samples}: an epoch needs at least 1 clip")
        self.num_clips, self.num_samples, self.seed = num_clips, num_samples, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        return iter(rng.integers(0, self.num_clips, size=self.num_samples).tolist())


class ClipDataModule(lightning.LightningDataModule):
    """Train/val clip loaders over one episode dataset, split by episode."""

    def __init__(self, cfg: ClipDataConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.episodes: Optional[EpisodeDataset] = None
        self.train_set: Optional[ClipDataset] = None
        self.val_set: Optional[ClipDataset] = None

    def setup(self, stage: Optional[str] = None) -> None:
        if self.episodes is not None:
            return
        cfg = self.cfg
        self.episodes = EpisodeDataset(cfg.root, verify=cfg.verify)
        train, val = split_episodes(len(self.episodes), cfg.val_fraction, cfg.split_seed)
        if len(train) == 0:
            raise ValueError(f"{cfg.root} has {len(self.episodes)} episodes: too few to train on; "
                             "collect more")
        self.train_set = ClipDataset(self.episodes, train, cfg.clip_length)
        self.val_set = ClipDataset(self.episodes, val, cfg.clip_length) if len(val) else None

    def _loader(self, dataset: Dataset, sampler: Sampler[int]) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.cfg.batch_size, sampler=sampler,
            num_workers=self.cfg.num_workers, pin_memory=self.cfg.pin_memory,
            persistent_workers=self.cfg.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        sampler = RandomClipSampler(len(self.train_set), self.cfg.epoch_clips, self.cfg.seed)
        return self._loader(self.train_set, sampler)

    def val_dataloader(self) -> DataLoader:
        assert self.val_set is not None, (
            f"val_fraction={self.cfg.val_fraction} left no validation episodes of at least "
            f"clip_length={self.cfg.clip_length} steps")
        return self._loader(self.val_set, FixedClipSampler(self.val_set, self.cfg.val_clips))


class FixedClipSampler(Sampler[int]):
    """Non-overlapping clips of every episode (starts 0, T, 2T, ...), optionally evenly thinned."""

    def __init__(self, dataset: ClipDataset, limit: Optional[int]) -> None:
        items = []
        for position, episode in enumerate(dataset.indices):
            starts = int(dataset.first_clip[position + 1] - dataset.first_clip[position])
            items.extend(int(dataset.first_clip[position]) + s
                         for s in range(0, starts, dataset.clip_length))
        if limit is not None and limit < len(items):
            items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)
