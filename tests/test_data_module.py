"""Clip DataModule: shapes, dtypes, alignment, the episode split, workers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.datamodule import ClipDataConfig, ClipDataModule, split_episodes
from worldsim.data.dataset import EpisodeDataset


@pytest.fixture(scope="module")
def cartpole_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cartpole") / "data"
    collect(CollectConfig(env="CartPole-v1", episodes=20, shard_episodes=5, out=str(root),
                          size=[24, 32], progress=False))
    return root


def test_clips_have_the_documented_shapes_and_align(cartpole_root: Path) -> None:
    module = ClipDataModule(ClipDataConfig(root=str(cartpole_root), clip_length=6, batch_size=4,
                                           epoch_clips=12, val_fraction=0.2))
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))
    assert batch["frames"].shape == (4, 6, 3, 24, 32) and batch["frames"].dtype == torch.uint8
    assert batch["actions"].shape == (4, 6) and batch["actions"].dtype == torch.int64
    assert batch["rewards"].shape == (4, 6) and batch["rewards"].dtype == torch.float32
    assert batch["terminated"].dtype == torch.bool and len(batch["caption"]) == 4
    episodes = EpisodeDataset(cartpole_root)
    for k in range(4):
        episode = episodes.episode(int(batch["episode"][k]))
        start = int(batch["start"][k])
        assert 0 <= start <= episode.length - 6  # every frame of the clip has its action
        expected = torch.from_numpy(episode.frames[start:start + 6]).permute(0, 3, 1, 2)
        assert torch.equal(batch["frames"][k], expected)
        assert batch["actions"][k].tolist() == episode.actions[start:start + 6].tolist()


def test_split_is_disjoint_deterministic_and_covers_everything() -> None:
    train, val = split_episodes(50, 0.2, seed=3)
    assert len(val) == 10 and len(train) == 40
    assert not set(train) & set(val) and sorted({*train, *val}) == list(range(50))
    again_train, again_val = split_episodes(50, 0.2, seed=3)
    assert np.array_equal(train, again_train) and np.array_equal(val, again_val)
    assert not np.array_equal(val, split_episodes(50, 0.2, seed=4)[1])
    assert len(split_episodes(3, 0.1, seed=0)[1]) == 1  # a requested val set never vanishes


def test_loaders_draw_only_from_their_split(cartpole_root: Path) -> None:
    module = ClipDataModule(ClipDataConfig(root=str(cartpole_root), clip_length=4, batch_size=16,
                                           epoch_clips=64, val_fraction=0.25, split_seed=1))
    module.setup("fit")
    train_episodes = {int(e) for b in module.train_dataloader() for e in b["episode"]}
    val_episodes = {int(e) for b in module.val_dataloader() for e in b["episode"]}
    assert train_episodes and val_episodes and not train_episodes & val_episodes
    assert val_episodes <= set(module.val_set.indices.tolist())


def test_epochs_differ_but_reproduce_from_the_seed(cartpole_root: Path) -> None:
    def epochs(seed: int) -> list[list[tuple[int, int]]]:
        module = ClipDataModule(ClipDataConfig(root=str(cartpole_root), clip_length=4, seed=seed,
                                               batch_size=8, epoch_clips=16, verify=False))
        module.setup("fit")
        loader = module.train_dataloader()
        return [[(int(e), int(s)) for b in loader for e, s in zip(b["episode"], b["start"])]
                for _ in range(2)]

    first = epochs(seed=7)
    assert first[0] != first[1] and first == epochs(seed=7) and first != epochs(seed=8)


def test_two_workers_give_the_same_batches_as_none(cartpole_root: Path) -> None:
    def batches(workers: int) -> list[dict]:
        module = ClipDataModule(ClipDataConfig(root=str(cartpole_root), clip_length=5, batch_size=4,
                                               epoch_clips=16, num_workers=workers))
        module.setup("fit")
        return list(module.train_dataloader())

    serial, parallel = batches(0), batches(2)
    assert len(serial) == len(parallel) == 4
    for a, b in zip(serial, parallel):
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["actions"], b["actions"])


def test_clip_longer_than_every_episode_is_a_clear_error(cartpole_root: Path) -> None:
    longest = int(EpisodeDataset(cartpole_root).lengths.max())
    module = ClipDataModule(ClipDataConfig(root=str(cartpole_root), clip_length=longest + 1,
                                           val_fraction=0.0))
    with pytest.raises(ValueError, match=rf"clip_length={longest + 1} needs episodes of at least "
                                         rf"{longest + 1} steps, but the longest .* has {longest}"):
        module.setup("fit")
