"""Long rollouts (stability): a predictor's 600 frames beside the truth, and a verdict of collapse.

A model can keep its colour statistics for 600 frames while an object dissolves into a faint
outline, so besides per-frame error and global statistics this suite tracks every object the
truth shows (``evals.tracking``) and asks whether the prediction still shows it. Every measure is
*relative to the truth* of the same frame, so the simulator itself never collapses.

Scenarios: one long episode per world of ``WORLDS`` (the world's policy, ``HORIZON`` = 600 future
frames after ``CONTEXT`` real ones; ``worldsim eval horizon=...`` changes the horizon). Push under
random pushes moves for the whole horizon; Physics objects fall and settle, the static case, where
a model must hold a still scene; BlockWorld's basic policy walks, turns, digs and builds in first
person (its objects, the landmarks, share colours with one another and with the scenery, so they
are not tracked there: frozen frames are judged by pixels and ghosts are not measured; the memory
suite asks whether landmarks and edits come back).

Per future step h (``<world>_`` prefixed; rows for steps 1-16 and every 16th, and overall):

- ``psnr_db``: PSNR of the frame against the truth (``worldsim.metrics``), also per bucket of steps
  (``psnr_db_h1_16``, ``_h17_64``, ``_h65_256``, ``_h257_600``; the last ends at the horizon);
- ``color_mean_error`` / ``color_std_error``: the worst channel's |mean - truth's mean| and
  |std - truth's std| (0-255 levels): drift of the colour statistics;
- ``sharpness_log2_ratio``: log2 of the frame's Laplacian variance over the truth's (0 = as sharp,
  -1 = half as sharp); ``noise_excess``: the frame's estimated noise sigma minus the truth's;
- ``object_kept``: share of the objects the truth shows (tracked area >= ``MIN_OBJECT_AREA``) that
  the prediction shows with at least ``KEPT_AREA`` of the truth's area and ``KEPT_CONTRAST`` of its
  contrast (distance of the object's mean colour from the frame's median colour), anywhere in the
  frame: a displaced object is kept, a ghost is not. Also per bucket;
- ``object_area_ratio`` / ``object_contrast_ratio``: the evidence, per truth-shown object (0 where
  the prediction lacks it).

Per scenario: a **collapse verdict**, each kind with the step where its first run of
``COLLAPSE_FRAMES`` bad frames starts (1-based; steps where a kind cannot be measured, such as a
truth holding still, neither count nor break a run). ``<kind>_rate`` is the share of scenarios
flagged, ``<kind>_step`` the mean onset over those (its n counts them); ``collapsed`` and
``collapse_step`` are the same for any kind:

- ``blur``: sharpness below 2**``BLUR_LOG2`` (a quarter) of the truth's;
- ``noise``: estimated noise sigma (``noise_level``) ``NOISE_LEVELS`` over the truth's: Laplacian
  energy cannot tell noise from BlockWorld's block textures, and a ratio fails on textured frames;
- ``frozen``: objects both show move at least ``MIN_MOVE_PX`` over ``CHANGE_LAG`` frames in the
  truth, and less than ``FROZEN_SHARE`` of that in the prediction (worlds without tracked objects:
  the same with the share of pixels changed by ``CHANGE_LEVEL`` levels);
- ``exploding``: the worst channel's mean or std is ``EXPLODING_LEVELS`` levels off the truth's and
  off the last real frame's (a first-person turn from grass to sky moves the truth's that far, and
  copy-last's stale real view has not exploded), or
  ``EXPLODING_CLIPPED`` more of the pixels sit at 0 or 255 than in the truth;
- ``ghost``: an object the truth shows, and the prediction showed before, is not kept (above),
  unless the prediction's object went out of view (last seen within ``EDGE_MARGIN`` px of its
  radius from the border).

Objects count only where the prediction shows them (frozen) or fades them in view (ghost) because
physics alone diverges: the simulator replayed with a 1e-3 nudge (``perturbed_truth``) rolls a
ball out of view that the truth keeps, and its frame then holds still while the truth's moves. The
thresholds sit far from what that nudged simulator gives and close enough to catch what the
known-answer tests fake (tests/test_evals_long.py): a blur of sigma 2, noise of sigma 20, a fade
to the background, a fourfold contrast stretch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Collection, Optional, Sequence

import cv2
import numpy as np

from worldsim import metrics
from worldsim.envs import world_name
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import metric_row
from worldsim.evals.scenarios import make_scenarios
from worldsim.evals.tracking import Tracks, track_scenario_frames

SUITE = "long"
CONTEXT, HORIZON = 4, 600
BUCKETS = (1, 17, 65, 257)  # first steps of the horizon buckets; the last ends at the horizon
CURVE_EVERY = 16  # per-step rows: every step up to this one, then every this many
COLLAPSE_FRAMES = 16  # bad frames in a row that make a verdict: a collapse lasts, a glitch or a physical detour ends
BLUR_LOG2 = -2.0  # sharpness a quarter of the truth's
SHARPNESS_FLOOR = 1.0  # added to both Laplacian variances, so a flat truth frame divides by something
NOISE_LEVELS = 5.0  # estimated noise sigma this many levels over the truth's: sigma-20 noise adds 9-14
CHANGE_LAG = 4  # frames apart that motion is measured over: slow objects move a pixel in 4 frames
MIN_MOVE_PX = 1.0  # an object moving less over CHANGE_LAG frames holds still
FROZEN_SHARE = 0.2  # the prediction moves less than this share of the truth's motion
CHANGE_LEVEL = 24  # without tracked objects: levels a pixel must change by (sampling jitter does not)
MIN_TRUTH_CHANGE = 0.002  # without tracked objects: share of pixels (8 of 64x64) below which the truth holds still
EXPLODING_LEVELS = 48.0  # a channel's mean or std this far off the truth's: a fifth of the range
EXPLODING_CLIPPED = 0.2  # share of pixels at 0 or 255 beyond the truth's
MIN_OBJECT_AREA = 6  # px; truth objects smaller than this are slivers at an edge, not scored
KEPT_AREA, KEPT_CONTRAST = 0.5, 0.5  # of the truth's, for an object to count as still there
EDGE_MARGIN = 2.0  # px beyond its radius: an object last seen this close to the border left the view
KINDS = ("blur", "noise", "frozen", "exploding", "ghost")


@dataclass(frozen=True)
class LongWorld:
    """What the long suite needs to know of a world: how its long episodes are made."""

    policy: str  # "scripted", "random" or "zero" (evals.scenarios.POLICIES)
    context: int = CONTEXT
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # Objects are tracked by colour (evals.tracking): worlds whose objects share their colour with
    # each other and with scenery (BlockWorld's trees, its grass) are judged by their pixels instead.
    track_objects: bool = True


#: env id -> its long episodes. The bare env has no TimeLimit (``scenarios.make_env``), so Push
#: runs past its registered 128 steps and keeps stepping after its target reaches the goal.
WORLDS: dict[str, LongWorld] = {
    "worldsim/Push-v0": LongWorld("random"),  # uniform random pushes: the scene moves for all 600 steps
    "worldsim/Physics-v0": LongWorld("scripted"),  # objects fall and settle: the static long case
    # the basic policy explores, first-person: frozen is judged by pixels, and ghosts are not measured
    "worldsim/BlockWorld-v0": LongWorld("scripted", track_objects=False),
}

_PER_STEP = {
    "psnr_db": "PSNR (dB) of each predicted frame against the truth",
    "color_mean_error": "worst channel's |mean - truth's mean| (0-255 levels)",
    "color_std_error": "worst channel's |std - truth's std| (0-255 levels)",
    "sharpness_log2_ratio": "log2 of the frame's Laplacian variance over the truth's (0: as sharp; -1: half)",
    "noise_excess": "the frame's estimated noise sigma minus the truth's (0-255 levels)",
    "object_kept": "share of truth-shown objects the prediction shows with half their area and contrast",
    "object_area_ratio": "tracked area over the truth's, per truth-shown object (0 where missing)",
    "object_contrast_ratio": "object colour's distance from the frame median over the truth's (0 where missing)",
}
_BUCKETED = ("psnr_db", "object_kept")
# measured only in worlds whose objects are tracked (LongWorld.track_objects)
OBJECT_MEASURES = ("object_kept", "object_area_ratio", "object_contrast_ratio", "ghost_rate", "ghost_step")
_PER_SCENARIO = {
    "collapsed": "share of scenarios with any collapse verdict",
    "collapse_step": "first step of the earliest verdict, over the scenarios that collapse (n counts them)",
    **{f"{kind}_rate": f"share of scenarios with a {kind} verdict" for kind in KINDS},
    **{f"{kind}_step": f"step where {kind} starts, over the scenarios it flags (n counts them)" for kind in KINDS},
}


def bucket_names(horizon: int) -> list[tuple[str, int, int]]:
    """(suffix, first, last) 1-based steps of each horizon bucket that starts within ``horizon``."""
    starts = [s for s in BUCKETS if s <= horizon]
    ends = [s - 1 for s in starts[1:]] + [horizon]
    return [(f"h{first}_{last}", first, last) for first, last in zip(starts, ends)]


def measures(world: str, horizon: int = HORIZON, objects: bool = True) -> dict[str, str]:
    """Metric name -> description for one world (``push``) and horizon; ``objects=False``: a world
    whose objects are not tracked, without the object measures (``OBJECT_MEASURES``)."""
    per_step = {m: text for m, text in _PER_STEP.items() if objects or m not in OBJECT_MEASURES}
    described = {f"{world}_{m}": f"{world.capitalize()}: {text}, per step" for m, text in per_step.items()}
    for m in _BUCKETED:
        for suffix, first, last in bucket_names(horizon):
            if m in per_step:
                described[f"{world}_{m}_{suffix}"] = f"{world.capitalize()}: {_PER_STEP[m]}, over steps {first}-{last}"
    per_scenario = {m: text for m, text in _PER_SCENARIO.items() if objects or m not in OBJECT_MEASURES}
    described |= {f"{world}_{m}": f"{world.capitalize()}: {text}" for m, text in per_scenario.items()}
    return described


METRICS = {
    name: text
    for env_id, world in WORLDS.items()
    for name, text in measures(world_name(env_id), objects=world.track_objects).items()
}
HEADLINE = [
    f"{world_name(env_id)}_{m}"
    for env_id, world in WORLDS.items()
    for m in (("psnr_db", "object_kept") if world.track_objects else ("psnr_db", "collapsed"))
]
HIGHER_IS_BETTER = {m for m in METRICS if "_psnr_db" in m or "_object_kept" in m}
# Signed ratios have no better direction (0 or 1 is best, and a table cannot bold closeness to it), and
# onset steps average over the scenarios that collapse only: a later mean is not a better predictor.
NO_BEST = tuple(
    m for m in METRICS if m.endswith(("sharpness_log2_ratio", "noise_excess", "area_ratio", "contrast_ratio", "_step"))
)


def make_long_scenarios(
    n: int, split: str, seed: int, horizon: Optional[int] = None, worlds: Optional[Collection[str]] = None
) -> list[list[Scenario]]:
    """``n`` long episodes of every world in ``WORLDS`` (those in ``worlds``, if given), ``horizon`` (default
    ``HORIZON``) future frames each."""
    return [
        make_scenarios(env_id, n, world.context, horizon or HORIZON, split, seed, world.env_kwargs, world.policy)
        for env_id, world in WORLDS.items()
        if worlds is None or env_id in worlds
    ]


# ----------------------------------------------------------------- per-frame statistics


def sharpness(frames: np.ndarray) -> np.ndarray:
    """Laplacian variance (T,) of the grey levels of frames (T, h, w, 3) uint8: high-frequency energy."""
    return np.array([cv2.Laplacian(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for f in frames], np.float64)


def noise_level(frames: np.ndarray) -> np.ndarray:
    """Estimated sigma (T,) of white noise on the grey levels of frames (T, h, w, 3) uint8 (Immerkaer's estimator).

    The kernel is the difference of two Laplacians, so flat areas, ramps and most edges cancel and
    what is left is pixel-to-pixel noise. Unlike the Laplacian variance (``sharpness``), it tells
    textured truth frames (BlockWorld's blocks: sigma ~3) from noisy ones (sigma-20 noise reads ~14).
    """
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]).astype(np.float64)
    residual = np.stack([cv2.filter2D(g, -1, _NOISE_KERNEL)[1:-1, 1:-1] for g in grey])
    return np.sqrt(np.pi / 2) / 6 * np.abs(residual).reshape(len(frames), -1).mean(1)


_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def changed_share(frames: np.ndarray, lag: int = CHANGE_LAG) -> np.ndarray:
    """Share (T - lag,) of pixels whose any channel changed by ``CHANGE_LEVEL`` since ``lag`` frames before."""
    step = np.abs(frames[lag:].astype(np.int16) - frames[:-lag].astype(np.int16)).max(-1)  # (T - lag, h, w)
    return (step >= CHANGE_LEVEL).reshape(len(step), -1).mean(1)


def clipped_share(frames: np.ndarray) -> np.ndarray:
    """Share (T,) of pixels with a channel at 0 or 255."""
    clipped = ((frames == 0) | (frames == 255)).any(-1)
    return clipped.reshape(len(frames), -1).mean(1)


def channel_stats(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std, each (T, 3), of frames (T, h, w, 3) in levels."""
    pixels = frames.reshape(len(frames), -1, 3).astype(np.float64)
    return pixels.mean(1), pixels.std(1)


# ----------------------------------------------------------------- objects


def object_contrast(frames: np.ndarray, tracks: Tracks) -> np.ndarray:
    """(T, K): distance (0..1 RGB) of each tracked object's mean colour from its frame's median colour."""
    background = np.median(frames.reshape(len(frames), -1, 3), axis=1) / 255.0  # (T, 3)
    return np.linalg.norm(tracks.color - background[:, None], axis=-1)  # NaN where not found


@dataclass
class ObjectTracks:
    """A scenario's objects tracked through context + future (T0 + H frames): in the truth, and with
    the prediction as the future (the context frames are the same real ones in both)."""

    truth: Tracks
    guess: Tracks
    truth_frames: np.ndarray  # (T0 + H, h, w, 3)
    guess_frames: np.ndarray
    context: int


def track_objects(scenario: Scenario, predicted: np.ndarray) -> Optional[ObjectTracks]:
    """The scenario's objects tracked in truth and prediction; None for a world without trackable objects."""
    world = WORLDS.get(scenario.env_id)
    if "object_color" not in scenario.state or (world is not None and not world.track_objects):
        return None
    colors, present = scenario.state["object_color"][0], scenario.state["object_present"][0]
    guess_frames = np.concatenate([scenario.context_frames, predicted])
    return ObjectTracks(
        track_scenario_frames(scenario.frames, colors, present),
        track_scenario_frames(guess_frames, colors, present),
        scenario.frames,
        guess_frames,
        scenario.context,
    )


def object_presence(objects: ObjectTracks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per future step and object (H, K): kept (1/0), area ratio and contrast ratio; NaN where the truth does not
    show the object, ratios 0 where the prediction lacks it."""
    truth, guess, t0 = objects.truth, objects.guess, objects.context
    shown = truth.found[t0:] & (truth.area[t0:] >= MIN_OBJECT_AREA)
    area = np.where(guess.found[t0:], guess.area[t0:] / np.maximum(truth.area[t0:], 1), 0.0)
    truth_contrast = object_contrast(objects.truth_frames, truth)[t0:]
    contrast = np.nan_to_num(object_contrast(objects.guess_frames, guess)[t0:]) / np.maximum(truth_contrast, 1e-6)
    kept = (area >= KEPT_AREA) & (contrast >= KEPT_CONTRAST)
    hide = lambda values: np.where(shown, values, np.nan)  # noqa: E731
    return hide(kept.astype(np.float64)), hide(area), hide(contrast)


def at_edge(tracks: Tracks, height: int, width: int) -> np.ndarray:
    """(T, K) bool: each object's latest detection up to each frame touches the border of the frame.

    An object that goes out of view shrinks at the border and vanishes there; a ghost fades where
    it stands. Only the second is a collapse: physics alone (the perturbed truth) sends objects
    out of view that the truth keeps in it.
    """
    x, y = tracks.centroid[..., 0], tracks.centroid[..., 1]
    gap = np.fmin(np.fmin(x, y), np.fmin(width - 1 - x, height - 1 - y))  # NaN where not found
    touching = tracks.found & (gap <= np.sqrt(tracks.area / np.pi) + EDGE_MARGIN)
    frames = np.arange(len(touching))[:, None]
    latest = np.maximum.accumulate(np.where(tracks.found, frames, -1), axis=0)  # (T, K), -1: never seen yet
    return (latest >= 0) & np.take_along_axis(touching, np.maximum(latest, 0), axis=0)


def ghost_frames(objects: ObjectTracks, kept: np.ndarray) -> np.ndarray:
    """(H, K): 1 where an object the truth shows is not kept by the prediction, 0 where it is kept;
    NaN where the truth does not show it, the prediction never showed it (an object coming into
    view that a predictor never draws is a miss, not a collapse), or its object went out of view."""
    guess, t0 = objects.guess, objects.context
    height, width = objects.truth_frames.shape[1:3]
    seen = np.logical_or.accumulate(guess.found & (guess.area >= MIN_OBJECT_AREA), axis=0)[t0:]
    left = at_edge(guess, height, width)[t0:]
    return np.where(seen & ~left, 1.0 - kept, np.nan)


def displacement(tracks: Tracks, context: int, lag: int = CHANGE_LAG) -> np.ndarray:
    """(H, K) distance (px) each object moved into each future frame from ``lag`` frames before; NaN where unseen."""
    future = np.arange(context, len(tracks.centroid))
    before = np.maximum(future - lag, 0)
    return np.linalg.norm(tracks.centroid[future] - tracks.centroid[before], axis=-1)


def frozen_objects(objects: ObjectTracks) -> np.ndarray:
    """(H,): 1 where objects that both show move in the truth and hardly in the prediction, else 0;
    NaN where no such object moves in the truth (a still truth says nothing of freezing).

    Only objects the prediction shows count: one it lost is a ghost, and one that physics moved
    out of its view (the perturbed truth) leaves a still frame that is not a frozen world.
    """
    truth = displacement(objects.truth, objects.context)
    guess = displacement(objects.guess, objects.context)
    moving = (truth >= MIN_MOVE_PX) & ~np.isnan(guess)
    truth_total = np.where(moving, truth, 0.0).sum(1)
    guess_total = np.where(moving, guess, 0.0).sum(1)
    return np.where(truth_total > 0, guess_total < FROZEN_SHARE * truth_total, np.nan)


# ----------------------------------------------------------------- verdicts


def onset(bad: np.ndarray, frames: int = COLLAPSE_FRAMES) -> Optional[int]:
    """1-based step where the first run of ``frames`` bad steps starts, or None.

    ``bad`` (H,): 1 (or True) bad, 0 good, NaN not measured; steps not measured neither count nor
    break a run (an object hidden for a while, a truth holding still).
    """
    start, run = 0, 0
    for i, flag in enumerate(np.asarray(bad, np.float64)):
        if np.isnan(flag):
            continue
        if not flag:
            run = 0
            continue
        start = i if run == 0 else start
        run += 1
        if run == frames:
            return start + 1
    return None


def frozen_pixels(scenario: Scenario, predicted: np.ndarray) -> np.ndarray:
    """(H,), for worlds without tracked objects: 1 where the truth's pixels changed over the last
    ``CHANGE_LAG`` frames and the prediction's hardly did, 0 where both changed, NaN where the truth
    held still. Both sequences start with the real context."""
    context = scenario.context_frames
    truth = changed_share(np.concatenate([context, scenario.future_frames]))
    guess = changed_share(np.concatenate([context, predicted]))
    tail = scenario.horizon  # changes into each future frame
    truth, guess = truth[-tail:], guess[-tail:]
    if len(truth) < tail:  # a context shorter than the lag: the first steps cannot be measured
        pad = np.zeros(tail - len(truth))
        truth, guess = np.concatenate([pad, truth]), np.concatenate([pad, guess])
    return np.where(truth >= MIN_TRUTH_CHANGE, guess < FROZEN_SHARE * truth, np.nan)


def verdict(bad: dict[str, np.ndarray]) -> dict[str, Optional[int]]:
    """Kind -> onset step (or None) from each kind's (H,) bad frames (see ``onset``); (H, K): per object."""
    out = {}
    for kind in KINDS:
        flags = bad[kind]
        columns = flags.T if flags.ndim == 2 else [flags]
        steps = [s for s in (onset(column) for column in columns) if s is not None]
        out[kind] = min(steps) if steps else None
    return out


def scenario_metrics(scenario: Scenario, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step (H,) arrays and per-scenario (1,) values of one scenario's prediction (H, h, w, 3)."""
    truth = scenario.future_frames
    mean, std = channel_stats(predicted)
    truth_mean, truth_std = channel_stats(truth)
    mean_error = np.abs(mean - truth_mean).max(1)
    std_error = np.abs(std - truth_std).max(1)
    # A first-person view turning from grass to sky moves its statistics that far too: a frame that
    # still has the last real frame's (copy-last's stale view) has not exploded.
    last_mean, last_std = channel_stats(scenario.context_frames[-1:])
    off_context = np.maximum(np.abs(mean - last_mean).max(1), np.abs(std - last_std).max(1)) > EXPLODING_LEVELS
    log2_sharpness = np.log2((sharpness(predicted) + SHARPNESS_FLOOR) / (sharpness(truth) + SHARPNESS_FLOOR))
    noise_excess = noise_level(predicted) - noise_level(truth)
    objects = track_objects(scenario, predicted)
    if objects is None:
        kept = area = contrast = np.full((scenario.horizon, 1), np.nan)
        frozen, ghost = frozen_pixels(scenario, predicted), kept
    else:
        kept, area, contrast = object_presence(objects)
        frozen, ghost = frozen_objects(objects), ghost_frames(objects, kept)
    onsets = verdict(
        {
            "blur": log2_sharpness < BLUR_LOG2,
            "noise": noise_excess > NOISE_LEVELS,
            "frozen": frozen,
            "exploding": (np.maximum(mean_error, std_error) > EXPLODING_LEVELS) & off_context
            | (clipped_share(predicted) - clipped_share(truth) > EXPLODING_CLIPPED),
            "ghost": ghost,
        }
    )
    if objects is None:
        del onsets["ghost"]
    flagged = [step for step in onsets.values() if step is not None]
    values = {
        "psnr_db": metrics.frame_psnr(predicted, truth),
        "color_mean_error": mean_error,
        "color_std_error": std_error,
        "sharpness_log2_ratio": log2_sharpness,
        "noise_excess": noise_excess,
        "object_kept": _mean_over_objects(kept),
        "object_area_ratio": _mean_over_objects(area),
        "object_contrast_ratio": _mean_over_objects(contrast),
        "collapsed": np.array([float(bool(flagged))]),
        "collapse_step": np.array([min(flagged) if flagged else np.nan], np.float64),
    }
    for kind, step in onsets.items():
        values[f"{kind}_rate"] = np.array([float(step is not None)])
        values[f"{kind}_step"] = np.array([np.nan if step is None else step], np.float64)
    if objects is None:
        values = {m: v for m, v in values.items() if m not in OBJECT_MEASURES}
    return values


def _mean_over_objects(values: np.ndarray) -> np.ndarray:
    """(H, K) -> (H,) mean over the objects measured at each step; NaN where none is."""
    measured = ~np.isnan(values)
    total = np.where(measured, values, 0.0).sum(1)
    count = measured.sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# ----------------------------------------------------------------- rows


def curve_steps(horizon: int) -> list[int]:
    """1-based steps that get their own rows: every one up to ``CURVE_EVERY``, then every ``CURVE_EVERY``-th, and the last."""
    steps = list(range(1, min(CURVE_EVERY, horizon) + 1)) + list(range(2 * CURVE_EVERY, horizon + 1, CURVE_EVERY))
    return sorted(set(steps) | {horizon})


def _scenario_mean(values: np.ndarray) -> list[float]:
    """(N, S) -> per scenario the mean over its measured steps (NaN where none is)."""
    return [float(np.nanmean(v)) if not np.isnan(v).all() else np.nan for v in values]


def long_rows(
    split: str, predictor: str, world: str, per_scenario: list[dict[str, np.ndarray]]
) -> list[dict[str, Any]]:
    """Rows of one world and split: overall, per bucket, per curve step and per scenario."""
    rows = []
    horizon = len(per_scenario[0]["psnr_db"])
    for m in (m for m in _PER_STEP if m in per_scenario[0]):
        values = np.stack([s[m] for s in per_scenario])  # (N, H)
        rows.append(metric_row(SUITE, split, predictor, f"{world}_{m}", _scenario_mean(values)))
        if m in _BUCKETED:
            for suffix, first, last in bucket_names(horizon):
                bucket = _scenario_mean(values[:, first - 1 : last])
                rows.append(metric_row(SUITE, split, predictor, f"{world}_{m}_{suffix}", bucket))
        rows += [metric_row(SUITE, split, predictor, f"{world}_{m}", values[:, h - 1], h) for h in curve_steps(horizon)]
    for m in (m for m in _PER_SCENARIO if m in per_scenario[0]):
        rows.append(metric_row(SUITE, split, predictor, f"{world}_{m}", [s[m][0] for s in per_scenario]))
    return rows


def score_long(scenarios: Sequence[Scenario], predictions: np.ndarray, predictor: str) -> list[dict[str, Any]]:
    """Metric rows of one predictor from its predictions (N, H, h, w, 3) of one world's long scenarios."""
    if len(predictions) != len(scenarios):
        raise ValueError(f"{len(predictions)} predictions for {len(scenarios)} scenarios: pass one per scenario")
    worlds = {s.env_id for s in scenarios}
    if len(worlds) != 1:
        raise ValueError(f"scenarios of {sorted(worlds)}: score each world's long scenarios separately")
    world = world_name(scenarios[0].env_id)
    rows = []
    for split in sorted({s.split for s in scenarios}):
        picked = [scenario_metrics(s, p) for s, p in zip(scenarios, predictions) if s.split == split]
        rows += long_rows(split, predictor, world, picked)
    return rows
