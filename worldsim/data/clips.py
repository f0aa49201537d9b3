"""Fixed-length clips of an episode dataset: frames, cached latents, or both, for every training stage.

A clip of T frames starting at frame s of an episode of L steps holds frames s .. s+T-1 and, per
frame, the transition taken at it (``actions[t]`` leads from frame t to t + 1, with its reward and
termination). Starts run over 0 .. L + 1 - T, so a clip may end on the episode's final frame,
whose transition does not exist: those rows are padding (action 0, reward NaN, not terminated).
The dynamics model reads each frame's *incoming* transition (``actions[t - 1]``), so it never
reads the padding, and it does see terminal frames. Clips of one frame are the autoencoder's
training frames: every frame of every episode, the final one included.

Train and val are split by episode (never a clip of one episode in both) with a seeded
permutation, the same for both stages. Torch datasets only: which clips a step draws is the
training loop's business (``worldsim.training.harness.StepSampler``).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from worldsim.data.dataset import EpisodeDataset
from worldsim.data.latents import LatentCache

TRANSITIONS = ("actions", "rewards", "terminated")


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
    """Clips of ``clip_length`` frames of the given episodes; item k is the k-th (episode, start) pair.

    What an item holds: ``frames`` (T, 3, H, W) uint8 when ``frames``; ``latents`` (T, C, h, w)
    float32 when a ``latents`` cache is given; ``actions`` (T, *A), ``rewards`` (T,) and
    ``terminated`` (T,) when ``transitions``; always ``caption``, ``episode``, ``start`` and
    ``steps`` (transitions that exist: T, or T - 1 when the clip ends on the final frame). Pairs
    are enumerated episode by episode, so a flat index maps to (episode, start) with one binary
    search and the object stays small to pickle into DataLoader workers.
    """

    def __init__(
        self,
        episodes: EpisodeDataset,
        indices: np.ndarray,
        clip_length: int,
        *,
        latents: Optional[LatentCache] = None,
        frames: bool = False,
        transitions: bool = True,
    ) -> None:
        if clip_length < 1:
            raise ValueError(f"clip_length={clip_length}: a clip needs at least 1 frame")
        if latents is None and not frames:
            raise ValueError("a clip dataset serves frames, latents or both: pass frames=True or a latent cache")
        self.episodes, self.latents, self.clip_length = episodes, latents, clip_length
        self.frames, self.transitions = frames, transitions
        frame_counts = episodes.lengths[indices] + 1
        usable = frame_counts >= clip_length
        if not usable.any():
            longest = int(frame_counts.max()) if len(frame_counts) else 0
            raise ValueError(
                f"clip_length={clip_length} needs episodes of at least {clip_length} frames, but the "
                f"longest of these {len(indices)} episodes of {episodes.root} has {longest}: use a "
                "shorter clip_length or collect longer episodes"
            )
        self.indices = np.asarray(indices)[usable]
        self.first_clip = np.concatenate([[0], np.cumsum(frame_counts[usable] - clip_length + 1)])

    def __len__(self) -> int:
        return int(self.first_clip[-1])

    def locate(self, item: int) -> tuple[int, int]:
        """(episode index in the dataset, start frame) of clip ``item``."""
        position = int(np.searchsorted(self.first_clip, item, side="right")) - 1
        return int(self.indices[position]), int(item - self.first_clip[position])

    def __getitem__(self, item: int) -> dict[str, Any]:
        episode, start = self.locate(item)
        T = self.clip_length
        names = [*(TRANSITIONS if self.transitions else ()), *(("frames",) if self.frames else ())]
        clip = self.episodes.clip(episode, start, T, names=names) if names else {}
        out: dict[str, Any] = {
            "caption": self.episodes.caption(episode),
            "episode": episode,
            "start": start,
            "steps": min(T, int(self.episodes.lengths[episode]) - start),
        }
        if self.frames:  # one copy out of the memory map, already in the CHW layout the networks want
            out["frames"] = torch.from_numpy(np.ascontiguousarray(clip["frames"].transpose(0, 3, 1, 2)))
        if self.latents is not None:
            out["latents"] = torch.from_numpy(self.latents.clip(episode, start, T).astype(np.float32))
        if self.transitions:
            out["actions"] = torch.from_numpy(pad_rows(clip["actions"], T, 0))
            out["rewards"] = torch.from_numpy(pad_rows(clip["rewards"], T, np.nan))
            out["terminated"] = torch.from_numpy(pad_rows(clip["terminated"], T, False))
        return out


def pad_rows(rows: np.ndarray, length: int, value: Any) -> np.ndarray:
    """``rows`` (n, ...) extended to ``length`` rows of ``value`` (a copy out of the memory map)."""
    out = np.full((length, *rows.shape[1:]), value, dtype=rows.dtype)
    out[: len(rows)] = rows
    return out


class FixedClipSampler(Sampler[int]):
    """Non-overlapping clips of every episode (starts 0, T, 2T, ...), optionally evenly thinned."""

    def __init__(self, dataset: ClipDataset, limit: Optional[int]) -> None:
        items = []
        for position in range(len(dataset.indices)):
            starts = int(dataset.first_clip[position + 1] - dataset.first_clip[position])
            items.extend(int(dataset.first_clip[position]) + s for s in range(0, starts, dataset.clip_length))
        if limit is not None and limit < len(items):
            items = [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[int]:
        return iter(self.items)
