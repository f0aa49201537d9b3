"""``worldsim generate``: videos imagined by a world model from a caption, alone or after a context.

For every prompt (``prompt=`` or one per line of ``prompts_file=``) and each of ``n`` seeds
(``seed``, ``seed + 1``, ...) ``WorldModel.generate`` imagines ``frames`` frames, written as
``<out>/<prompt>/seed<k>.gif`` and ``.mp4``; ``<out>/<prompt>/sheet.png`` shows every ``every``-th
frame of each seed, one row per seed, under the prompt; ``<out>/manifest.json`` records the
prompts, seeds, files, sampling and the checkpoint's sha256, so any video can be made again.

``context=none`` imagines from the text alone. ``context=env`` starts every video from the first
``context_frames`` frames of the checkpoint's real env left alone (an episode picked by ``context_seed``);
``context=dataset`` from a clip of a ``dataset=`` episode (``episode=``, else one picked by
``context_seed``). The actions between the context frames are the recorded ones; every action
after them is the world's zero action, a no-op in every worldsim world.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from worldsim.checkpoint import missing_checkpoint
from worldsim.config_checks import check_at_least
from worldsim.data.atomic import sha256_file, write_json_atomic
from worldsim.sampling import SamplingConfig
from worldsim.spaces import zero_action
from worldsim.viz import frame_strip, labelled_rows, save_png, title_band, write_gif, write_mp4
from worldsim.world_model import MAX_GENERATED_FRAMES, WorldModel

CONTEXTS = ("none", "env", "dataset")


@dataclass
class GenerateConfig:
    # exported model file (<run>/model.pt of `worldsim train`), or a shipped one: ${reference:physics}
    checkpoint: str = "${reference:physics}"
    prompt: Optional[str] = None  # the caption to imagine, e.g. 'a red ball is thrown to the left'
    prompts_file: Optional[str] = None  # a text file with one prompt per line (blank lines skipped), instead of prompt
    frames: int = 48  # frames to imagine per video, after the context
    n: int = 4  # videos per prompt, with seeds seed, seed + 1, ...
    seed: int = 0  # the first video's sampling seed
    context: str = "none"  # none (text alone) | env (the real env's first frames) | dataset (a dataset episode)
    context_frames: int = 4  # frames of context every video continues (env, dataset)
    context_seed: int = 0  # picks the real env's episode (context=env) or the dataset episode and clip (dataset)
    dataset: Optional[str] = None  # context=dataset: the episodes' folder (`worldsim collect` out)
    episode: Optional[int] = None  # context=dataset: this episode (None: one picked by context_seed)
    # how the model samples: sampling.cfg_text=3 (text guidance), sampling.cfg_action ...; unset: the file's default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    every: int = 4  # the contact sheet shows every k-th frame
    fps: int = 10  # frames per second of the videos
    scale: int = 2  # enlarge frames this many times (nearest neighbour) in the videos and the sheet
    progress: bool = True  # a progress bar over the videos
    out: str = "generate"  # folder for the videos, the sheets and manifest.json
    device: Optional[str] = None  # cpu | cuda; None: CUDA when present

    def __post_init__(self) -> None:
        check_at_least(self, frames=1, n=1, seed=0, context_frames=1, context_seed=0, episode=0, every=1, fps=1)
        check_at_least(self, scale=1)


@dataclass
class GenerateResult:
    videos: np.ndarray  # (len(prompts) * n, frames, H, W, 3) uint8, prompt-major
    prompts: list[str]
    seeds: list[int]  # the n seeds of every prompt
    manifest: Path  # the written manifest.json
    seconds: float  # wall time of the generation alone (no loading, no writing)


def read_prompts(cfg: GenerateConfig) -> list[str]:
    """The prompts ``prompt=`` or ``prompts_file=`` gives; ValueError or FileNotFoundError in one line."""
    if (cfg.prompt is None) == (cfg.prompts_file is None):
        raise ValueError(
            "give prompt='a red ball is dropped' or prompts_file=path (one prompt per line), exactly one of them"
        )
    if cfg.prompt is not None:
        if not cfg.prompt.strip():
            raise ValueError("prompt is empty: give the caption to imagine, e.g. prompt='a red ball is dropped'")
        return [cfg.prompt.strip()]
    path = Path(cfg.prompts_file)
    if not path.is_file():
        raise FileNotFoundError(f"prompts_file {path} does not exist: give a text file with one prompt per line")
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"prompts_file {path} holds no prompts: write one caption per line")
    return prompts


def validate_config(cfg: GenerateConfig) -> list[str]:
    """The prompts; raises for settings that can never generate, before the model is loaded."""
    problem = missing_checkpoint(cfg.checkpoint)
    if problem:
        raise ValueError(problem)
    if cfg.context not in CONTEXTS:
        raise ValueError(f"context={cfg.context!r} is not one of {list(CONTEXTS)}")
    if cfg.context == "dataset" and cfg.dataset is None:
        raise ValueError("context=dataset needs dataset=path/to/episodes (a `worldsim collect` folder)")
    if cfg.context != "dataset" and (cfg.dataset is not None or cfg.episode is not None):
        raise ValueError(f"dataset= and episode= choose a dataset context; context={cfg.context} reads none")
    if cfg.frames > MAX_GENERATED_FRAMES:
        raise ValueError(f"frames={cfg.frames}: a video has at most {MAX_GENERATED_FRAMES} frames")
    if not cfg.out:
        raise ValueError("out is empty: name the folder for the videos, e.g. out=generate")
    SamplingConfig.of(cfg.sampling)
    return read_prompts(cfg)


def draw_context(model: WorldModel, cfg: GenerateConfig) -> tuple[Optional[np.ndarray], Optional[np.ndarray], str]:
    """(frames (k, H, W, 3), actions (k - 1, *A), the context's own caption), or Nones for context=none."""
    if cfg.context == "none":
        return None, None, ""
    from worldsim.envs.contexts import ContextSource

    options = {} if cfg.episode is None else {"episode": cfg.episode}
    source = ContextSource(model, cfg.context, cfg.context_frames, "zero", cfg.dataset, None)
    try:
        frames, actions, caption, _ = source.draw(np.random.default_rng(cfg.context_seed), options)
    finally:
        source.close()
    return frames, actions, caption


def slug(index: int, prompt: str) -> str:
    """A folder name for prompt ``index``: its number, then its first words in lowercase ASCII."""
    words = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return f"{index:02d}-{words[:48].rstrip('-') or 'prompt'}"


def video_pictures(video: np.ndarray, seed: int, scale: int) -> list[np.ndarray]:
    """One picture per frame of ``video`` (T, H, W, 3): the frame enlarged under 'seed k  t=i'.

    The time stamp also keeps Pillow from merging identical frames, so a GIF holds every frame.
    """
    width = video.shape[2] * scale
    pictures = []
    for t, frame in enumerate(video):
        big = frame_strip(frame[None], count=1, stride=1, scale=scale)
        pictures.append(np.concatenate([title_band(width, width, [f"seed {seed} t={t}"], scale), big]))
    return pictures


def every_kth(k: int) -> str:
    """'every frame', 'every 2nd frame', 'every 3rd frame', 'every 4th frame', 'every 11th frame', ..."""
    if k == 1:
        return "every frame"
    suffix = "th" if k % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"every {k}{suffix} frame"


def contact_sheet(prompt: str, videos: np.ndarray, seeds: list[int], every: int, scale: int) -> np.ndarray:
    """Every ``every``-th frame of each video (N, T, H, W, 3) in a row labelled with its seed, under the prompt."""
    columns = -(-videos.shape[1] // every)
    rows = labelled_rows(
        [(f"seed {s}", frame_strip(v, count=columns, stride=every, scale=scale)) for s, v in zip(seeds, videos)],
        label_width=64,
    )
    band = title_band(rows.shape[1], rows.shape[1], [f"{prompt}   ({every_kth(every)})"], 2)
    return np.concatenate([band, rows])


def generate(cfg: GenerateConfig) -> GenerateResult:
    """Imagine every prompt ``n`` times; write the videos, contact sheets and manifest; print where."""
    prompts = validate_config(cfg)
    model = WorldModel.from_checkpoint(cfg.checkpoint, device=cfg.device)
    context, context_actions, context_caption = draw_context(model, cfg)
    actions = None
    if context is not None and model.has_actions:
        space = model.action_space
        after = np.broadcast_to(zero_action(space), (cfg.frames, *space.shape))
        actions = np.concatenate([np.asarray(context_actions, space.dtype).reshape(-1, *space.shape), after])
    started = time.perf_counter()
    videos = model.generate(prompts, cfg.frames, cfg.n, cfg.seed, context, actions, cfg.sampling, progress=cfg.progress)
    seconds = time.perf_counter() - started
    seeds = [cfg.seed + j for j in range(cfg.n)]
    manifest = write_outputs(cfg, model, prompts, seeds, videos, context_caption)
    print(
        f"generate: {len(videos)} videos of {cfg.frames} frames in {seconds:.1f} s "
        f"({seconds / len(videos):.2f} s each) -> {manifest.parent}",
        flush=True,
    )
    return GenerateResult(videos, prompts, seeds, manifest, seconds)


def write_outputs(
    cfg: GenerateConfig,
    model: WorldModel,
    prompts: list[str],
    seeds: list[int],
    videos: np.ndarray,
    context_caption: str,
) -> Path:
    """Write each video as gif and mp4, one contact sheet per prompt, and manifest.json; returns its path."""
    out = Path(cfg.out)
    entries: list[dict[str, Any]] = []
    for i, prompt in enumerate(prompts):
        folder = out / slug(i, prompt)
        folder.mkdir(parents=True, exist_ok=True)
        mine = videos[i * len(seeds) : (i + 1) * len(seeds)]
        files = []
        for seed, video in zip(seeds, mine):
            pictures = video_pictures(video, seed, cfg.scale)
            write_gif(folder / f"seed{seed}.gif", pictures, cfg.fps)
            write_mp4(folder / f"seed{seed}.mp4", pictures, cfg.fps)
            files.append({"seed": seed, "gif": f"{folder.name}/seed{seed}.gif", "mp4": f"{folder.name}/seed{seed}.mp4"})
        save_png(folder / "sheet.png", contact_sheet(prompt, mine, seeds, cfg.every, cfg.scale))
        entries.append({"prompt": prompt, "sheet": f"{folder.name}/sheet.png", "videos": files})
    manifest = out / "manifest.json"
    write_json_atomic(
        manifest,
        {
            "checkpoint": str(cfg.checkpoint),
            "checkpoint_sha256": sha256_file(Path(cfg.checkpoint)),
            "env_id": model.env_id,
            "frames": cfg.frames,
            "context": cfg.context,
            "context_frames": cfg.context_frames if cfg.context != "none" else 0,
            "context_seed": cfg.context_seed if cfg.context != "none" else None,
            "dataset": cfg.dataset,
            "episode": cfg.episode,
            "context_caption": context_caption,
            "actions": "zero" if cfg.context == "none" else "the context's recorded actions, then zero",
            "sampling": model.sampling_for(cfg.sampling).given(),
            "fps": cfg.fps,
            "prompts": entries,
        },
    )
    return manifest
