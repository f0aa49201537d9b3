"""Physics plausibility: objects tracked in predicted frames against the simulator's trajectories.

Every metric compares the tracks of the prediction with the tracks of the truth frames made by
the same color tracker (``tracking.py``), so the simulator scores exactly zero and a metric only
moves when the pictures differ. The truth's *state* (3D positions, velocities) decides what is
measured: which steps are free fall, which objects bounce, how many meters a pixel is.

Metrics (per scenario first, then mean and 95% interval over scenarios; ``n`` = scenarios):

- ``position_error_px`` / ``position_error_m``: centroid distance per horizon step (and mean,
  horizon None); meters through the GT camera at the object's depth (pixel size = depth / focal);
- ``velocity_error_px``: distance of frame-to-frame centroid displacements (px/frame); the
  step into the first future frame starts from the last context frame;
- ``gravity_fit_ms2`` and ``gravity_error_ms2``: the tracked row of each object over the truth's
  free-fall steps, mapped to height on the vertical line through its true x, y by the GT
  camera, fitted with a parabola; truth fits about 9.6, not 9.81, because PyBullet's default
  linear damping slows every fall a little;
- ``bounce_timing_error`` (frames) and ``bounce_detected``: first fall-then-rise of the tracked
  row, for objects the truth shows bouncing; a prediction that never bounces counts as bouncing
  one frame after the horizon;
- ``interpenetration_px``: how much closer two objects' centroids come than their (truth)
  radii allow, beyond the truth's own overlap, for pairs at the same depth;
  ``ground_penetration_m``: how far an object's tracked center sinks below its lowest resting
  height (its size above z = 0), beyond what the truth's own tracks show;
- ``size_error``: |tracked area / truth area - 1|;
- ``miss_rate`` / ``hallucination_rate``: see ``tracking.count_detections``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from worldsim.envs.base import PHYSICS_HZ
from worldsim.evals.protocol import Predictor, Scenario
from worldsim.evals.results import mean_ignoring_nan, summary_rows
from worldsim.evals.scenarios import predict_scenarios
from worldsim.evals.tracking import Tracks, count_detections, track_scenario_frames

SUITE = "physics"
GRAVITY = 9.81  # m/s^2, what every world sets
#: A step is free fall when the truth's vertical velocity changes by gravity within this fraction.
FREE_FALL_TOLERANCE = 0.1
MIN_FREE_FALL_FRAMES = 5  # fewer points make a parabola's curvature noise
BOUNCE_MIN_SPEED = 0.3  # m/s up after the contact for truth to count a bounce
REVERSAL_PX = 0.3  # px/frame of row motion that counts as falling or rising
MIN_SIZE_AREA = 6  # px; smaller truth areas are slivers whose ratio means nothing
PER_STEP = ("position_error_px", "position_error_m")
METRICS = (
    "position_error_px",
    "position_error_m",
    "velocity_error_px",
    "gravity_fit_ms2",
    "gravity_error_ms2",
    "bounce_timing_error",
    "bounce_detected",
    "interpenetration_px",
    "ground_penetration_m",
    "size_error",
    "miss_rate",
    "hallucination_rate",
)


def frame_dt(scenario: Scenario) -> float:
    """Seconds between frames of ``scenario``'s world."""
    return int(scenario.env_kwargs.get("frame_skip", 8)) / PHYSICS_HZ


