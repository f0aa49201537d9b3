"""On-disk episode format: a manifest plus shards of uncompressed, memory-mappable ``.npy`` files.

Layout of a dataset directory::

    manifest.json            schema version, env id + kwargs, spaces, policy, seed, collection
                             config, array specs, and per shard: episode lengths, file sizes, sha256
    shard-00000/
      frames.npy             (sum over episodes of L+1, H, W, 3) uint8, episodes back to back
      actions.npy            (sum of L, *A) float32 or int64
      rewards.npy            (sum of L,) float32
      terminated.npy         (sum of L,) bool
      truncated.npy          (sum of L,) bool
      state.<key>.npy        (sum of L+1, ...) one file per key of info["state"]
      segmentation.npy       (sum of L+1, H, W) int16   only with record_images
      depth.npy              (sum of L+1, H, W) float16 only with record_images
      episodes.json          per episode: length, seed, caption, params, split
    shard-00001/ ...

Why this format: training reads random fixed-length clips from many DataLoader workers. A clip is
a slice of a memory map (rows ``offset + start`` to ``offset + start + T``), so a read costs one
page-cache copy and no decode, and every worker shares the same page cache instead of each
holding decompressed copies. Episode offsets follow from the lengths in the manifest, so opening
a dataset reads one small JSON file. Frames of 64x64 worlds are small enough that compression
buys little disk next to its per-read decode cost (video codecs would also lose bit exactness).

Crash safety: a shard is written into ``shard-00000.tmp-<pid>/``, fsynced and renamed, so it
appears whole or not at all; the manifest is rewritten atomically after each finished shard and
is the commit point: a shard directory that the manifest does not list is not part of the dataset.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from worldsim.data.atomic import commit_dir, naming, tmp_path, write_json_atomic
from worldsim.data.episode import Episode

SCHEMA_VERSION = 1
FORMAT_NAME = "worldsim-episodes"
MANIFEST_NAME = "manifest.json"
EPISODES_JSON = "episodes.json"
RECOLLECT_HINT = "re-run the same `worldsim collect` command to re-record it"


class DatasetError(RuntimeError):
    """A dataset on disk is missing, corrupt, or from an incompatible schema version."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _write_npy(path: Path, parts: list[np.ndarray]) -> dict[str, Any]:
    """Write ``parts`` concatenated along axis 0 as one .npy file, hashing as it goes.

    Streaming the parts avoids holding a second, concatenated copy of a shard's frames in memory.
    """
    first = parts[0]
    shape = (sum(len(p) for p in parts), *first.shape[1:])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header,
        {"descr": np.lib.format.dtype_to_descr(first.dtype), "fortran_order": False, "shape": shape},
    )
    digest = hashlib.sha256(header.getvalue())
    with open(path, "wb") as f:
        f.write(header.getvalue())
        for part in parts:
            data = np.ascontiguousarray(part).data.cast("B")
            digest.update(data)
            f.write(data)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _stack_spec(name: str, parts: list[np.ndarray], seeds: list[int]) -> dict[str, Any]:
    """The dtype and row shape shared by every episode's ``name`` array, or a clear error."""
    spec = {"dtype": parts[0].dtype.str, "shape": list(parts[0].shape[1:])}
    for part, seed in zip(parts, seeds):
        if part.dtype.str != spec["dtype"] or list(part.shape[1:]) != spec["shape"]:
            raise ValueError(
                f"{name} of the episode with seed {seed} has dtype {part.dtype} and row shape "
                f"{part.shape[1:]}, but the shard's first episode has {spec['dtype']} and "
                f"{tuple(spec['shape'])}: every episode of a dataset needs the same array layout"
            )
    return spec


