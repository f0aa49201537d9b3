"""``worldsim collect``: record episodes of any Gymnasium env into a sharded dataset.

Shard k holds episodes ``k*shard_episodes ..`` and episode i is seeded from ``(seed, i)`` alone,
so a shard's bytes do not depend on which process recorded it, how many workers ran, or whether
the run was interrupted. That makes parallelism and resume simple: each worker process records
whole shards and writes them itself (no frames cross process boundaries), the parent commits
each finished shard to the manifest, and a re-run of the same command records only the shards the
manifest does not list yet.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import errno
import fcntl
import json
import multiprocessing
import os
import queue
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import gymnasium
import numpy as np
from tqdm import tqdm

import worldsim
from worldsim.data.atomic import TMP_MARK, remove_stale_temps
from worldsim.data.policies import make_policy
from worldsim.data.recorder import EpisodeRecorder
from worldsim.data.storage import (
    MANIFEST_NAME,
    DatasetError,
    add_shard,
    check_file_size,
    new_manifest,
    read_manifest,
    shard_files,
    write_manifest,
    write_shard,
)
from worldsim.spaces import describe_space, is_image_space


@dataclass
class CollectConfig:
    env: str = "worldsim/Physics-v0"  # Gymnasium env id: a worldsim world or any registered env
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # keyword arguments for gymnasium.make
    # random | scripted | mixed (scripted with random bursts) | sticky (held random actions, scripted segments) |
    # module:callable (Policy, Policy class or (obs, info) -> action)
    policy: str = "random"
    # for a module:Class policy's constructor, e.g. worldsim.imagine:SavedPPOPolicy's path and checkpoint
    policy_kwargs: dict[str, Any] = field(default_factory=dict)
    episodes: int = 64  # episodes in the finished dataset
    out: str = "data/episodes"  # dataset directory; re-running the same command there resumes
    workers: int = 1  # processes recording shards in parallel (does not change the data)
    shard_episodes: int = 16  # episodes per shard: the unit of parallelism, resume and checksums
    seed: int = 0  # episode i is seeded from (seed, i), so datasets are reproducible
    max_steps: Optional[int] = None  # cap on steps per episode; None keeps the env's own limit
    record_images: bool = False  # also store info's segmentation (int16) and depth (float16)
    size: Optional[list[int]] = None  # [H, W] to resize frames to (INTER_AREA); None keeps them
    progress: bool = True  # show a progress bar counting episodes across workers

    def __post_init__(self) -> None:
        validate_config(self)


@dataclass
class CollectSummary:
    root: str  # the dataset directory
    episodes: int  # episodes in the dataset now
    frames: int  # frames in the dataset now
    recorded_episodes: int  # episodes recorded by this run (fewer when it resumed)
    recorded_frames: int  # frames recorded by this run
    seconds: float  # wall time of this run
    frames_per_s: float  # recorded_frames / seconds


class CollectError(RuntimeError):
    """A collection stopped: the message names the episode or file and the cause; committed shards are kept."""


#: Fields that do not change what is recorded, so a resume may change them.
RUN_ONLY_FIELDS = ("out", "workers", "progress")


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of episode ``episode``: independent streams from one collection seed."""
    return int(np.random.SeedSequence([seed, episode]).generate_state(1)[0])


def content_config(cfg: CollectConfig) -> dict[str, Any]:
    """The config fields that determine the recorded data, as plain JSON values."""
    fields = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUN_ONLY_FIELDS}
    return json.loads(json.dumps(fields))


def recorded_config(manifest: dict[str, Any]) -> dict[str, Any]:
    """The content config a dataset was recorded with; a field added since counts as its default."""
    return {**content_config(CollectConfig()), **manifest.get("collect", {})}


