"""Action following: does the predicted world move the way the actions say?

Three worlds. Push and Orbit are measured from the last context frame (T0 - 1) to every future frame T0 + h, so
per-frame motion of about one pixel adds up to something a tracker can see:

- **Push**: the pusher (tracked slot 1, by color) moves ``sum(actions) * PUSHER_SPEED * dt`` on
  the table. That commanded displacement, projected through the true camera from the pusher's
  true position at T0 - 1, is compared with the pusher's tracked displacement in the predicted
  frames: ``push_accuracy`` (cosine > 0.5, i.e. within 60 degrees; steps whose commanded motion is
  under ``MIN_COMMANDED_PX`` are skipped; a prediction that loses the pusher is wrong),
  ``push_angle_deg`` and ``push_magnitude_error`` (|tracked| / |commanded| - 1, absolute).
- **Orbit**: the camera's yaw recovered from the last context frame and the predicted frame
  against the commanded yaw (``sum(actions[:, 0]) * YAW_STEP``): ``orbit_yaw_error_deg`` and
  ``orbit_yaw_sign_accuracy`` (recovered yaw has the commanded sign, for steps whose commanded yaw
  is at least one full step). Recovery: corners tracked between the two frames, then the yaw
  change whose orbit camera (true intrinsics, the target frame's true pitch and distance) gives
  the smallest median Sampson distance. A free 5-point essential matrix (``cv2.findEssentialMat``
  + ``recoverPose``) was tried first: at 64x64 with 10-40 corners and a 45 degree field of view
  it confuses small rotations with sideways translation, giving a median 11-21 degree rotation
  error on the simulator's own frames; the one-parameter orbit fit gives under 1 degree there.
  Frames whose corners do not move, or give too few matches, read as no rotation.

- **BlockWorld**, as Minecraft world models are scored (VPT, MineWorld): the shipped
  inverse-dynamics model (``worldsim/reference/blockworld_idm.pt``, trained on ground-truth frame
  pairs; ``worldsim.models.inverse_dynamics``) reads the action of every consecutive pair of frames,
  from the last context frame into the first predicted one on, and is scored per action group
  (``blockworld_{move,camera,jump,use}_accuracy``) against the effective action the scenario's
  ground truth gives: per step 1 read exactly, 0 not, no sample where the truth and the reading are
  both no-ops. Copying the last frame therefore scores 0; the truth's score is the IDM's own
  accuracy, the ceiling. Scenarios take the sticky policy the IDM was trained on: held random
  actions (every group acts) and scripted digging and building.

Truth frames give the reference: the same numbers on the simulator's own frames.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from worldsim.envs.base import PHYSICS_HZ
from worldsim.envs.camera import Camera, project
from worldsim.envs.orbit import LOOK_AT, YAW_STEP
from worldsim.envs.push import PUSHER, PUSHER_SPEED
from worldsim.evals.consistency import MIN_MATCHES, fundamental, intrinsics, match_keypoints, sampson_distance
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import metric_row
from worldsim.evals.tracking import track

if TYPE_CHECKING:
    from worldsim.models.inverse_dynamics import InverseDynamicsModel

SUITE = "action"
PUSH_ENV_ID = "worldsim/Push-v0"
ORBIT_ENV_ID = "worldsim/Orbit-v0"
BLOCKWORLD_ENV_ID = "worldsim/BlockWorld-v0"
MIN_COMMANDED_PX = 2.0  # shorter commanded displacements drown in centroid noise
COSINE_CORRECT = 0.5
STILL_PX = 0.5  # median match motion below this reads as a camera that did not move
MIN_YAW_ACTION = 1.0  # summed yaw actions (1 = one full 1/16 rad step) before the sign counts
MAX_YAW = 1.25  # rad; a 24-frame horizon at full yaw rate turns 1.5, scripted loops about 0.5
YAW_GRID = 1.0 / 32  # rad between coarse candidates; the fine grid is 8 times finer

METRICS = {
    "push_accuracy": "fraction of steps where the pusher's tracked displacement is within 60 deg of the commanded one (higher is better)",
    "push_angle_deg": "angle (deg) between tracked and commanded pusher displacement",
    "push_magnitude_error": "| |tracked| / |commanded| - 1 | of the pusher displacement",
    "orbit_yaw_error_deg": "|yaw recovered from frames - commanded yaw| (deg) of the orbiting camera",
    "orbit_yaw_sign_accuracy": "fraction of steps where the recovered yaw has the commanded sign (higher is better)",
    **{
        f"blockworld_{group}_accuracy": f"BlockWorld: the inverse-dynamics model reads the {what} the truth did, "
        "over steps where either did something (higher is better)"
        for group, what in (
            ("move", "move and strafe"),
            ("camera", "yaw and pitch turn"),
            ("jump", "jump"),
            ("use", "break or place"),
        )
    },
}
BLOCKWORLD_METRICS = [
    "blockworld_move_accuracy",
    "blockworld_camera_accuracy",
    "blockworld_jump_accuracy",
    "blockworld_use_accuracy",
]
HEADLINE = ["push_accuracy", "push_angle_deg", "orbit_yaw_error_deg", "orbit_yaw_sign_accuracy", *BLOCKWORLD_METRICS]
HIGHER_IS_BETTER = {"push_accuracy", "orbit_yaw_sign_accuracy", *BLOCKWORLD_METRICS}


def fit_yaw(
    frame_from: np.ndarray, frame_to: np.ndarray, pose_from: np.ndarray, pose_to: np.ndarray, k: np.ndarray
) -> float:
    """The yaw change (rad) that best explains the motion of tracked corners from one frame to the next.

    Candidate cameras orbit from ``pose_from`` (yaw, pitch, distance) by a yaw change in
    [-``MAX_YAW``, ``MAX_YAW``], with the pitch and distance of ``pose_to``; the one whose
    epipolar geometry gives the smallest median Sampson distance wins (a coarse grid, then a
    fine one around its best). Frames whose corners do not move, or give too few matches,
    read as no rotation (0).
    """
    points_from, points_to = match_keypoints(frame_from, frame_to)
    if len(points_from) < MIN_MATCHES or np.median(np.linalg.norm(points_to - points_from, axis=1)) < STILL_PX:
        return 0.0
    view_from = Camera.orbit(LOOK_AT, *pose_from).view()

    def best(candidates: np.ndarray) -> float:
        costs = []
        for yaw in candidates:
            f = fundamental(view_from, Camera.orbit(LOOK_AT, pose_from[0] + yaw, pose_to[1], pose_to[2]).view(), k)
            costs.append(np.inf if f is None else float(np.median(sampson_distance(f, points_from, points_to))))
        return float(candidates[int(np.argmin(costs))])

    coarse = best(np.arange(-MAX_YAW, MAX_YAW + 1e-9, YAW_GRID))
    return best(coarse + np.arange(-YAW_GRID, YAW_GRID + 1e-9, YAW_GRID / 8))


# ----------------------------------------------------------------- per scenario


def push_metrics(scenario: Scenario, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step (H,) accuracy, angle and magnitude error of the pusher; NaN where a step is skipped."""
    t0, horizon = scenario.context, scenario.horizon
    state = scenario.state
    height, width = scenario.frames.shape[1:3]
    frame_skip = int(scenario.env_kwargs.get("frame_skip", 8))
    step_m = PUSHER_SPEED * frame_skip / PHYSICS_HZ
    view_projection = state["camera_projection"][t0 - 1].astype(np.float64) @ state["camera_view"][t0 - 1].astype(
        np.float64
    )
    start_world = state["object_position"][t0 - 1, PUSHER].astype(np.float64)
    moved = np.cumsum(scenario.actions[t0 - 1 :].astype(np.float64), axis=0) * step_m  # (H, 2)
    ends = start_world + np.c_[moved, np.zeros(horizon)]
    pixels = project(np.vstack([start_world, ends]), view_projection, width, height)
    commanded = pixels[1:] - pixels[0]  # (H, 2)

    color = state["object_color"][0, PUSHER][None]
    start = track(scenario.frames[t0 - 1 : t0], color).centroid[0, 0]
    tracked = track(predicted, color)
    out = {name: np.full(horizon, np.nan) for name in ("push_accuracy", "push_angle_deg", "push_magnitude_error")}
    for h in range(horizon):
        length = np.linalg.norm(commanded[h])
        if length < MIN_COMMANDED_PX or not np.all(np.isfinite(start)):
            continue
        if not tracked.found[h, 0]:
            out["push_accuracy"][h] = 0.0
            continue
        displacement = tracked.centroid[h, 0] - start
        norm = np.linalg.norm(displacement)
        cosine = float(displacement @ commanded[h]) / (norm * length) if norm > 0 else 0.0
        out["push_accuracy"][h] = float(cosine > COSINE_CORRECT)
        out["push_angle_deg"][h] = math.degrees(math.acos(np.clip(cosine, -1.0, 1.0)))
        out["push_magnitude_error"][h] = abs(norm / length - 1.0)
    return out


