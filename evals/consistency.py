"""3D consistency: does a predictor render one rigid, still scene as the camera moves (Orbit)?

Metrics (per predictor, over the future frames of Orbit scenarios):

- ``psnr_db`` / ``ssim``: against the true frames, per horizon step and overall. Identical frames
  score the cap, ``metrics.MAX_PSNR_DB`` (100 dB), so one perfect frame cannot make a mean
  infinite.
- ``loop_closure_mae``: the scripted loops return the camera to an earlier pose exactly; at each
  such return, the mean absolute pixel difference (0-255) between the predicted return frame and
  the true departure frame (which equals the true return frame). ``loop_self_mae`` compares the
  return with the *predicted* departure instead (self-consistency; a still image scores 0 there,
  so it is reported, not a headline).
- ``sampson_px``: keypoints tracked from the last context frame to each predicted frame (KLT on
  4x upscaled frames, forward-backward checked), scored by the Sampson distance (first-order
  geometric distance to the epipolar line, pixels) under the **true** relative camera pose.
  ``sampson_floor_px`` is the same on the true frames: the matching noise floor. Caveat: the
  constraint is one-dimensional; an orbit moves points along near-horizontal epipolar lines, so a
  frozen frame is only mildly off them. Read it beside PSNR and loop closure.
- ``matches_kept``: matches found in the prediction over matches found in the truth (at most 1):
  a blurred prediction has no corners, so its Sampson error is measured on few points.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from worldsim import metrics
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import summary_rows

SUITE = "consistency"
ENV_ID = "worldsim/Orbit-v0"
UPSCALE = 4  # 64x64 frames have too few pixels per corner for the detector and tracker
MIN_MATCHES = 8  # fewer matches than this make a pair's epipolar error meaningless
FB_TOLERANCE_PX = 0.25  # forward-backward tracking disagreement allowed, in original pixels
MIN_BASELINE = 1e-6  # m; views closer than this share one pose and have no epipolar geometry
#: Swaps OpenGL camera axes (x right, y up, looking down -z) for OpenCV's (x right, y down, +z).
GL_TO_CV = np.diag([1.0, -1.0, -1.0])

METRICS = {
    "psnr_db": "PSNR of predicted vs true frames, dB (higher is better; frames capped at 100 dB)",
    "ssim": "SSIM of predicted vs true frames, Gaussian window 11 / sigma 1.5 (higher is better)",
    "loop_closure_mae": "mean |pixel difference| (0-255) between the predicted frame where the camera returns to an earlier pose and the true frame there",
    "loop_self_mae": "the same against the predicted departure frame (self-consistency; a frozen image scores 0)",
    "sampson_px": "Sampson distance (px) of keypoints matched last-context -> predicted frame under the true relative camera pose",
    "sampson_floor_px": "the same on the true frames: the matching noise floor",
    "matches_kept": "keypoint matches in the prediction / matches in the truth, at most 1",
}
HEADLINE = ["psnr_db", "ssim", "loop_closure_mae", "sampson_px"]
HIGHER_IS_BETTER = {"psnr_db", "ssim", "matches_kept"}


# ----------------------------------------------------------------- camera geometry


def intrinsics(projection: np.ndarray, width: int, height: int) -> np.ndarray:
    """OpenCV K (3, 3) of an OpenGL projection, in the pixel convention of ``envs.camera.project``."""
    p = np.asarray(projection, np.float64)
    return np.array(
        [
            [width / 2 * p[0, 0], 0.0, width / 2 * (1 - p[0, 2])],
            [0.0, height / 2 * p[1, 1], height / 2 * (1 + p[1, 2]) - 1.0],  # TinyRenderer's row offset
            [0.0, 0.0, 1.0],
        ]
    )


def relative_pose(view_from: np.ndarray, view_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, t) taking OpenCV camera coordinates of view ``from`` to those of view ``to``."""
    a, b = np.asarray(view_from, np.float64), np.asarray(view_to, np.float64)
    r1, t1 = GL_TO_CV @ a[:3, :3], GL_TO_CV @ a[:3, 3]
    r2, t2 = GL_TO_CV @ b[:3, :3], GL_TO_CV @ b[:3, 3]
    rotation = r2 @ r1.T
    return rotation, t2 - rotation @ t1


def skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def fundamental(view_from: np.ndarray, view_to: np.ndarray, k: np.ndarray) -> np.ndarray | None:
    """F with ``x_to^T F x_from = 0`` for pixels of one 3D point; None when the views share a center."""
    rotation, translation = relative_pose(view_from, view_to)
    if np.linalg.norm(translation) < MIN_BASELINE:
        return None
    k_inv = np.linalg.inv(k)
    return k_inv.T @ skew(translation) @ rotation @ k_inv


