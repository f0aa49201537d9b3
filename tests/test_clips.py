"""ClipDataset: frames and transitions aligned, padding at the final frame, one-frame clips, the split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from worldsim.data.clips import ClipDataset, FixedClipSampler, split_episodes
from worldsim.data.collect import CollectConfig, collect
from worldsim.data.dataset import EpisodeDataset


@pytest.fixture(scope="module")
def cartpole_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cartpole") / "data"
    collect(
        CollectConfig(env="CartPole-v1", episodes=20, shard_episodes=5, out=str(root), size=[24, 32], progress=False)
    )
    return root


def test_frame_clips_have_the_documented_shapes_and_align(cartpole_root: Path) -> None:
    episodes = EpisodeDataset(cartpole_root)
    clips = ClipDataset(episodes, np.arange(len(episodes)), 6, frames=True)
    batch = next(iter(DataLoader(clips, batch_size=4, sampler=[0, 7, 30, len(clips) - 1])))
    assert batch["frames"].shape == (4, 6, 3, 24, 32) and batch["frames"].dtype == torch.uint8
    assert batch["actions"].shape == (4, 6) and batch["actions"].dtype == torch.int64
    assert batch["rewards"].shape == (4, 6) and batch["rewards"].dtype == torch.float32
    assert batch["terminated"].dtype == torch.bool and len(batch["caption"]) == 4 and "latents" not in batch
    for k in range(4):
        episode = episodes.episode(int(batch["episode"][k]))
        start, steps = int(batch["start"][k]), int(batch["steps"][k])
        assert 0 <= start <= episode.length + 1 - 6 and steps == min(6, episode.length - start)
        expected = torch.from_numpy(episode.frames[start : start + 6]).permute(0, 3, 1, 2)
        assert torch.equal(batch["frames"][k], expected)
        assert batch["actions"][k, :steps].tolist() == episode.actions[start : start + steps].tolist()
        # A clip ending on the final frame has no transition out of it: padding the model never reads.
        assert torch.isnan(batch["rewards"][k, steps:]).all() and not batch["terminated"][k, steps:].any()
    assert int(batch["steps"][3]) == 5  # the last clip ends on the last episode's final frame


def test_one_frame_clips_are_every_frame_once(cartpole_root: Path) -> None:
    episodes = EpisodeDataset(cartpole_root)
    picked = np.array([2, 5])
    frames = ClipDataset(episodes, picked, 1, frames=True, transitions=False)
    assert len(frames) == int((episodes.lengths[picked] + 1).sum())  # the final frames included
    first = frames[0]
    assert sorted(first) == ["caption", "episode", "frames", "start", "steps"]
    last = frames[len(frames) - 1]
    assert (last["episode"], last["start"]) == (5, int(episodes.lengths[5]))
    assert np.array_equal(last["frames"][0].permute(1, 2, 0).numpy(), episodes.episode(5).frames[-1])


def test_split_is_disjoint_deterministic_and_covers_everything() -> None:
    train, val = split_episodes(50, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert not set(train) & set(val) and sorted({*train, *val}) == list(range(50))
    again_train, again_val = split_episodes(50, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_episodes(50, 0.2, seed=4)[1])
    assert len(split_episodes(3, 0.1, seed=0)[1]) == 1  # a requested val set never vanishes


def test_fixed_clips_do_not_overlap_and_thin_evenly(cartpole_root: Path) -> None:
    episodes = EpisodeDataset(cartpole_root)
    clips = ClipDataset(episodes, np.array([0, 1]), 4, frames=True)
    every = list(FixedClipSampler(clips, None))
    located = [clips.locate(i) for i in every]
    for episode in (0, 1):
        starts = [start for e, start in located if e == episode]
        assert starts == list(range(0, int(episodes.lengths[episode]) - 2, 4))
    thinned = list(FixedClipSampler(clips, 3))
    assert len(thinned) == 3 and thinned[0] == every[0] and thinned[-1] == every[-1]


def test_two_workers_give_the_same_batches_as_none(cartpole_root: Path) -> None:
    episodes = EpisodeDataset(cartpole_root)
    clips = ClipDataset(episodes, np.arange(len(episodes)), 5, frames=True)
    order = np.random.default_rng(0).integers(0, len(clips), 16).tolist()
    serial, parallel = (list(DataLoader(clips, batch_size=4, sampler=order, num_workers=w)) for w in (0, 2))
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["actions"], b["actions"])


def test_clip_longer_than_every_episode_is_a_clear_error(cartpole_root: Path) -> None:
    episodes = EpisodeDataset(cartpole_root)
    frames = int(episodes.lengths.max()) + 1
    with pytest.raises(
        ValueError,
        match=rf"clip_length={frames + 1} needs episodes of at least "
        rf"{frames + 1} frames, but the longest .* has {frames}",
    ):
        ClipDataset(episodes, np.arange(len(episodes)), frames + 1, frames=True)
    with pytest.raises(ValueError, match="serves frames, latents or both"):
        ClipDataset(episodes, np.arange(len(episodes)), 2)
