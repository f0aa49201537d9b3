"""Latents cached once per (dataset, autoencoder): built with ``cache_latents``, read with ``LatentCache``.

Dynamics training never needs pixels: each frame's latent is a fixed function of the frame and the
frozen encoder, so encoding it on every visit would redo the same work every epoch. The cache holds,
per shard of the episode dataset, one float16 ``.npy`` of normalized posterior means (rows in the
dataset's frame order), memory-mappable like the frames themselves::

    <dataset>/latents-<first 12 hex of the encoder hash>/
      manifest.json       format, schema, the source dataset manifest's sha256, the encoder hash,
                          latent shape, and per shard: source shard + frames sha256, lengths,
                          file size and sha256, channel sums (statistics)
      shard-00000.npy     (frames of the source shard, C, h, w) float16

Freshness is decided per shard: a shard is reused when the encoder hash and the source shard's
frames sha256 are unchanged, so a dataset that gained shards (a resumed collection) costs only the
new ones, and a changed encoder or re-recorded shard is re-encoded. The manifest is rewritten
atomically after every finished shard (the commit point, as for episode datasets), so a killed
build resumes where it stopped. Only the encoder half of the autoencoder is hashed: fine-tuning
the decoder does not invalidate the cache.

``worldsim.data.clips.ClipDataset`` serves clips of cached latents (and of frames) for training.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Union

import numpy as np
import torch

from worldsim.data.atomic import fsync_dir, remove_stale_temps, sha256_file, tmp_path, write_json_atomic
from worldsim.data.checksums import VERIFIED_NAME, ChecksumCache, first_mismatch
from worldsim.data.storage import MANIFEST_NAME, check_file_size, read_manifest

if TYPE_CHECKING:  # the cache takes any encoder with FrameAutoencoder's interface; data never imports models
    from worldsim.models.autoencoder import FrameAutoencoder

log = logging.getLogger(__name__)

LATENT_FORMAT = "worldsim-latents"
LATENT_SCHEMA_VERSION = 1
_OWN_FILE = re.compile(rf"^(manifest\.json|\.lock|{re.escape(VERIFIED_NAME)}|shard-\d{{5}}\.npy)(\.tmp-\d+)?$")


class LatentCacheError(RuntimeError):
    """A latent cache is missing, corrupt, or was built from another dataset or autoencoder."""


def autoencoder_hash(autoencoder: FrameAutoencoder) -> str:
    """sha256 of everything that determines the cached latents: config, encoder, latent statistics."""
    digest = hashlib.sha256(repr(autoencoder.config).encode())
    for name, tensor in sorted(autoencoder.state_dict().items()):
        if name.startswith("decoder."):
            continue
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{flat.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def default_cache_dir(dataset_root: Union[str, Path], autoencoder: FrameAutoencoder) -> Path:
    return Path(dataset_root) / f"latents-{autoencoder_hash(autoencoder)[:12]}"


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (e.g. every DDP rank calls cache_latents at once)."""
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_cache_manifest(out: Path) -> Optional[dict[str, Any]]:
    """The manifest of the cache at ``out``; None when none was committed yet."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise LatentCacheError(
            f"{path} is not valid JSON ({error}): delete {out} and run cache_latents again"
        ) from None
    if manifest.get("format") != LATENT_FORMAT:
        raise LatentCacheError(
            f"{path} has format {manifest.get('format')!r}, not {LATENT_FORMAT!r}: "
            f"{out} is not a latent cache; pass another out directory"
        )
    if manifest.get("schema_version") != LATENT_SCHEMA_VERSION:
        raise LatentCacheError(
            f"{path} has latent-cache schema {manifest.get('schema_version')}; this worldsim reads "
            f"schema {LATENT_SCHEMA_VERSION}: delete {out} and run cache_latents again to rebuild it"
        )
    return manifest


def _check_own_directory(out: Path) -> None:
    """Refuse to write into a directory holding files the cache did not put there."""
    foreign = sorted(p.name for p in out.iterdir() if not _OWN_FILE.match(p.name))
    if foreign:
        raise LatentCacheError(
            f"{out} holds {foreign[:5]}, which are not latent-cache files: refusing to write a cache "
            "there; pass an empty or new out directory"
        )


def _encode_shard(
    frames: np.ndarray, autoencoder: FrameAutoencoder, path: Path, batch_size: int, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Encode frames (N, H, W, 3) uint8 into ``path`` as (N, C, h, w) float16; channel sum, sum of squares."""
    C = autoencoder.config.latent_channels
    f = autoencoder.config.downsample_factor
    N, H, W = frames.shape[:3]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(N, C, H // f, W // f))
    total, squares = np.zeros(C, np.float64), np.zeros(C, np.float64)
    for lo in range(0, N, batch_size):
        chunk = np.ascontiguousarray(frames[lo : lo + batch_size].transpose(0, 3, 1, 2))  # (B, 3, H, W)
        z = autoencoder.encode_frames(torch.from_numpy(chunk).to(device)).float().cpu().numpy()
        if not np.isfinite(z).all() or np.abs(z).max() > 6e4:
            raise LatentCacheError(
                f"the autoencoder produced latents with max |z| = {np.abs(z).max()} (non-finite or "
                f"beyond float16's 65504) for frames {lo}..{lo + len(chunk) - 1} of {path.name}: "
                "check that the autoencoder trained without diverging and that its latent "
                "statistics were set (FrameAutoencoder.set_latent_statistics)"
            )
        out[lo : lo + len(chunk)] = z
        total += z.sum(axis=(0, 2, 3), dtype=np.float64)
        squares += np.square(z, dtype=np.float64).sum(axis=(0, 2, 3))
    out.flush()
    del out
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())
    return total, squares