def sampson_distance(f: np.ndarray, points_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """Sampson distance (pixels; the square root of the first-order squared error) of (N, 2) matches."""
    x1 = np.c_[points_from, np.ones(len(points_from))]
    x2 = np.c_[points_to, np.ones(len(points_to))]
    f_x1, ft_x2 = x1 @ f.T, x2 @ f  # (N, 3) epipolar lines in each image
    algebraic = np.sum(x2 * f_x1, axis=1)
    gradient = f_x1[:, 0] ** 2 + f_x1[:, 1] ** 2 + ft_x2[:, 0] ** 2 + ft_x2[:, 1] ** 2
    return np.abs(algebraic) / np.sqrt(np.maximum(gradient, 1e-300))


# ----------------------------------------------------------------- keypoint matching


def _gray_upscaled(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    big = cv2.resize(frame, (width * UPSCALE, height * UPSCALE), interpolation=cv2.INTER_CUBIC)
    return cv2.cvtColor(big, cv2.COLOR_RGB2GRAY)


def match_keypoints(frame_from: np.ndarray, frame_to: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Corners of ``frame_from`` tracked into ``frame_to``: two (N, 2) arrays of (column, row) pixels.

    Shi-Tomasi corners and pyramidal Lucas-Kanade on 4x upscaled frames; a track is kept only if
    tracking back lands within ``FB_TOLERANCE_PX`` of where it started. On 64x64 renders this
    finds 20-40 matches between neighbouring views and gives sub-pixel epipolar error on truth;
    ORB/SIFT descriptors matched with a ratio test found fewer, noisier matches here.
    """
    a, b = _gray_upscaled(frame_from), _gray_upscaled(frame_to)
    corners = cv2.goodFeaturesToTrack(a, maxCorners=200, qualityLevel=0.01, minDistance=2 * UPSCALE, blockSize=7)
    if corners is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    lk = {"winSize": (31, 31), "maxLevel": 3}
    forward, found, _ = cv2.calcOpticalFlowPyrLK(a, b, corners, None, **lk)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(b, a, forward, None, **lk)
    disagreement = np.linalg.norm((back - corners).reshape(-1, 2), axis=1)
    keep = (found.ravel() == 1) & (found_back.ravel() == 1) & (disagreement < FB_TOLERANCE_PX * UPSCALE)

    def original(points: np.ndarray) -> np.ndarray:  # cv2.resize aligns pixel centers
        return (points.reshape(-1, 2)[keep].astype(np.float64) + 0.5) / UPSCALE - 0.5

    return original(corners), original(forward)


def epipolar_error(frame_from: np.ndarray, frame_to: np.ndarray, f: np.ndarray | None) -> tuple[float, int]:
    """(mean Sampson distance, match count) of one view pair; NaN when F or the matches are missing."""
    points_from, points_to = match_keypoints(frame_from, frame_to)
    if f is None or len(points_from) < MIN_MATCHES:
        return math.nan, len(points_from)
    return float(sampson_distance(f, points_from, points_to).mean()), len(points_from)


# ----------------------------------------------------------------- loops


def loop_returns(poses: np.ndarray, first: int, latest: bool = False) -> list[tuple[int, int]]:
    """(departure, return) frame pairs with identical camera pose and a different pose between.

    ``poses`` is (T, 3); only returns at frames >= ``first`` are listed, each with its earliest
    departure, or with ``latest`` its latest one: the last time the view was seen, which is what
    the memory suite times. Orbit's loops are exact in float64, so "identical" means equal float32 poses.
    """
    pairs = []
    for j in range(first, len(poses)):
        for i in reversed(range(j - 1)) if latest else range(j - 1):
            if np.array_equal(poses[i], poses[j]) and np.any(np.any(poses[i + 1 : j] != poses[j], axis=1)):
                pairs.append((i, j))
                break
    return pairs


# ----------------------------------------------------------------- the suite


def scenario_metrics(scenario: Scenario, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Per-step values (H,) of every metric for one scenario, NaN where a step has none.

    ``loop_*`` are per scenario, stored at index 0 of an (1,) array.
    """
    t0, horizon = scenario.context, scenario.horizon
    truth = scenario.future_frames
    height, width = truth.shape[1:3]
    views = scenario.state["camera_view"]
    k = intrinsics(scenario.state["camera_projection"][0], width, height)
    anchor = scenario.frames[t0 - 1]
    out = {
        name: np.full(horizon, np.nan) for name in ("psnr_db", "ssim", "sampson_px", "sampson_floor_px", "matches_kept")
    }
    for h in range(horizon):
        out["psnr_db"][h] = metrics.pooled_psnr(predicted[h], truth[h])  # one frame: its PSNR
        out["ssim"][h] = metrics.ssim(predicted[h], truth[h])
        f = fundamental(views[t0 - 1], views[t0 + h], k)
        out["sampson_px"][h], found = epipolar_error(anchor, predicted[h], f)
        out["sampson_floor_px"][h], expected = epipolar_error(anchor, truth[h], f)
        if expected >= MIN_MATCHES:
            out["matches_kept"][h] = min(found / expected, 1.0)
    frames = np.concatenate([scenario.context_frames, predicted]).astype(np.float64)
    closure, self_closure = [], []
    for i, j in loop_returns(scenario.state["camera_pose"], first=t0):
        closure.append(np.abs(frames[j] - scenario.frames[i]).mean())
        self_closure.append(np.abs(frames[j] - frames[i]).mean())
    out["loop_closure_mae"] = np.array([np.mean(closure) if closure else np.nan])
    out["loop_self_mae"] = np.array([np.mean(self_closure) if self_closure else np.nan])
    return out


def score_consistency(scenarios: list[Scenario], predictions: np.ndarray, predictor: str) -> list[dict[str, Any]]:
    """Metric rows of one predictor: per horizon step and overall (horizon None) for each split.

    ``predictions`` is uint8 (N, H, height, width, 3), one entry per scenario, same order.
    """
    if len(predictions) != len(scenarios):
        raise ValueError(f"{len(predictions)} predictions for {len(scenarios)} scenarios: pass one per scenario")
    per_scenario = [scenario_metrics(s, p) for s, p in zip(scenarios, predictions)]
    return summary_rows(SUITE, scenarios, per_scenario, predictor, METRICS)
