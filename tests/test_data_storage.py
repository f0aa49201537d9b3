"""Storage format: round trip, integrity errors, schema versions, atomic commit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from worldsim.data.dataset import EpisodeDataset
from worldsim.data.episode import Episode
from worldsim.data.storage import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    DatasetError,
    add_shard,
    new_manifest,
    write_manifest,
    write_shard,
)


def make_episode(rng: np.random.Generator, steps: int, seed: int, images: bool = True) -> Episode:
    return Episode(
        frames=rng.integers(0, 256, (steps + 1, 12, 10, 3), dtype=np.uint8),
        actions=rng.normal(size=(steps, 2)).astype(np.float32),
        rewards=rng.normal(size=steps).astype(np.float32),
        terminated=np.arange(steps) == steps - 1,
        truncated=np.zeros(steps, bool),
        caption=f"a red ball number {seed}",
        state={
            "object_position": rng.normal(size=(steps + 1, 3, 3)).astype(np.float32),
            "object_visible": rng.random((steps + 1, 3)) > 0.5,
            "camera_view": rng.normal(size=(steps + 1, 4, 4)).astype(np.float32),
        },
        segmentation=rng.integers(-1, 4, (steps + 1, 12, 10)).astype(np.int16) if images else None,
        depth=rng.random((steps + 1, 12, 10)).astype(np.float16) if images else None,
        seed=seed,
        params={"mass": 1.5 + seed, "shape": "sphere"},
        split="ood" if seed % 2 else "id",
    )


def write_dataset(root: Path, episodes: list[Episode], per_shard: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    manifest = new_manifest({"env_id": "test/Fake-v0", "episodes_planned": len(episodes)})
    for index, first in enumerate(range(0, len(episodes), per_shard)):
        add_shard(manifest, write_shard(root, index, first, episodes[first : first + per_shard]))
        write_manifest(root, manifest)


@pytest.fixture
def episodes() -> list[Episode]:
    rng = np.random.default_rng(0)
    return [make_episode(rng, steps, seed) for seed, steps in enumerate([5, 9, 1, 7, 4])]


def test_round_trip_returns_identical_arrays(tmp_path: Path, episodes: list[Episode]) -> None:
    write_dataset(tmp_path, episodes, per_shard=2)
    dataset = EpisodeDataset(tmp_path)
    assert len(dataset) == 5
    assert dataset.lengths.tolist() == [5, 9, 1, 7, 4]
    assert sorted(p.name for p in tmp_path.iterdir()) == [MANIFEST_NAME, "shard-00000", "shard-00001", "shard-00002"]
    for index, written in enumerate(episodes):
        read = dataset.episode(index)
        for name in ("frames", "actions", "rewards", "terminated", "truncated", "segmentation", "depth"):
            assert getattr(read, name).dtype == getattr(written, name).dtype, name
            np.testing.assert_array_equal(getattr(read, name), getattr(written, name), err_msg=name)
        assert read.state.keys() == written.state.keys()
        for key in written.state:
            assert read.state[key].dtype == written.state[key].dtype
            np.testing.assert_array_equal(read.state[key], written.state[key])
        assert (read.caption, read.seed, read.params, read.split) == (
            written.caption,
            written.seed,
            written.params,
            written.split,
        )
        assert read.env_id == "test/Fake-v0"


def test_clip_is_a_window_of_the_episode(tmp_path: Path, episodes: list[Episode]) -> None:
    write_dataset(tmp_path, episodes, per_shard=2)
    dataset = EpisodeDataset(tmp_path)
    clip = dataset.clip(3, 2, 4)  # episode of 7 steps: frames 2..5 and the actions taken there
    np.testing.assert_array_equal(clip["frames"], episodes[3].frames[2:6])
    np.testing.assert_array_equal(clip["actions"], episodes[3].actions[2:6])
    np.testing.assert_array_equal(clip["state.object_position"], episodes[3].state["object_position"][2:6])
    last = dataset.clip(3, 5, 3)  # includes the final frame, which has no action
    assert len(last["frames"]) == 3 and len(last["actions"]) == 2
    with pytest.raises(IndexError, match="start=6 length=3 does not fit episode 3, which has 8 frames"):
        dataset.clip(3, 6, 3)


def test_dataset_pickles_without_memory_maps(tmp_path: Path, episodes: list[Episode]) -> None:
    import pickle

    write_dataset(tmp_path, episodes, per_shard=2)
    dataset = EpisodeDataset(tmp_path)
    dataset.episode(0)  # opens memory maps
    copy = pickle.loads(pickle.dumps(dataset))
    assert copy._maps == {}
    assert len(pickle.dumps(dataset)) < 20_000
    np.testing.assert_array_equal(copy.episode(4).frames, episodes[4].frames)


def test_truncated_shard_names_the_file_and_the_fix(tmp_path: Path, episodes: list[Episode]) -> None:
    write_dataset(tmp_path, episodes, per_shard=2)
    frames = tmp_path / "shard-00001" / "frames.npy"
    size = frames.stat().st_size
    with open(frames, "r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(DatasetError) as error:
        EpisodeDataset(tmp_path, verify=False)
    message = str(error.value)
    assert str(frames) in message
    assert f"is {size - 100} bytes but the manifest says {size}" in message
    assert "delete" in message and "worldsim collect" in message


def test_flipped_bytes_fail_verification(tmp_path: Path, episodes: list[Episode]) -> None:
    write_dataset(tmp_path, episodes, per_shard=2)
    actions = tmp_path / "shard-00002" / "actions.npy"
    data = bytearray(actions.read_bytes())
    data[-3] ^= 0xFF
    actions.write_bytes(bytes(data))
    EpisodeDataset(tmp_path, verify=False)  # same size: only the checksum can tell
    with pytest.raises(DatasetError, match=rf"{actions}.*sha256.*corrupt; delete .*worldsim collect"):
        EpisodeDataset(tmp_path)


def test_missing_shard_file_is_reported(tmp_path: Path, episodes: list[Episode]) -> None:
    write_dataset(tmp_path, episodes, per_shard=2)
    (tmp_path / "shard-00000" / "state.object_visible.npy").unlink()
    with pytest.raises(DatasetError, match=r"state.object_visible.npy is missing"):
        EpisodeDataset(tmp_path)


@pytest.mark.parametrize(
    "version, fix", [(SCHEMA_VERSION + 1, "upgrade worldsim"), (SCHEMA_VERSION - 1, "re-record it")]
)
def test_other_schema_version_is_refused(tmp_path: Path, episodes: list[Episode], version: int, fix: str) -> None:
    write_dataset(tmp_path, episodes[:2], per_shard=2)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    manifest["schema_version"] = version
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(
        DatasetError,
        match=rf"schema version {version}; this worldsim reads schema "
        rf"version {SCHEMA_VERSION}: {fix}",
    ):
        EpisodeDataset(tmp_path)


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="manifest.json does not exist"):
        EpisodeDataset(tmp_path)


def test_uncommitted_shard_is_invisible(tmp_path: Path, episodes: list[Episode]) -> None:
    """A shard written but not yet in the manifest (writer killed in between) is not read."""
    write_dataset(tmp_path, episodes[:2], per_shard=2)
    write_shard(tmp_path, 1, 2, episodes[2:4])
    assert len(EpisodeDataset(tmp_path)) == 2


def test_inconsistent_episode_layout_is_refused(tmp_path: Path, episodes: list[Episode]) -> None:
    episodes[1].state["object_position"] = episodes[1].state["object_position"][:, :2]
    with pytest.raises(ValueError, match=r"state.object_position of the episode with seed 1 .* same"):
        write_shard(tmp_path, 0, 0, episodes[:2])
    assert list(tmp_path.iterdir()) == []  # no shard, and no temp folder left behind


def test_episode_validation_names_the_array() -> None:
    episode = make_episode(np.random.default_rng(1), 4, 0)
    episode.rewards = episode.rewards[:3]
    with pytest.raises(ValueError, match="rewards has 3 rows but actions have 4"):
        episode.validate()
