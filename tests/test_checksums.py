"""Verification on open: every file checked, each hashed once per run and once per change across runs."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_data_storage import make_episode, write_dataset

from worldsim.data import checksums
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.storage import DatasetError


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the files sha256 reads; starts this test as a fresh process with no results in memory."""
    counts: Counter = Counter()
    real = checksums.sha256_file

    def counting(path: Path) -> str:
        counts[Path(path).name] += 1
        return real(path)

    monkeypatch.setattr(checksums, "sha256_file", counting)
    monkeypatch.setattr(checksums, "_hashed", {})
    return counts


def new_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget this process's results, as a new `worldsim train` process starts without them."""
    monkeypatch.setattr(checksums, "_hashed", {})


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    write_dataset(tmp_path / "data", [make_episode(rng, steps, seed) for seed, steps in enumerate([5, 9, 1, 7])], 2)
    return tmp_path / "data"


def files_of(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("shard-*/*"))


def overwrite_actions_in_place(path: Path) -> None:
    """Other finite actions of the same shape: same size, only the content (and the stamps) change."""
    time.sleep(0.05)  # past the filesystem's timestamp tick, so the stamps really move
    actions = np.load(path)
    with open(path, "r+b") as handle:  # in place: same inode, as `np.save(open(path, "r+b"), ...)` would
        np.save(handle, actions + 0.5)


def test_an_unchanged_dataset_is_hashed_once_per_run_and_then_never(
    dataset: Path, hashed: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = files_of(dataset)
    EpisodeDataset(dataset)
    # New files are not remembered across runs (their stamps may still move within the tick)...
    assert sum(hashed.values()) == len(files) and not (dataset / checksums.VERIFIED_NAME).exists()
    EpisodeDataset(dataset)
    assert sum(hashed.values()) == len(files)  # ...but within a run, each file is hashed once
    monkeypatch.setattr(checksums, "SETTLED_NS", 0)  # as if the dataset were older than the tick
    new_run(monkeypatch)
    EpisodeDataset(dataset)
    assert sum(hashed.values()) == 2 * len(files)
    records = json.loads((dataset / checksums.VERIFIED_NAME).read_text())["files"]
    assert sorted(records) == sorted(str(p.relative_to(dataset)) for p in files)
    new_run(monkeypatch)
    EpisodeDataset(dataset)
    assert sum(hashed.values()) == 2 * len(files)  # the next run reads the record, not the files


@pytest.mark.parametrize("restore_mtime", [False, True], ids=["new-mtime", "mtime-set-back"])
def test_a_file_rewritten_in_place_with_the_same_size_is_hashed_again_and_refused(
    dataset: Path, hashed: Counter, monkeypatch: pytest.MonkeyPatch, restore_mtime: bool
) -> None:
    monkeypatch.setattr(checksums, "SETTLED_NS", 0)
    EpisodeDataset(dataset)
    actions = dataset / "shard-00001" / "actions.npy"
    before = os.stat(actions)
    overwrite_actions_in_place(actions)
    if restore_mtime:  # as `touch -d`, `cp -p` or `rsync -t` would: only ctime still tells
        os.utime(actions, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(actions).st_size == before.st_size
    new_run(monkeypatch)
    with pytest.raises(DatasetError) as error:
        EpisodeDataset(dataset)
    assert hashed["actions.npy"] == 3  # twice on the first run (two shards), then the changed one
    message = str(error.value)
    assert f"{actions} has a different sha256 than the manifest records" in message
    assert f"delete {actions.parent} and re-run the same `worldsim collect` command" in message
    EpisodeDataset(dataset, verify=False)  # the unsafe way round still opens it


def test_a_read_only_dataset_is_verified_every_run_without_error(
    dataset: Path, hashed: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(path: Path, obj: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(checksums, "SETTLED_NS", 0)
    monkeypatch.setattr(checksums, "write_json_atomic", read_only)
    EpisodeDataset(dataset)
    new_run(monkeypatch)
    EpisodeDataset(dataset)
    assert sum(hashed.values()) == 2 * len(files_of(dataset))
    assert not (dataset / checksums.VERIFIED_NAME).exists()


def test_an_unreadable_record_only_costs_a_rehash(
    dataset: Path, hashed: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checksums, "SETTLED_NS", 0)
    (dataset / checksums.VERIFIED_NAME).write_text("{not json")
    EpisodeDataset(dataset)
    assert sum(hashed.values()) == len(files_of(dataset))
    assert json.loads((dataset / checksums.VERIFIED_NAME).read_text())["format"] == checksums.VERIFIED_FORMAT