def validate_config(cfg: CollectConfig) -> None:
    """Raise ValueError for settings that can never produce a dataset, before touching ``out``."""
    checks = [
        (cfg.episodes > 0, f"episodes={cfg.episodes}: record at least 1 episode"),
        (cfg.shard_episodes > 0, f"shard_episodes={cfg.shard_episodes}: a shard holds at least 1"),
        (cfg.workers > 0, f"workers={cfg.workers}: use at least 1 process"),
        (cfg.seed >= 0, f"seed={cfg.seed}: seeds are non-negative integers"),
        (
            cfg.max_steps is None or cfg.max_steps > 0,
            f"max_steps={cfg.max_steps}: use a positive cap or null for the env's own limit",
        ),
        (
            cfg.size is None or (len(cfg.size) == 2 and all(int(v) > 0 for v in cfg.size)),
            f"size={cfg.size}: give [H, W] with positive sides, or null to keep the env's frames",
        ),
        (bool(cfg.out), "out is empty: name the dataset directory, e.g. out=data/cartpole"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


def make_env(cfg: CollectConfig) -> gymnasium.Env:
    """``gymnasium.make(cfg.env)``, with ``render_mode="rgb_array"`` when frames come from render()."""

    def make(**kwargs: Any) -> gymnasium.Env:
        try:
            return gymnasium.make(cfg.env, **kwargs)
        except gymnasium.error.Error as error:
            raise ValueError(
                f"env {cfg.env!r} cannot be made ({error}): check the id; "
                "`python -c 'import worldsim, gymnasium; gymnasium.pprint_registry()'` "
                "lists the registered ones"
            ) from None

    env = make(**cfg.env_kwargs)
    if is_image_space(env.observation_space) or env.render_mode == "rgb_array":
        return env
    env.close()
    if "render_mode" in cfg.env_kwargs:
        raise ValueError(
            f"env {cfg.env!r} observes {env.observation_space}, not RGB frames, so frames come from "
            f"render(), but env_kwargs sets render_mode={cfg.env_kwargs['render_mode']!r}: drop it "
            "or set render_mode=rgb_array"
        )
    if "rgb_array" not in env.metadata.get("render_modes", []):
        raise ValueError(
            f"env {cfg.env!r} observes {env.observation_space}, not RGB frames, and cannot render "
            f"rgb_array (its render modes: {env.metadata.get('render_modes', [])}): worldsim needs "
            "pictures; wrap it so it observes or renders (H, W, 3) uint8 frames"
        )
    return make(**cfg.env_kwargs, render_mode="rgb_array")


def make_recorder(cfg: CollectConfig) -> EpisodeRecorder:
    env = make_env(cfg)
    try:
        policy = make_policy(cfg.policy, env, cfg.policy_kwargs)
        return EpisodeRecorder(
            env,
            policy,
            frame_size=tuple(cfg.size) if cfg.size else None,
            max_steps=cfg.max_steps,
            record_images=cfg.record_images,
            env_id=cfg.env,
        )
    except Exception:
        env.close()
        raise


# -- one shard, in whichever process records it ----------------------------------------------

_recorders: dict[str, EpisodeRecorder] = {}
_progress_queue: Optional[Any] = None
_parent_pid: Optional[int] = None


def _init_worker(progress_queue: Any, parent_pid: int) -> None:
    global _progress_queue, _parent_pid
    _progress_queue, _parent_pid = progress_queue, parent_pid
    # Envs left open until interpreter shutdown make PyBullet's finalizer print a traceback.
    atexit.register(_close_recorders)


def _exit_if_orphaned() -> None:
    # A pool worker whose parent was killed would otherwise finish its shard and race the
    # resumed run; stop as soon as we notice.
    if _parent_pid is not None and os.getppid() != _parent_pid:
        os._exit(1)


def record_shard(cfg: CollectConfig, index: int, on_episode: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Record and write shard ``index``; return its manifest record (not yet committed)."""
    key = json.dumps(content_config(cfg), sort_keys=True)
    if key not in _recorders:
        _recorders[key] = make_recorder(cfg)
    recorder = _recorders[key]
    first = index * cfg.shard_episodes
    episodes = []
    for i in range(first, min(first + cfg.shard_episodes, cfg.episodes)):
        seed = episode_seed(cfg.seed, i)
        try:
            episodes.append(recorder.record(seed))
        except Exception as error:  # the policy's or env's code: say which episode to replay
            raise CollectError(
                f"episode {i} (shard {index}, reset seed {seed}) raised {type(error).__name__}: {error}"
            ) from error
        _exit_if_orphaned()
        frames = len(episodes[-1].frames)
        if on_episode is not None:
            on_episode(frames)
        elif _progress_queue is not None:
            _progress_queue.put(frames)
    return write_shard(Path(cfg.out), index, first, episodes)


def _close_recorders() -> None:
    for recorder in _recorders.values():
        recorder.env.close()
    _recorders.clear()


# -- the dataset directory: create, check, resume ----------------------------------------------


class CollectionBusy(RuntimeError):
    """Another process holds the dataset's lock."""


def _lock(root: Path) -> int:
    """Hold an exclusive lock on ``root`` so two collections never write one dataset."""
    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise CollectionBusy(
            f"another `worldsim collect` is writing to {root}: wait for it to end, or choose another out directory"
        ) from None
    return fd


def _open_manifest(root: Path, cfg: CollectConfig, meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest to continue from: existing (same config) or new; refuse anything else."""
    if not (root / MANIFEST_NAME).exists():
        others = [p.name for p in root.iterdir() if p.name != ".lock" and TMP_MARK not in p.name]
        if others:
            raise ValueError(
                f"out={root} is not empty ({sorted(others)[:5]}) and has no "
                f"{MANIFEST_NAME}: choose a new or empty directory for the dataset"
            )
        manifest = new_manifest(meta)
        write_manifest(root, manifest)
        return manifest
    manifest = read_manifest(root)
    recorded = recorded_config(manifest)
    wanted = content_config(cfg)
    changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
    if changed:
        diff = ", ".join(f"{k}={recorded.get(k)!r} (now {wanted.get(k)!r})" for k in changed)
        raise ValueError(
            f"{root} holds a dataset collected with a different config: {diff}. To resume it, "
            f"re-run with its settings; to record this config, choose a new out directory (or "
            f"delete {root} to start over)"
        )
    return manifest


def _drop_damaged_and_orphans(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Forget committed shards whose files are gone or resized; delete uncommitted shard dirs."""
    dropped = []
    kept = []
    for shard in manifest["shards"]:
        try:
            for path, info in shard_files(root, shard):
                check_file_size(path, info["bytes"])
            kept.append(shard)
        except DatasetError:
            dropped.append(shard["name"])
    manifest["shards"] = []
    for shard in kept:
        add_shard(manifest, {**shard, "arrays": manifest["arrays"]})
    _remove_uncommitted(root, manifest)
    return dropped


def _remove_uncommitted(root: Path, manifest: dict[str, Any]) -> None:
    """Delete shard folders the manifest does not list (written by a run that stopped before committing them)."""
    committed = {s["name"] for s in manifest["shards"]}
    for path in root.glob("shard-*"):
        if path.is_dir() and TMP_MARK not in path.name and path.name not in committed:
            shutil.rmtree(path)


def collect(cfg: CollectConfig) -> CollectSummary:
    """Record ``cfg.episodes`` episodes into ``cfg.out``, resuming what a previous run began."""
    validate_config(cfg)
    start_time = time.perf_counter()
    # Errors in the env id, kwargs or policy surface here, before out is touched; the probe is
    # then reused by in-process recording.
    probe = make_recorder(cfg)
    _recorders[json.dumps(content_config(cfg), sort_keys=True)] = probe
    try:
        frame_shape = probe.check()
    except BaseException:
        _close_recorders()
        raise
    meta = {
        "env_id": cfg.env,
        "env_kwargs": json.loads(json.dumps(cfg.env_kwargs)),
        "policy": cfg.policy,
        "seed": cfg.seed,
        "observation_space": describe_space(probe.env.observation_space),
        "action_space": describe_space(probe.env.action_space),
        "frames_from": "observation" if probe.from_observation else "render",
        "frame_shape": list(frame_shape),
        "episodes_planned": cfg.episodes,
        "shard_episodes": cfg.shard_episodes,
        "num_shards": -(-cfg.episodes // cfg.shard_episodes),
        "collect": content_config(cfg),
        "worldsim_version": worldsim.__version__,
    }
    root = Path(cfg.out)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = _lock(root)
    except BaseException:
        _close_recorders()
        raise
    try:
        remove_stale_temps(root)
        manifest = _open_manifest(root, cfg, meta)
        dropped = _drop_damaged_and_orphans(root, manifest)
        if dropped:
            print(f"re-recording {dropped}: their files no longer match {root / MANIFEST_NAME}")
            write_manifest(root, manifest)
        done = {s["index"] for s in manifest["shards"]}
        todo = [k for k in range(meta["num_shards"]) if k not in done]
        recorded_frames, recorded_episodes = _record(cfg, root, manifest, todo)
    finally:
        os.close(lock)
        _close_recorders()

    seconds = time.perf_counter() - start_time
    summary = CollectSummary(
        root=str(root),
        episodes=manifest["episodes"],
        frames=manifest["frames"],
        recorded_episodes=recorded_episodes,
        recorded_frames=recorded_frames,
        seconds=seconds,
        frames_per_s=recorded_frames / seconds,
    )
    print(
        f"collected {recorded_episodes} episodes ({recorded_frames} frames) of {cfg.env} in "
        f"{seconds:.1f} s with {cfg.workers} worker(s): {summary.frames_per_s:.0f} frames/s; "
        f"{root} holds {summary.episodes} episodes, {summary.frames} frames"
    )
    return summary


def _record(cfg: CollectConfig, root: Path, manifest: dict[str, Any], todo: list[int]) -> tuple[int, int]:
    """Record shards ``todo``, committing each to the manifest as it finishes.

    On the first failure every worker stops at once, this run's unfinished shards are deleted (a
    full disk gets its space back) and one error names the cause; the manifest still lists every
    shard committed before, so re-running the same command resumes.
    """
    bar = tqdm(
        total=cfg.episodes,
        initial=manifest["episodes"],
        unit="episode",
        disable=not cfg.progress,
        desc=f"collect {cfg.env}",
        dynamic_ncols=True,
    )
    counts = {"frames": 0, "episodes": 0}
    started = time.perf_counter()

    def on_episode(frames: int) -> None:
        counts["frames"] += frames
        counts["episodes"] += 1
        bar.update(1)
        bar.set_postfix(frames_per_s=f"{counts['frames'] / (time.perf_counter() - started):.0f}")

    def commit(record: dict[str, Any]) -> None:
        add_shard(manifest, record)
        write_manifest(root, manifest)

    try:
        if cfg.workers == 1 or len(todo) <= 1:
            for index in todo:
                commit(record_shard(cfg, index, on_episode))
        else:
            _record_in_pool(cfg, todo, on_episode, commit)
    except BaseException as error:
        with contextlib.suppress(OSError):  # best effort: the cause matters more than a leftover
            remove_stale_temps(root)
            _remove_uncommitted(root, manifest)
        explained = _explain_failure(error, root, manifest)
        if explained is None:
            raise
        raise explained from error
    finally:
        bar.close()
        _close_recorders()
    return counts["frames"], counts["episodes"]


def _explain_failure(error: BaseException, root: Path, manifest: dict[str, Any]) -> Optional[CollectError]:
    """The error that tells a user why collection stopped and what to do; None to re-raise ``error`` as it is."""
    resume = (
        f"re-run the same command to resume: the {len(manifest['shards'])} shard(s) that "
        f"{root / MANIFEST_NAME} lists are kept, this run's unfinished ones were removed"
    )
    if isinstance(error, OSError):
        code = errno.errorcode.get(error.errno or 0, str(error.errno))
        where = error.filename or root
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return CollectError(f"{error.strerror.lower()} writing {where} ({code}): free space, then {resume}")
        return CollectError(f"writing {where} failed: {error.strerror or error} ({code}); fix that, then {resume}")
    if isinstance(error, CollectError):
        return CollectError(f"{error}; fix the policy or env (replay that seed to debug it), then {resume}")
    if isinstance(error, BrokenProcessPool):
        return CollectError(
            f"a collection worker process died ({error}). If the policy or env is defined in a script's "
            f"__main__, move it into an importable module (workers are spawned), or run with workers=1; "
            f"then {resume}"
        )
    return None


def _record_in_pool(
    cfg: CollectConfig, todo: list[int], on_episode: Callable[[int], None], commit: Callable[[dict[str, Any]], None]
) -> None:
    # "spawn" is safe where "fork" is not: PyBullet, pygame and torch threads do not survive a
    # fork, and it behaves the same on Linux and macOS.
    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    processes = min(cfg.workers, len(todo))
    # A process pool that raises when a worker dies (multiprocessing.Pool would silently start
    # a new one and wait forever for the lost shard).
    pool = ProcessPoolExecutor(
        processes, mp_context=context, initializer=_init_worker, initargs=(progress, os.getpid())
    )
    try:
        pending = {pool.submit(record_shard, cfg, index) for index in todo}
        while pending:
            try:
                on_episode(progress.get(timeout=0.05))
            except queue.Empty:
                pass
            finished = {future for future in pending if future.done()}
            pending -= finished
            failures = []
            for future in finished:  # a shard finished beside a failure is still committed, for the resume
                if future.exception() is not None:
                    failures.append(future.exception())
                else:
                    commit(future.result())
            if failures:
                raise failures[0]
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True)
    while True:  # episodes reported after their shard's result arrived
        try:
            on_episode(progress.get(timeout=0.05))
        except queue.Empty:
            break


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel the shards not yet begun and kill the workers recording others, and wait until they are gone.

    Without this, leaving the pool waits for every submitted shard: on a full disk each would be
    recorded only to fail at its write. Killing is safe: a worker writes nothing outside its
    ``.tmp-<pid>`` folder until it renames a finished shard, and the caller deletes both once
    the workers are dead.
    """
    # The pool forgets its processes on shutdown, and Python < 3.14 has no public way to kill them.
    workers = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.kill()
    for worker in workers:
        worker.join()