@torch.no_grad()
def cache_latents(
    dataset_root: str,
    autoencoder: FrameAutoencoder,
    out: Optional[str] = None,
    batch_size: int = 256,
    device: str = "cpu",
) -> str:
    """Encode every frame of the dataset at ``dataset_root`` once; return the cache directory.

    Latents are the posterior means normalized with the autoencoder's latent statistics (what
    ``FrameAutoencoder.encode_frames`` returns), stored float16. The default directory is
    ``<dataset_root>/latents-<encoder hash>``. Re-running with the same dataset and autoencoder
    only checks file sizes; shards whose source frames or encoder changed are re-encoded.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: encode at least 1 frame per batch")
    root = Path(dataset_root)
    source = read_manifest(root)
    source_sha = sha256_file(root / MANIFEST_NAME)
    ae_sha = autoencoder_hash(autoencoder)
    out_dir = Path(out) if out is not None else default_cache_dir(root, autoencoder)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_own_directory(out_dir)
    frame_shape = source.get("frame_shape") or (source["arrays"] or {}).get("frames", {}).get("shape")
    f = autoencoder.config.downsample_factor
    if not frame_shape or frame_shape[0] % f or frame_shape[1] % f:
        raise LatentCacheError(
            f"{root} has frames of shape {frame_shape}: the autoencoder needs H and W "
            f"divisible by {f}; re-collect with size=[64, 64]"
        )
    latent_shape = [autoencoder.config.latent_channels, frame_shape[0] // f, frame_shape[1] // f]

    with _locked(out_dir):
        remove_stale_temps(out_dir)
        old = _read_cache_manifest(out_dir)
        if (
            old is not None
            and old["complete"]
            and old["source_manifest_sha256"] == source_sha
            and old["autoencoder_sha256"] == ae_sha
            and _sizes_ok(out_dir, old)
        ):
            return str(out_dir)

        reusable: dict[str, dict[str, Any]] = {}
        if old is not None:
            if old["autoencoder_sha256"] != ae_sha:
                warnings.warn(
                    f"{out_dir} was built with another autoencoder "
                    f"({old['autoencoder_sha256'][:12]}, now {ae_sha[:12]}): re-encoding it",
                    stacklevel=2,
                )
            elif old["source_manifest_sha256"] != source_sha:
                log.info("%s: the dataset changed since the cache was built; updating changed shards", out_dir)
            if old["autoencoder_sha256"] == ae_sha and old["latent_shape"] == latent_shape:
                reusable = {s["source_shard"]: s for s in old["shards"]}

        manifest = {
            "format": LATENT_FORMAT,
            "schema_version": LATENT_SCHEMA_VERSION,
            "complete": False,
            "source_root": str(root.resolve()),
            "source_manifest_sha256": source_sha,
            "env_id": source.get("env_id", ""),
            "action_space": source.get("action_space"),
            "autoencoder_sha256": ae_sha,
            "latent_shape": latent_shape,
            "dtype": "float16",
            "shards": [],
        }
        started = time.perf_counter()
        was_training = autoencoder.training
        autoencoder = autoencoder.to(device).eval()
        kept = []
        for shard in source["shards"]:
            frames_info = shard["files"]["frames.npy"]
            previous = reusable.get(shard["name"])
            name = f"{shard['name']}.npy"
            if (
                previous is not None
                and previous["source_frames_sha256"] == frames_info["sha256"]
                and _size_ok(out_dir / name, previous["bytes"])
            ):
                kept.append(previous)
        # Commit the reusable subset before touching any file, so no manifest ever lists a shard
        # whose bytes are being replaced.
        manifest["shards"] = kept
        write_json_atomic(out_dir / MANIFEST_NAME, manifest)
        done = {s["source_shard"] for s in kept}
        written = ChecksumCache(out_dir)  # hashes each new shard once, so this run's LatentCache check is free
        encoded = 0
        for shard in source["shards"]:
            if shard["name"] in done:
                continue
            frames_path = root / shard["name"] / "frames.npy"
            frames_info = shard["files"]["frames.npy"]
            check_file_size(frames_path, frames_info["bytes"])
            if first_mismatch(root, [(frames_path, frames_info["sha256"])]) is not None:
                raise LatentCacheError(
                    f"{frames_path} does not match the sha256 in {root / MANIFEST_NAME}: "
                    f"the shard is corrupt; delete {frames_path.parent} and re-run the "
                    "same `worldsim collect` command"
                )
            final = out_dir / f"{shard['name']}.npy"
            tmp = tmp_path(final)
            total, squares = _encode_shard(np.load(frames_path, mmap_mode="r"), autoencoder, tmp, batch_size, device)
            os.replace(tmp, final)
            fsync_dir(out_dir)
            rows = int(sum(shard["lengths"])) + len(shard["lengths"])
            encoded += rows
            manifest["shards"].append(
                {
                    "name": final.name,
                    "source_shard": shard["name"],
                    "source_frames_sha256": frames_info["sha256"],
                    "lengths": shard["lengths"],
                    "rows": rows,
                    "bytes": final.stat().st_size,
                    "sha256": written.sha256(final),
                    "channel_sum": total.tolist(),
                    "channel_sum_squares": squares.tolist(),
                }
            )
            manifest["shards"].sort(key=lambda s: s["source_shard"])
            write_json_atomic(out_dir / MANIFEST_NAME, manifest)

        autoencoder.train(was_training)
        order = [s["name"] for s in source["shards"]]
        manifest["shards"].sort(key=lambda s: order.index(s["source_shard"]))
        manifest["complete"] = True
        manifest["statistics"] = _statistics(manifest)
        manifest["build_seconds"] = time.perf_counter() - started
        write_json_atomic(out_dir / MANIFEST_NAME, manifest)
        listed = {s["name"] for s in manifest["shards"]}
        for leftover in out_dir.glob("shard-*.npy"):
            if leftover.name not in listed:  # the dataset lost a shard since the last build
                leftover.unlink()
        _warn_if_unnormalized(manifest, out_dir)
        if encoded:
            seconds = manifest["build_seconds"]
            log.info(
                "cached %d latent frames of %s in %.1f s (%.0f frames/s) at %s",
                encoded,
                root,
                seconds,
                encoded / max(seconds, 1e-9),
                out_dir,
            )
    return str(out_dir)


def _size_ok(path: Path, expected: int) -> bool:
    return path.is_file() and path.stat().st_size == expected


def _sizes_ok(out: Path, manifest: dict[str, Any]) -> bool:
    return all(_size_ok(out / s["name"], s["bytes"]) for s in manifest["shards"])


def _statistics(manifest: dict[str, Any]) -> dict[str, list[float]]:
    """Per-channel mean and std of the cached latents, from the per-shard sums."""
    count = sum(s["rows"] for s in manifest["shards"]) * manifest["latent_shape"][1] * manifest["latent_shape"][2]
    total = np.sum([s["channel_sum"] for s in manifest["shards"]], axis=0)
    squares = np.sum([s["channel_sum_squares"] for s in manifest["shards"]], axis=0)
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    return {"mean": mean.tolist(), "std": std.tolist()}


def _warn_if_unnormalized(manifest: dict[str, Any], out: Path) -> None:
    mean = np.asarray(manifest["statistics"]["mean"])
    std = np.asarray(manifest["statistics"]["std"])
    if np.abs(mean).max() > 1.0 or std.max() > 3.0 or std.min() < 0.2:
        warnings.warn(
            f"latents in {out} have per-channel means up to {np.abs(mean).max():.2f} and stds "
            f"{std.min():.2f}..{std.max():.2f}, far from 0 and 1: the diffusion model expects "
            "normalized latents; call FrameAutoencoder.set_latent_statistics on data before caching",
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# Reading


class LatentCache:
    """Read access to a latent cache, with the same episode indexing as ``EpisodeDataset``.

    Like the dataset, it checks every shard's size and (``verify=True``, the default) sha256 on
    opening, hashing only files changed since their last check, and pickles without its memory
    maps, so DataLoader workers open their own.
    """

    def __init__(self, path: Union[str, Path], verify: bool = True) -> None:
        self.path = Path(path)
        manifest = _read_cache_manifest(self.path)
        if manifest is None:
            raise LatentCacheError(
                f"{self.path} has no {MANIFEST_NAME}: it is not a latent cache; "
                "build one with worldsim.data.latents.cache_latents"
            )
        if not manifest["complete"]:
            raise LatentCacheError(f"{self.path} is an unfinished latent cache: run cache_latents again to finish it")
        self.manifest = manifest
        lengths = [np.asarray(s["lengths"], np.int64) for s in manifest["shards"]]
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
        self._shard_of = (
            np.concatenate([np.full(len(steps), k) for k, steps in enumerate(lengths)]) if lengths else self.lengths
        )
        self._frame_row = (
            np.concatenate([np.cumsum(steps + 1) - (steps + 1) for steps in lengths]) if lengths else self.lengths
        )
        for shard in manifest["shards"]:
            path = self.path / shard["name"]
            if not _size_ok(path, shard["bytes"]):
                raise LatentCacheError(
                    f"{path} is missing or not {shard['bytes']} bytes: the cache is "
                    "damaged; run cache_latents again to rebuild it"
                )
        if verify:
            self.verify()
        self._maps: dict[int, np.ndarray] = {}

    def verify(self) -> None:
        """Raise LatentCacheError naming the first shard whose sha256 differs from the manifest's."""
        expected = [(self.path / s["name"], s["sha256"]) for s in self.manifest["shards"]]
        bad = first_mismatch(self.path, expected)
        if bad is not None:
            raise LatentCacheError(
                f"{bad} does not match the sha256 in {self.path / MANIFEST_NAME} (it changed after it was "
                f"written): the cache is corrupt; delete {bad} and run cache_latents again to re-encode it"
            )

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": {}}

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["latent_shape"])

    def check_source(self, dataset_root: Union[str, Path]) -> None:
        """Raise unless this cache was built from the dataset at ``dataset_root`` as it is now."""
        root = Path(dataset_root)
        if sha256_file(root / MANIFEST_NAME) != self.manifest["source_manifest_sha256"]:
            raise LatentCacheError(
                f"{self.path} was built from another version of {root} (its manifest changed since): "
                f"the cache is stale; run cache_latents({str(root)!r}, autoencoder) again to update it"
            )

    def clip(self, episode: int, start: int, length: int) -> np.ndarray:
        """Latents (length, C, h, w) float16 of frames start .. start+length-1 of ``episode``."""
        frames = int(self.lengths[episode]) + 1
        if start < 0 or start + length > frames:
            raise IndexError(f"clip start={start} length={length} does not fit episode {episode} of {frames} frames")
        shard = int(self._shard_of[episode])
        if shard not in self._maps:
            self._maps[shard] = np.load(self.path / self.manifest["shards"][shard]["name"], mmap_mode="r")
        row = int(self._frame_row[episode]) + start
        return self._maps[shard][row : row + length]

    def meta(self) -> dict[str, Any]:
        """Data facts the dynamics model is built from (see ``DynamicsModule``'s ``meta``)."""
        C, h, w = self.latent_shape
        if h != w:
            raise LatentCacheError(
                f"latent frames of {self.path} are {h}x{w}; the DiT needs square "
                "latents: collect square frames (size=[64, 64])"
            )
        return {
            "env_id": self.manifest["env_id"],
            "action_space": self.manifest["action_space"],
            "latent_channels": C,
            "latent_size": h,
            "autoencoder_sha256": self.manifest["autoencoder_sha256"],
            "dataset_manifest_sha256": self.manifest["source_manifest_sha256"],
        }