def camera_depth(view: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance along the viewing axis (m) of world points (..., 3) for view matrices (..., 4, 4)."""
    camera = np.einsum("...ij,...j->...i", view[..., :3, :3], points) + view[..., :3, 3]
    return -camera[..., 2]  # the camera looks down its -z axis


def rows_per_vertical_meter(scenario: Scenario, t: np.ndarray, slot: int) -> np.ndarray:
    """d(row)/dz (px per m, negative: up is a smaller row) at the truth position, frames ``t``."""
    p = scenario.state["object_position"][t, slot].astype(np.float64)  # (n, 3)
    step = 1e-3
    high = height_to_row(scenario, t, slot, p[:, 2] + step)
    low = height_to_row(scenario, t, slot, p[:, 2] - step)
    return (high - low) / (2 * step)


def _vertical_line(scenario: Scenario, t: np.ndarray, slot: int) -> tuple[np.ndarray, ...]:
    """clip y and w on the vertical line through the truth x, y: (y_z, y_0, w_z, w_0), each (n,)."""
    state = scenario.state
    vp = state["camera_projection"][t].astype(np.float64) @ state["camera_view"][t].astype(np.float64)
    p = state["object_position"][t, slot].astype(np.float64)
    rest = lambda r: vp[:, r, 0] * p[:, 0] + vp[:, r, 1] * p[:, 1] + vp[:, r, 3]  # noqa: E731
    return vp[:, 1, 2], rest(1), vp[:, 3, 2], rest(3)


def height_to_row(scenario: Scenario, t: np.ndarray, slot: int, z: np.ndarray) -> np.ndarray:
    """Pixel row of the point at height ``z`` above the truth's x, y in frames ``t``."""
    y_z, y_0, w_z, w_0 = _vertical_line(scenario, t, slot)
    height = scenario.frames.shape[1]
    return (1 - (y_z * z + y_0) / (w_z * z + w_0)) * (height / 2) - 1.0


def row_to_height(scenario: Scenario, t: np.ndarray, slot: int, rows: np.ndarray) -> np.ndarray:
    """Height (m) on the vertical line through the truth's x, y that projects to ``rows``.

    Exact inverse of the perspective projection restricted to that line, so a fall keeps its
    parabola in meters although pixels per meter change along it (by 20% over a Physics drop).
    """
    y_z, y_0, w_z, w_0 = _vertical_line(scenario, t, slot)
    ndc = 1 - (np.asarray(rows, np.float64) + 1.0) * 2 / scenario.frames.shape[1]
    return (y_0 - ndc * w_0) / (ndc * w_z - y_z)


def ground_rows(scenario: Scenario, slot: int) -> np.ndarray:
    """Row (T,) of the object's center resting on z = 0 at its true x, y: center height = size."""
    t = np.arange(len(scenario.frames))
    return height_to_row(scenario, t, slot, np.full(len(t), float(scenario.state["object_size"][0, slot])))


def first_reversal(rows: np.ndarray) -> int | None:
    """Index of the first step (into ``np.diff(rows)``) that rises after an earlier fall, or None."""
    velocity = np.diff(rows)
    fell = False
    for i, v in enumerate(velocity):
        if np.isnan(v):
            continue
        if v > REVERSAL_PX:
            fell = True
        elif fell and v < -REVERSAL_PX:
            return i
    return None


def free_fall_run(scenario: Scenario, slot: int, first: int) -> np.ndarray | None:
    """Frames (>= ``first``) of the longest run in which truth falls freely, or None if too short."""
    vz = scenario.state["object_linear_velocity"][:, slot, 2].astype(np.float64)
    g_step = GRAVITY * frame_dt(scenario)
    ballistic = np.abs(np.diff(vz) + g_step) < FREE_FALL_TOLERANCE * g_step  # step t -> t + 1
    best: tuple[int, int] = (0, 0)
    start = None
    for t in range(first, len(ballistic) + 1):
        if t < len(ballistic) and ballistic[t]:
            start = t if start is None else start
        elif start is not None:
            best = max(best, (t - start, start))
            start = None
    steps, start = best
    if steps + 1 < MIN_FREE_FALL_FRAMES:
        return None
    return np.arange(start, start + steps + 1)


def fitted_gravity(heights: np.ndarray, frames: np.ndarray, dt: float) -> float:
    """Downward acceleration (m/s^2) of a parabola through ``heights`` (m) at ``frames``; NaN if any is missing."""
    if np.isnan(heights).any():
        return np.nan
    curvature = np.polyfit(frames - frames[0], heights, 2)[0]
    return float(-2 * curvature / dt**2)


def _max(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.max()) if finite.size else 0.0


def scenario_metrics(scenario: Scenario, predicted: Tracks, truth: Tracks) -> dict[str, np.ndarray]:
    """Per-step (H,) arrays for ``PER_STEP`` metrics, (1,) arrays for the rest; NaN = nothing to measure.

    ``truth`` tracks cover all T0 + H frames, ``predicted`` the H future ones.
    """
    t0, horizon = scenario.context, scenario.horizon
    state = scenario.state
    slots = np.flatnonzero(state["object_present"][0])
    future = np.arange(t0, t0 + horizon)
    height = scenario.frames.shape[1]
    focal = state["camera_projection"][future, 1, 1].astype(np.float64) * height / 2  # (H,) px
    dt = frame_dt(scenario)
    # Tracks of the prediction with the last context frame in front, so steps start from what it saw.
    joined = {
        name: np.concatenate([getattr(truth, name)[t0 - 1 : t0], getattr(predicted, name)])
        for name in ("found", "centroid")
    }
    truth_future = truth.centroid[t0 - 1 :]

    px, meters = np.full((horizon, len(slots)), np.nan), np.full((horizon, len(slots)), np.nan)
    velocity, gravity_fit, gravity_error, bounce_error, bounce_found, sink, size = [], [], [], [], [], [], []
    for j, slot in enumerate(slots):
        both = truth.found[future, slot] & predicted.found[:, slot]
        error = np.linalg.norm(predicted.centroid[:, slot] - truth.centroid[future, slot], axis=-1)
        depth = camera_depth(
            state["camera_view"][future].astype(np.float64), state["object_position"][future, slot].astype(np.float64)
        )
        px[both, j] = error[both]
        meters[both, j] = (error * depth / focal)[both]

        steps_truth = np.diff(truth_future[:, slot], axis=0)
        steps_pred = np.diff(joined["centroid"][:, slot], axis=0)
        defined = ~np.isnan(steps_truth).any(-1) & ~np.isnan(steps_pred).any(-1)
        velocity += list(np.linalg.norm(steps_pred - steps_truth, axis=-1)[defined])

        run = free_fall_run(scenario, slot, first=t0 - 1)
        if run is not None and truth.found[run, slot].all():
            truth_g = fitted_gravity(row_to_height(scenario, run, slot, truth.centroid[run, slot, 1]), run, dt)
            pred_rows = joined["centroid"][run - (t0 - 1), slot, 1]
            pred_g = fitted_gravity(row_to_height(scenario, run, slot, pred_rows), run, dt)
            gravity_fit.append(pred_g)
            gravity_error.append(abs(pred_g - truth_g) if not np.isnan(pred_g) else np.nan)

        vz = state["object_linear_velocity"][t0 - 1 :, slot, 2]
        bounces = np.any((vz[:-1] < -BOUNCE_MIN_SPEED) & (vz[1:] > BOUNCE_MIN_SPEED))
        truth_bounce = first_reversal(truth_future[:, slot, 1]) if bounces else None
        if truth_bounce is not None:
            pred_bounce = first_reversal(joined["centroid"][:, slot, 1])
            bounce_found.append(float(pred_bounce is not None))
            bounce_error.append(abs((horizon if pred_bounce is None else pred_bounce) - truth_bounce))

        rest = ground_rows(scenario, slot)[future]
        allowance = max(0.0, _max(truth.centroid[future, slot, 1] - rest))
        below = predicted.centroid[:, slot, 1] - rest - allowance
        per_meter = np.abs(rows_per_vertical_meter(scenario, future, slot))
        sink += list(np.maximum(below, 0.0)[~np.isnan(below)] / per_meter[~np.isnan(below)])

        whole = both & (truth.area[future, slot] >= MIN_SIZE_AREA)
        size += list(np.abs(predicted.area[whole, slot] / truth.area[future][whole, slot] - 1.0))

    counts = count_detections(
        predicted, Tracks(**{n: getattr(truth, n)[future] for n in ("found", "centroid", "area", "color", "extra")})
    )
    return {
        "position_error_px": np.array([mean_ignoring_nan(step) for step in px]),
        "position_error_m": np.array([mean_ignoring_nan(step) for step in meters]),
        "velocity_error_px": np.array([mean_ignoring_nan(velocity)]),
        "gravity_fit_ms2": np.array([mean_ignoring_nan(gravity_fit)]),
        "gravity_error_ms2": np.array([mean_ignoring_nan(gravity_error)]),
        "bounce_timing_error": np.array([mean_ignoring_nan(bounce_error)]),
        "bounce_detected": np.array([mean_ignoring_nan(bounce_found)]),
        "interpenetration_px": np.array([interpenetration(scenario, predicted, truth)]),
        "ground_penetration_m": np.array([mean_ignoring_nan(sink)]),
        "size_error": np.array([mean_ignoring_nan(size)]),
        "miss_rate": np.array([counts.miss_rate if counts.truth_objects else np.nan]),
        "hallucination_rate": np.array([counts.hallucination_rate if counts.predicted_objects else np.nan]),
    }


def interpenetration(scenario: Scenario, predicted: Tracks, truth: Tracks) -> float:
    """Mean px by which object pairs at the same depth overlap in the prediction beyond the truth.

    Radii are the truth's largest area as a disk, the same for truth and prediction, so the
    metric looks only at where the centers are. NaN when no pair shares a depth.
    """
    horizon = scenario.horizon
    state, future = scenario.state, np.arange(scenario.context, scenario.context + horizon)
    slots = np.flatnonzero(state["object_present"][0])
    radius = np.sqrt(truth.area.max(axis=0) / np.pi)  # (K,)
    depth = camera_depth(
        state["camera_view"][future, None].astype(np.float64), state["object_position"][future].astype(np.float64)
    )
    excess = []
    for a in slots:
        for b in slots[slots > a]:
            size = state["object_size"][0, a] + state["object_size"][0, b]
            close = np.abs(depth[:, a] - depth[:, b]) < size  # (H,)
            overlap = {}
            for name, tracks, frames in (("truth", truth, future), ("pred", predicted, np.arange(horizon))):
                gap = np.linalg.norm(tracks.centroid[frames, a] - tracks.centroid[frames, b], axis=-1)
                overlap[name] = np.maximum(radius[a] + radius[b] - gap, 0.0)
            extra = np.maximum(overlap["pred"] - overlap["truth"], 0.0)
            excess += list(extra[close & ~np.isnan(extra)])
    return mean_ignoring_nan(excess)


def truth_tracks(scenarios: Sequence[Scenario]) -> list[Tracks]:
    """Tracks of every scenario's frames (all T0 + H), computed once per suite run."""
    return [predicted_tracks(s, s.frames) for s in scenarios]


def predicted_tracks(scenario: Scenario, frames: np.ndarray) -> Tracks:
    """Tracks of the scenario's objects (their first-frame colors) in ``frames``."""
    return track_scenario_frames(frames, scenario.state["object_color"][0], scenario.state["object_present"][0])


def score_tracked(
    suite: str,
    metrics: Sequence[str],
    scenario_metrics: Callable[[Scenario, Tracks, Tracks], dict[str, np.ndarray]],
    scenarios: Sequence[Scenario],
    predictions: np.ndarray,
    predictor: str,
    truth: Sequence[Tracks] | None = None,
) -> list[dict[str, Any]]:
    """Rows of a suite that compares object tracks in predictions (N, H, h, w, 3) with the truth's.

    ``scenario_metrics(scenario, predicted, truth)`` gives one scenario's samples per metric;
    ``truth``: the tracks of each scenario's frames (``truth_tracks``), to reuse across predictors.
    """
    if len(predictions) != len(scenarios):
        raise ValueError(f"{len(predictions)} predictions for {len(scenarios)} scenarios: pass one per scenario")
    truth = truth_tracks(scenarios) if truth is None else truth
    per_scenario = [
        scenario_metrics(s, predicted_tracks(s, frames), t) for s, frames, t in zip(scenarios, predictions, truth)
    ]
    return summary_rows(suite, scenarios, per_scenario, predictor, metrics)


def score_physics(
    scenarios: Sequence[Scenario], predictions: np.ndarray, predictor: str, truth: Sequence[Tracks] | None = None
) -> list[dict[str, Any]]:
    """Metric rows of one predictor from its predictions (N, H, h, w, 3), one per scenario, per split."""
    return score_tracked(SUITE, METRICS, scenario_metrics, scenarios, predictions, predictor, truth)


def run_tracked(
    score: Callable[..., list[dict[str, Any]]],
    predictors: Sequence[Predictor],
    scenarios: Sequence[Scenario],
    batch_size: int = 32,
) -> list[dict[str, Any]]:
    """Score every predictor on the same scenarios, tracking the truth frames once."""
    rows, truth = [], truth_tracks(scenarios)
    for predictor in predictors:
        predictions = predict_scenarios(predictor, list(scenarios), batch_size)
        rows += score(scenarios, predictions, predictor.name, truth)
    return rows


def run_physics(
    predictors: Sequence[Predictor], scenarios: Sequence[Scenario], batch_size: int = 32
) -> list[dict[str, Any]]:
    """Score every predictor on the same scenarios (ID and OOD rows come from each scenario's split)."""
    return run_tracked(score_physics, predictors, scenarios, batch_size)