def orbit_metrics(scenario: Scenario, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step (H,) yaw error (deg) and yaw-sign correctness of the camera; NaN where skipped."""
    t0, horizon = scenario.context, scenario.horizon
    poses = scenario.state["camera_pose"].astype(np.float64)
    height, width = scenario.frames.shape[1:3]
    k = intrinsics(scenario.state["camera_projection"][0], width, height)
    yaw_commanded = np.cumsum(scenario.actions[t0 - 1 :, 0].astype(np.float64))  # (H,) in steps
    out = {name: np.full(horizon, np.nan) for name in ("orbit_yaw_error_deg", "orbit_yaw_sign_accuracy")}
    for h in range(horizon):
        turned = fit_yaw(scenario.frames[t0 - 1], predicted[h], poses[t0 - 1], poses[t0 + h], k)
        out["orbit_yaw_error_deg"][h] = math.degrees(abs(turned - yaw_commanded[h] * YAW_STEP))
        if abs(yaw_commanded[h]) >= MIN_YAW_ACTION:
            out["orbit_yaw_sign_accuracy"][h] = float(np.sign(turned) == np.sign(yaw_commanded[h]))
    return out


@functools.lru_cache(maxsize=1)
def blockworld_idm() -> InverseDynamicsModel:
    """The shipped BlockWorld inverse-dynamics model, loaded once per process."""
    from worldsim.checkpoint import load_inverse_dynamics
    from worldsim.references import reference_idm

    return load_inverse_dynamics(reference_idm("blockworld"))


def blockworld_metrics(scenario: Scenario, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step (H,) IDM hits per action group on (previous frame, predicted frame); NaN where both are no-ops."""
    from worldsim.models.inverse_dynamics import effective_actions, group_hits

    t0 = scenario.context
    frames = np.concatenate([scenario.frames[t0 - 1 : t0], predicted])  # (H + 1, h, w, 3)
    state = {key: value[t0 - 1 :] for key, value in scenario.state.items()}
    labels = effective_actions(state, scenario.frames[t0 - 1 :])  # (H, components), from the truth
    hits = group_hits(blockworld_idm().read(frames[:-1], frames[1:]), labels)
    return {f"blockworld_{group}_accuracy": values for group, values in hits.items()}


def score_action_following(scenarios: list[Scenario], predictions: np.ndarray, predictor: str) -> list[dict[str, Any]]:
    """Metric rows of one predictor on Push, Orbit and/or BlockWorld scenarios (per horizon step and overall)."""
    if len(predictions) != len(scenarios):
        raise ValueError(f"{len(predictions)} predictions for {len(scenarios)} scenarios: pass one per scenario")
    measures = {PUSH_ENV_ID: push_metrics, ORBIT_ENV_ID: orbit_metrics, BLOCKWORLD_ENV_ID: blockworld_metrics}
    per_scenario = []
    for scenario, predicted in zip(scenarios, predictions):
        if scenario.env_id not in measures:
            raise ValueError(f"action following measures {sorted(measures)}, not {scenario.env_id!r}")
        per_scenario.append((scenario.split, measures[scenario.env_id](scenario, predicted)))
    rows = []
    for split in sorted({split for split, _ in per_scenario}):
        for metric in METRICS:
            picked = [m[metric] for s, m in per_scenario if s == split and metric in m]
            if not picked:
                continue
            values = np.stack(picked)  # (N, H)
            with np.errstate(all="ignore"):
                overall = [np.nanmean(v) if np.any(~np.isnan(v)) else np.nan for v in values]
            rows.append(metric_row(SUITE, split, predictor, metric, overall))
            rows += [
                metric_row(SUITE, split, predictor, metric, values[:, h], horizon=h + 1) for h in range(values.shape[1])
            ]
    return rows
