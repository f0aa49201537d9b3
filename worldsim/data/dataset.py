"""Random access to the episodes of a dataset written by :mod:`worldsim.data.storage`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from worldsim.data.checksums import first_mismatch
from worldsim.data.episode import Episode
from worldsim.data.storage import (
    EPISODES_JSON,
    RECOLLECT_HINT,
    DatasetError,
    check_file_size,
    read_manifest,
    shard_files,
)


class EpisodeDataset:
    """Episodes on disk, read through memory maps that each process opens lazily.

    Opening reads only the manifest, checks every file's size and (``verify=True``, the default)
    its sha256, so corruption is reported before training starts rather than as a crash hours
    in (or never, for actions overwritten by other finite values); a file unchanged since its
    last check is not hashed again. ``verify=False`` skips the sha256 checks: faster on a dataset
    nobody has checked yet, and unsafe. Pickling keeps only the manifest-derived index, so DataLoader workers receive a cheap
    copy and open their own memory maps on first access; all of them share the OS page cache.
    """

    def __init__(self, root: Union[str, Path], verify: bool = True) -> None:
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        shards = self.manifest["shards"]
        self._shard_names = [s["name"] for s in shards]
        # Per episode: shard position, position within the shard, first frame row, first step row.
        lengths = [np.asarray(s["lengths"], dtype=np.int64) for s in shards]
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self._shard_of = (
            np.concatenate([np.full(len(steps), k, np.int64) for k, steps in enumerate(lengths)])
            if lengths
            else self.lengths
        )
        self._frame_row = (
            np.concatenate([np.cumsum(steps + 1) - (steps + 1) for steps in lengths]) if lengths else self.lengths
        )
        self._step_row = np.concatenate([np.cumsum(steps) - steps for steps in lengths]) if lengths else self.lengths
        self._local = np.concatenate([np.arange(len(steps)) for steps in lengths]) if lengths else self.lengths
        planned = self.manifest.get("episodes_planned", len(self.lengths))
        if len(self.lengths) < planned:
            warnings.warn(
                f"{self.root} holds {len(self.lengths)} of {planned} planned episodes: its collection "
                "did not finish; re-run the same `worldsim collect` command to complete it",
                stacklevel=2,
            )
        self._maps: dict[tuple[int, str], np.ndarray] = {}
        self._meta: dict[int, dict[str, Any]] = {}
        self.check_sizes()
        if verify:
            self.verify()

    # -- integrity -------------------------------------------------------------------------------

    def check_sizes(self) -> None:
        """Raise DatasetError naming the first file whose size differs from the manifest."""
        for shard in self.manifest["shards"]:
            for path, info in shard_files(self.root, shard):
                check_file_size(path, info["bytes"])

    def verify(self) -> None:
        """Check sizes and sha256 of every file; raise DatasetError naming the first bad one.

        Files whose stamps are unchanged since an earlier check are not hashed again (see
        :mod:`worldsim.data.checksums`).
        """
        self.check_sizes()
        expected = (
            (path, info["sha256"]) for shard in self.manifest["shards"] for path, info in shard_files(self.root, shard)
        )
        bad = first_mismatch(self.root, expected)
        if bad is not None:
            raise DatasetError(
                f"{bad} has a different sha256 than the manifest records (it changed after it was "
                f"recorded): the shard is corrupt; delete {bad.parent} and {RECOLLECT_HINT}"
            )

    # -- pickling: workers get the index, not the memory maps ------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_maps"] = {}
        state["_meta"] = {}
        return state

    # -- access ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def env_id(self) -> str:
        return self.manifest.get("env_id", "")

    @property
    def arrays(self) -> dict[str, dict[str, Any]]:
        """Per stored array: dtype, row shape and whether it has a row per frame or per step."""
        return self.manifest["arrays"] or {}

    def _array(self, shard: int, name: str) -> np.ndarray:
        key = (shard, name)
        if key not in self._maps:
            record = self.manifest["shards"][shard]
            path = self.root / record["name"] / f"{name}.npy"
            check_file_size(path, record["files"][f"{name}.npy"]["bytes"])
            try:
                self._maps[key] = np.load(path, mmap_mode="r")
            except ValueError as error:
                raise DatasetError(
                    f"{path} is not a readable .npy file ({error}): the shard is "
                    f"corrupt; delete {path.parent} and {RECOLLECT_HINT}"
                ) from None
        return self._maps[key]

    def _episode_meta(self, shard: int) -> dict[str, Any]:
        if shard not in self._meta:
            path = self.root / self._shard_names[shard] / EPISODES_JSON
            check_file_size(path, self.manifest["shards"][shard]["files"][EPISODES_JSON]["bytes"])
            self._meta[shard] = json.loads(path.read_text())
        return self._meta[shard]

    def frame_count(self, index: int) -> int:
        """Frames of episode ``index`` (its steps + 1)."""
        return int(self.lengths[self._check_index(index)]) + 1

    def _check_index(self, index: int) -> int:
        if not -len(self) <= index < len(self):
            raise IndexError(f"episode {index} does not exist: {self.root} has {len(self)} episodes")
        return index % len(self)

    def caption(self, index: int) -> str:
        index = self._check_index(index)
        return self._episode_meta(int(self._shard_of[index]))["captions"][int(self._local[index])]

    def clip(self, index: int, start: int, length: int, names: Optional[list[str]] = None) -> dict[str, np.ndarray]:
        """Frames ``start .. start+length-1`` of episode ``index`` and their per-step rows.

        Per-frame arrays (frames, state.*, segmentation, depth) give ``length`` rows from
        ``start``; per-step arrays (actions, rewards, ...) give the rows of the actions taken at
        those frames, so they end early when the clip includes the episode's last frame (which
        has no action). Returned arrays are read-only views of the memory maps.
        """
        index = self._check_index(index)
        frames_in_episode = int(self.lengths[index]) + 1
        if start < 0 or length < 1 or start + length > frames_in_episode:
            raise IndexError(
                f"clip start={start} length={length} does not fit episode {index}, which has "
                f"{frames_in_episode} frames: need 0 <= start and start + length <= {frames_in_episode}"
            )
        shard = int(self._shard_of[index])
        out = {}
        for name in names if names is not None else list(self.arrays):
            spec = self.arrays[name]
            if spec["rows"] == "frame":
                row = int(self._frame_row[index]) + start
                out[name] = self._array(shard, name)[row : row + length]
            else:
                row = int(self._step_row[index]) + start
                stop = min(start + length, int(self.lengths[index]))
                out[name] = self._array(shard, name)[row : row + max(stop - start, 0)]
        return out

    def episode(self, index: int) -> Episode:
        """Episode ``index`` as an :class:`Episode` of in-memory copies."""
        index = self._check_index(index)
        arrays = {name: np.array(a) for name, a in self.clip(index, 0, int(self.lengths[index]) + 1).items()}
        meta = self._episode_meta(int(self._shard_of[index]))
        local = int(self._local[index])
        return Episode(
            frames=arrays.pop("frames"),
            actions=arrays.pop("actions"),
            rewards=arrays.pop("rewards"),
            terminated=arrays.pop("terminated"),
            truncated=arrays.pop("truncated"),
            segmentation=arrays.pop("segmentation", None),
            depth=arrays.pop("depth", None),
            state={name.removeprefix("state."): a for name, a in arrays.items()},
            caption=meta["captions"][local],
            seed=meta["seeds"][local],
            params=meta["params"][local],
            split=meta["splits"][local],
            env_id=self.env_id,
        )
