"""How long a collection on a full disk takes to fail, and what it leaves behind.

Records 128 Physics episodes with two workers whose every shard write fails with ENOSPC after
4 KiB (the workers' policy replaces the shard writer in its own process: no small filesystem
needed), then prints the seconds to the error, the error, and the folder's contents.
docs/trust.md quotes its figures.

    python benchmarks/collect_full_disk.py
"""

from __future__ import annotations

import errno
import shutil
import sys
import tempfile
import time
from pathlib import Path

import gymnasium
import numpy as np

import worldsim.data.storage as storage


def _write_until_full(path: Path, parts: object) -> None:
    with open(path, "wb") as f:
        f.write(b"\0" * 4096)
    raise OSError(errno.ENOSPC, "No space left on device")


class FullDisk:
    """A uniform random policy that makes its process's shard writes fail as on a full disk."""

    def __init__(self, action_space: gymnasium.Space) -> None:
        self.action_space = action_space
        storage._write_npy = _write_until_full

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, observation: np.ndarray, info: dict) -> np.ndarray:
        return self.rng.uniform(-1, 1, self.action_space.shape).astype(np.float32)


def main() -> None:
    from worldsim.data.collect import CollectConfig, collect

    out = Path(tempfile.mkdtemp(prefix="worldsim-full-disk-")) / "data"
    cfg = CollectConfig(
        env="worldsim/Physics-v0",
        episodes=128,
        workers=2,
        out=str(out),
        policy=f"{Path(__file__).resolve()}:FullDisk",
        progress=False,
    )
    start = time.perf_counter()
    try:
        collect(cfg)
        print("collect finished: the write failure was not injected")
    except Exception as error:
        print(f"{time.perf_counter() - start:.1f} s to {type(error).__name__}: {error}")
    print("left in the dataset folder:", sorted(p.name for p in out.iterdir()))
    shutil.rmtree(out.parent)


if __name__ == "__main__":
    sys.exit(main())