def _numpy_to_json(value: Any) -> Any:
    """Lets env ``info["params"]`` hold numpy scalars and arrays."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(
        f"{value!r} of type {type(value).__name__} in an episode's params or caption is "
        "not JSON-serializable: info['params'] must hold numbers, strings, lists, dicts"
    )


def write_shard(root: Path, index: int, first_episode: int, episodes: list[Episode]) -> dict[str, Any]:
    """Write ``episodes`` as shard ``index`` of the dataset at ``root``; return its manifest record.

    The shard becomes visible atomically; the caller commits it by adding the record to the
    manifest (see :func:`add_shard`). On failure nothing stays behind: a full disk keeps no
    half-written temp folder, and an OSError names the file it could not write.
    """
    if not episodes:
        raise ValueError(f"shard {index} has no episodes: a shard holds at least one")
    for episode in episodes:
        episode.validate()
    final = root / shard_name(index)
    tmp = tmp_path(final)
    tmp.mkdir()
    try:
        record = _write_shard_files(tmp, index, episodes)
        commit_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"name": final.name, "index": index, "first_episode": first_episode, **record}


def _write_shard_files(tmp: Path, index: int, episodes: list[Episode]) -> dict[str, Any]:
    """Write the arrays and episodes.json of a shard into ``tmp``; return lengths, files and arrays."""
    seeds = [e.seed for e in episodes]
    keys = list(episodes[0].per_frame_arrays()) + list(episodes[0].per_step_arrays())
    files: dict[str, dict[str, Any]] = {}
    arrays: dict[str, dict[str, Any]] = {}
    for rows in ("frame", "step"):
        for name in keys:
            getter = Episode.per_frame_arrays if rows == "frame" else Episode.per_step_arrays
            if name not in getter(episodes[0]):
                continue
            try:
                parts = [getter(e)[name] for e in episodes]
            except KeyError as missing:
                raise ValueError(
                    f"an episode of shard {index} lacks {missing}: every episode of a dataset needs the same arrays"
                ) from None
            arrays[name] = {**_stack_spec(name, parts, seeds), "rows": rows}
            with naming(tmp / f"{name}.npy"):
                files[f"{name}.npy"] = _write_npy(tmp / f"{name}.npy", parts)
    meta = {
        "lengths": [e.length for e in episodes],
        "seeds": seeds,
        "captions": [e.caption for e in episodes],
        "params": [e.params for e in episodes],
        "splits": [e.split for e in episodes],
    }
    meta_bytes = (json.dumps(meta, sort_keys=True, default=_numpy_to_json) + "\n").encode()
    with naming(tmp / EPISODES_JSON):
        (tmp / EPISODES_JSON).write_bytes(meta_bytes)
    files[EPISODES_JSON] = {"bytes": len(meta_bytes), "sha256": hashlib.sha256(meta_bytes).hexdigest()}
    return {"lengths": meta["lengths"], "files": files, "arrays": arrays}


def new_manifest(meta: dict[str, Any]) -> dict[str, Any]:
    """An empty manifest (no shards yet) carrying ``meta``: env, spaces, policy, config."""
    return {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        **meta,
        "arrays": None,
        "shards": [],
        "episodes": 0,
        "frames": 0,
        "steps": 0,
    }


def add_shard(manifest: dict[str, Any], record: dict[str, Any]) -> None:
    """Add a written shard's record to ``manifest`` (in memory), keeping shards in index order."""
    arrays = record.pop("arrays")
    if manifest["arrays"] is None:
        manifest["arrays"] = arrays
    elif manifest["arrays"] != arrays:
        raise DatasetError(
            f"{record['name']} stores arrays {arrays} but earlier shards store {manifest['arrays']}: "
            "the env changed its observation, action or state layout between episodes"
        )
    shards = [s for s in manifest["shards"] if s["index"] != record["index"]] + [record]
    manifest["shards"] = sorted(shards, key=lambda s: s["index"])
    lengths = [length for s in manifest["shards"] for length in s["lengths"]]
    manifest["episodes"] = len(lengths)
    manifest["steps"] = int(sum(lengths))
    manifest["frames"] = int(sum(lengths)) + len(lengths)


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(root / MANIFEST_NAME, manifest)


def read_manifest(root: Path) -> dict[str, Any]:
    """Load and check the manifest of the dataset at ``root``."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        raise DatasetError(
            f"{path} does not exist: {root} is not a worldsim episode dataset (or its collection "
            "never finished a shard); record one with `worldsim collect out=<dir> ...`"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DatasetError(
            f"{path} is not valid JSON ({error}): the manifest is corrupt; delete {root} and {RECOLLECT_HINT}"
        ) from None
    if manifest.get("format") != FORMAT_NAME:
        raise DatasetError(
            f"{path} has format {manifest.get('format')!r}, not {FORMAT_NAME!r}: it is not a worldsim episode dataset"
        )
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and version > SCHEMA_VERSION
        fix = (
            "upgrade worldsim to read it"
            if newer
            else "re-record it with this worldsim (`worldsim collect`, into a new out directory)"
        )
        raise DatasetError(
            f"{path} was written with schema version {version}; this worldsim reads schema version "
            f"{SCHEMA_VERSION}: {fix}"
        )
    return manifest


def check_file_size(path: Path, expected: int) -> None:
    """Raise DatasetError if ``path`` is missing or not ``expected`` bytes long."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise DatasetError(
            f"{path} is missing but the manifest lists it: the shard is incomplete; "
            f"delete {path.parent} and {RECOLLECT_HINT}"
        ) from None
    if size != expected:
        raise DatasetError(
            f"{path} is {size} bytes but the manifest says {expected}: the shard is truncated or "
            f"corrupt; delete {path.parent} and {RECOLLECT_HINT}"
        )


def shard_files(root: Path, shard: dict[str, Any]) -> Iterable[tuple[Path, dict[str, Any]]]:
    for file_name, info in shard["files"].items():
        yield root / shard["name"] / file_name, info
