"""Object permanence: after an occlusion or a camera turn-away ends, is each object back as it was?

Run on Occlusion scenarios long enough to see objects hide and come back (from reset, objects
hide around frame 10-20 and return around 30-50: ``CONTEXT`` + ``HORIZON`` = 56 frames cover it).

Truth per object and frame is *shown* (the state says visible and the tracker finds it in the
truth frames), *hidden* (the state says no pixel is visible) or neither (a sliver the tracker
cannot see, which counts nowhere). An **event** is an object shown in the context, hidden for a
while and shown again at a future frame r, whole again (``WHOLE`` of its largest area) at
frame b >= r. Per event, over the shown frames of ``[b, b + AFTER)``:

- ``reappearance_rate``: the prediction shows the object at some frame of ``[r, b + AFTER)``;
- ``position_error_px``: centroid distance to the truth's, where both show it;
- ``color_error``: RGB distance (0..1 per channel) of the tracked mean colors; ``size_error``:
  |area ratio - 1|; ``identity_kept``: shown with color error < ``COLOR_TOLERANCE`` and area
  within a factor 2, as a fraction of shown frames.

Over all future frames of every object: ``flicker_rate`` is the fraction of frame steps in which
truth stays shown (or stays hidden) but the prediction's object appears or disappears;
``visible_while_hidden`` and ``hidden_while_visible`` are the fractions of truth-hidden frames the
prediction shows the object in, and of truth-shown frames it lacks it; ``miss_rate`` and
``hallucination_rate`` as in ``tracking.count_detections``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from worldsim.evals.physics import run_tracked, score_tracked
from worldsim.evals.protocol import Predictor, Scenario
from worldsim.evals.results import mean_ignoring_nan
from worldsim.evals.tracking import Tracks, count_detections

SUITE = "permanence"
ENV_ID = "worldsim/Occlusion-v0"
CONTEXT, HORIZON = 8, 48  # defaults that contain most hide-and-return cycles of the scripted policy
MIN_HIDDEN = 2  # frames; a shorter gap is a sliver, not an occlusion
AFTER = 4  # frames scored once the object is whole again
WHOLE = 0.8  # an object is whole again at this fraction of its largest truth area
COLOR_TOLERANCE = 0.15
METRICS = (
    "reappearance_rate",
    "position_error_px",
    "color_error",
    "size_error",
    "identity_kept",
    "flicker_rate",
    "visible_while_hidden",
    "hidden_while_visible",
    "miss_rate",
    "hallucination_rate",
)


def truth_visibility(scenario: Scenario, truth: Tracks) -> tuple[np.ndarray, np.ndarray]:
    """(shown, hidden), each (T, K) bool over all frames; neither where truth is a tracker-invisible sliver."""
    visible = scenario.state["object_visible"].astype(bool)
    present = scenario.state["object_present"][0].astype(bool)
    return visible & truth.found & present, ~visible & present


def reappearances(shown: np.ndarray, hidden: np.ndarray, context: int) -> list[tuple[int, int]]:
    """(slot, r) for every object shown in the context, hidden >= MIN_HIDDEN frames, shown again at r >= context."""
    events = []
    for slot in range(shown.shape[1]):
        if not shown[:context, slot].any():
            continue
        seen, gap = False, 0
        for t in range(shown.shape[0]):
            if shown[t, slot]:
                if seen and gap >= MIN_HIDDEN and t >= context:
                    events.append((slot, t))
                    break
                seen, gap = True, 0
            elif hidden[t, slot] and seen:
                gap += 1
    return events


def scenario_metrics(scenario: Scenario, predicted: Tracks, truth: Tracks) -> dict[str, np.ndarray]:
    """(1,) arrays, NaN where the scenario has nothing to measure. ``truth`` covers all frames."""
    t0, horizon = scenario.context, scenario.horizon
    shown, hidden = truth_visibility(scenario, truth)
    future = slice(t0, t0 + horizon)
    reappeared, position, color, size, kept = [], [], [], [], []
    for slot, r in reappearances(shown, hidden, t0):
        # Score from when the object is whole again, not the sliver at the occluder's edge.
        whole = np.flatnonzero(
            shown[r : t0 + horizon, slot] & (truth.area[r : t0 + horizon, slot] >= WHOLE * truth.area[:, slot].max())
        )
        back = r + (int(whole[0]) if len(whole) else 0)
        reappeared.append(float(predicted.found[r - t0 : back + AFTER - t0, slot].any()))
        window = np.arange(back, min(back + AFTER, t0 + horizon))
        window = window[shown[window, slot]]
        found = predicted.found[window - t0, slot]
        for t in window[found]:
            p, q = t - t0, t
            position.append(float(np.linalg.norm(predicted.centroid[p, slot] - truth.centroid[q, slot])))
            color.append(float(np.linalg.norm(predicted.color[p, slot] - truth.color[q, slot])))
            ratio = predicted.area[p, slot] / truth.area[q, slot]
            size.append(abs(ratio - 1.0))
        for t in window:
            p, q = t - t0, t
            ok = predicted.found[p, slot]
            if ok:
                ratio = predicted.area[p, slot] / truth.area[q, slot]
                ok = (
                    np.linalg.norm(predicted.color[p, slot] - truth.color[q, slot]) < COLOR_TOLERANCE
                    and 0.5 <= ratio <= 2.0
                )
            kept.append(float(ok))

    # The step into the first future frame starts from the last context frame, where the
    # prediction shows what truth shows.
    pred_found = np.concatenate([truth.found[t0 - 1 : t0], predicted.found])  # (H + 1, K)
    truth_shown, truth_hidden = shown[t0 - 1 : t0 + horizon], hidden[t0 - 1 : t0 + horizon]
    steady = (truth_shown[1:] & truth_shown[:-1]) | (truth_hidden[1:] & truth_hidden[:-1])
    flips = pred_found[1:] != pred_found[:-1]
    counts = count_detections(predicted, _slice(truth, future), hidden[future])
    return {
        "reappearance_rate": np.array([mean_ignoring_nan(reappeared)]),
        "position_error_px": np.array([mean_ignoring_nan(position)]),
        "color_error": np.array([mean_ignoring_nan(color)]),
        "size_error": np.array([mean_ignoring_nan(size)]),
        "identity_kept": np.array([mean_ignoring_nan(kept)]),
        "flicker_rate": np.array([flips[steady].mean() if steady.any() else np.nan]),
        "visible_while_hidden": np.array([predicted.found[hidden[future]].mean() if hidden[future].any() else np.nan]),
        "hidden_while_visible": np.array([(~predicted.found[shown[future]]).mean() if shown[future].any() else np.nan]),
        "miss_rate": np.array([counts.miss_rate if counts.truth_objects else np.nan]),
        "hallucination_rate": np.array([counts.hallucination_rate if counts.predicted_objects else np.nan]),
    }


def _slice(tracks: Tracks, frames: slice) -> Tracks:
    return Tracks(**{name: getattr(tracks, name)[frames] for name in ("found", "centroid", "area", "color", "extra")})


def score_permanence(
    scenarios: Sequence[Scenario], predictions: np.ndarray, predictor: str, truth: Sequence[Tracks] | None = None
) -> list[dict[str, Any]]:
    """Metric rows of one predictor from its predictions (N, H, h, w, 3), one per scenario, per split."""
    return score_tracked(SUITE, METRICS, scenario_metrics, scenarios, predictions, predictor, truth)


def run_permanence(
    predictors: Sequence[Predictor], scenarios: Sequence[Scenario], batch_size: int = 32
) -> list[dict[str, Any]]:
    """Score every predictor on the same Occlusion scenarios."""
    return run_tracked(score_permanence, predictors, scenarios, batch_size)
