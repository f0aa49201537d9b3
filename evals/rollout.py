"""Rollout quality per horizon on Physics and Push: pixels *and* objects, so blur cannot win.

A prediction that erases small objects can out-score copy-last on PSNR at long horizons; the
tracked objects catch it. Per horizon step h (1 = the first future frame), per world:

- ``<world>_psnr_db``: PSNR of the predicted frame against the truth (capped at
  ``metrics.MAX_PSNR_DB``, 100 dB);
- ``<world>_psnr_gain_db``: that PSNR minus copy-last's on the same scenario and step. Its mean
  equals the difference of the two means, but its interval is paired: scenarios differ far more
  from each other than two predictors on one scenario, so two overlapping intervals of
  ``psnr_db`` can hide a clear win, and a mean ahead can still be a tie;
- ``<world>_mse``: mean squared pixel error (0-255 scale) of that frame. ``10 log10(255^2 / mse)``
  of its mean over scenarios is the *pooled* PSNR. A mean of per-scenario PSNR in dB lets a scene
  where nothing moves decide the comparison: copy-last is exact there (the 100 dB cap), a model
  that redraws it with one-level errors scores about 50 dB, and the gap of 50 dB outweighs small
  gains on dozens of moving scenes. On the squared-error scale such a scene weighs what its error
  is: almost nothing;
- ``<world>_mse_reduction``: copy-last's squared error minus this predictor's on the same scenario
  and step (paired; above zero is better). Its mean is the difference of the pooled errors;
- ``<world>_centroid_error_px``: mean distance of each object's tracked centroid from its track
  in the truth, over objects both show;
- ``<world>_miss_rate`` / ``<world>_hallucination_rate``: objects the truth shows that the
  prediction lacks / objects (or extra blobs) the prediction shows that the truth lacks
  (``tracking.count_detections``), per step.

Metric names carry the world (``physics_``, ``push_``) because both worlds report into one suite.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from worldsim import metrics
from worldsim.evals.physics import score_tracked
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import TRACKED_WORLDS, per_world
from worldsim.evals.tracking import Tracks, count_detections

SUITE = "rollout"
WORLDS = TRACKED_WORLDS
MEASURES = ("psnr_db", "psnr_gain_db", "mse", "mse_reduction", "centroid_error_px", "miss_rate", "hallucination_rate")
METRICS = per_world(
    {
        "psnr_db": "PSNR (dB) of each predicted frame against the truth, per horizon step",
        "psnr_gain_db": "PSNR (dB) minus copy-last's on the same scenario and step (a paired comparison)",
        "mse": "mean squared pixel error (0-255 scale) per horizon step; 10 log10(255^2 / its mean) is the pooled PSNR",
        "mse_reduction": "copy-last's squared error minus this one's on the same scenario and step (paired; > 0 is better)",
        "centroid_error_px": "tracked object centroid error (px) against the truth's tracks, per horizon step",
        "miss_rate": "share of objects the truth shows that the prediction lacks, per horizon step",
        "hallucination_rate": "share of the prediction's objects the truth does not have, per horizon step",
    }
)
HEADLINE = [f"{world}_{measure}" for world in WORLDS.values() for measure in ("psnr_db", "centroid_error_px")]
HIGHER_IS_BETTER = {
    f"{world}_{measure}" for world in WORLDS.values() for measure in ("psnr_db", "psnr_gain_db", "mse_reduction")
}


def step_tracks(tracks: Tracks, step: int) -> Tracks:
    return Tracks(*(getattr(tracks, name)[step : step + 1] for name in ("found", "centroid", "area", "color", "extra")))


def rollout_metrics(scenario: Scenario, predicted: Tracks, truth: Tracks, frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step (H,) arrays of one scenario; NaN where nothing can be measured."""
    world = WORLDS[scenario.env_id]
    t0, horizon = scenario.context, scenario.horizon
    out = {f"{world}_{measure}": np.full(horizon, np.nan) for measure in MEASURES}
    for h in range(horizon):
        truth_future = step_tracks(truth, t0 + h)
        future = step_tracks(predicted, h)
        both = truth_future.found[0] & future.found[0]
        if both.any():
            distance = np.linalg.norm(future.centroid[0, both] - truth_future.centroid[0, both], axis=-1)
            out[f"{world}_centroid_error_px"][h] = float(distance.mean())
        counts = count_detections(future, truth_future)
        out[f"{world}_miss_rate"][h] = counts.miss_rate
        out[f"{world}_hallucination_rate"][h] = counts.hallucination_rate
        mse = metrics.mse(frames[h], scenario.frames[t0 + h])
        copy_mse = metrics.mse(scenario.frames[t0 - 1], scenario.frames[t0 + h])
        out[f"{world}_psnr_db"][h] = psnr = metrics.psnr_from_mse(mse)
        out[f"{world}_psnr_gain_db"][h] = psnr - metrics.psnr_from_mse(copy_mse)
        out[f"{world}_mse"][h] = mse
        out[f"{world}_mse_reduction"][h] = copy_mse - mse
    return out


def score_rollout(
    scenarios: Sequence[Scenario], predictions: np.ndarray, predictor: str, truth: Sequence[Tracks] | None = None
) -> list[dict[str, Any]]:
    """Metric rows of one predictor on Physics or Push scenarios: overall and per horizon step."""
    unknown = {s.env_id for s in scenarios} - set(WORLDS)
    if unknown:
        raise ValueError(f"the rollout suite scores {sorted(WORLDS)}, not {sorted(unknown)}")
    world = WORLDS[scenarios[0].env_id]
    frames_of = {id(s): p for s, p in zip(scenarios, predictions)}

    def measure(scenario: Scenario, predicted: Tracks, truth_tracks: Tracks) -> dict[str, np.ndarray]:
        return rollout_metrics(scenario, predicted, truth_tracks, frames_of[id(scenario)])

    metrics = [f"{world}_{m}" for m in MEASURES]
    return score_tracked(SUITE, metrics, measure, scenarios, predictions, predictor, truth)
