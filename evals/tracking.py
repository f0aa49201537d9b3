"""Find each known object in RGB frames by its color: OpenCV hue segmentation + connected components.

The worlds paint every object one saturated palette color on gray scenery, and their lighting
scales a color's brightness but keeps its hue and saturation (measured: hue within 0.5 degrees,
saturation within 0.01 on every rendered object pixel). So a pixel belongs to object ``k`` when
it is saturated, not too dark, and its hue is nearer to object ``k``'s hue than to any other
object of the scene and within ``max_hue_distance``. Blurry predictions mix an object with the
gray around it, which lowers saturation but keeps hue, so ``min_saturation`` decides how much of
a blurred edge counts as the object (about half of the mix at 0.4).

Suites compare the tracks of a prediction with the tracks of the truth frames made by this same
tracker, so its small bias (a box's silhouette centroid is not exactly its projected center)
cancels and the simulator's own frames score exactly zero error.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class TrackerConfig:
    """Thresholds of the color tracker, tuned on ground-truth frames of all four worlds."""

    max_hue_distance: float = 12.0  # degrees; the closest palette pair (orange, yellow) is 23 apart
    min_saturation: float = 0.4  # object pixels render at 0.83..0.96, scenery at 0
    min_value: float = 0.15  # darker pixels have unreliable hue
    min_area: int = 2  # pixels; smaller blobs are noise
    merge_radius: float = 1.5  # blobs within this many object diameters of the largest are the same object


@dataclass
class Tracks:
    """Per frame and object slot what the tracker saw. T frames, K slots.

    ``found`` (T, K) bool; ``centroid`` (T, K, 2) float64 (x = column, y = row, pixel centers at
    integers, NaN where not found); ``area`` (T, K) int pixels; ``color`` (T, K, 3) mean RGB in
    0..1 (NaN where not found); ``extra`` (T, K) int blobs of the slot's color too far from the
    object to be part of it (duplicates a prediction invented).
    """

    found: np.ndarray
    centroid: np.ndarray
    area: np.ndarray
    color: np.ndarray
    extra: np.ndarray


def palette_hues(colors: np.ndarray) -> np.ndarray:
    """RGB colors (K, 3) in 0..1 -> hue in degrees (K,) and saturation (K,) as OpenCV computes them."""
    hsv = cv2.cvtColor(np.asarray(colors, np.float32).reshape(1, -1, 3), cv2.COLOR_RGB2HSV)[0]
    return hsv[:, 0].astype(np.float64), hsv[:, 1].astype(np.float64)


def label_pixels(frames: np.ndarray, colors: np.ndarray, config: TrackerConfig = TrackerConfig()) -> np.ndarray:
    """Frames (T, h, w, 3) uint8 -> labels (T, h, w) int16: k + 1 where a pixel has color k, else 0.

    ``colors`` (K, 3) in 0..1 are the scene's object colors; all must be saturated.
    """
    colors = np.asarray(colors, np.float64).reshape(-1, 3)
    hues, saturations = palette_hues(colors)
    dull = np.flatnonzero(saturations < config.min_saturation + 0.2)
    if len(dull):
        raise ValueError(
            f"object colors {colors[dull].round(3).tolist()} have saturation {saturations[dull].round(2).tolist()}; "
            f"the color tracker needs saturation >= {config.min_saturation + 0.2:.2f} to tell objects "
            "from gray scenery: give objects palette colors (worldsim.envs.colors.COLORS)"
        )
    t, h, w, _ = frames.shape
    hsv = cv2.cvtColor(frames.reshape(t * h, w, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv = hsv.reshape(t, h, w, 3)
    distance = np.abs((hsv[..., 0, None] - hues + 180.0) % 360.0 - 180.0)  # (T, h, w, K)
    nearest = distance.argmin(-1)
    ok = (
        (np.take_along_axis(distance, nearest[..., None], -1)[..., 0] <= config.max_hue_distance)
        & (hsv[..., 1] >= config.min_saturation)
        & (hsv[..., 2] >= config.min_value)
    )
    return np.where(ok, nearest + 1, 0).astype(np.int16)


def track(frames: np.ndarray, colors: np.ndarray, config: TrackerConfig = TrackerConfig()) -> Tracks:
    """Track every object of color ``colors[k]`` through ``frames`` (T, h, w, 3) uint8.

    Per frame and slot: connected components (8-connected) of the slot's pixels, at least
    ``min_area`` large; the largest is the object, together with blobs near it (an object cut in
    two by something in front of it); blobs farther away count in ``extra``.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames are {frames.dtype} {frames.shape}; expected uint8 (T, height, width, 3)")
    colors = np.asarray(colors, np.float64).reshape(-1, 3)
    t, k = frames.shape[0], len(colors)
    tracks = Tracks(
        found=np.zeros((t, k), bool),
        centroid=np.full((t, k, 2), np.nan),
        area=np.zeros((t, k), np.int64),
        color=np.full((t, k, 3), np.nan),
        extra=np.zeros((t, k), np.int64),
    )
    if k == 0:
        return tracks
    labels = label_pixels(frames, colors, config)
    for i in range(t):
        for slot in range(k):
            mask = (labels[i] == slot + 1).astype(np.uint8)
            if mask.sum() < config.min_area:
                continue
            count, components, stats, centers = cv2.connectedComponentsWithStats(mask, connectivity=8)
            areas = stats[1:, cv2.CC_STAT_AREA]
            keep = np.flatnonzero(areas >= config.min_area) + 1
            if len(keep) == 0:
                continue
            largest = keep[np.argmax(stats[keep, cv2.CC_STAT_AREA])]
            radius = config.merge_radius * 2.0 * np.sqrt(stats[largest, cv2.CC_STAT_AREA] / np.pi) + 1.0
            near = np.linalg.norm(centers[keep] - centers[largest], axis=1) <= radius
            parts = keep[near]
            weights = stats[parts, cv2.CC_STAT_AREA].astype(np.float64)
            tracks.found[i, slot] = True
            tracks.area[i, slot] = int(weights.sum())
            tracks.centroid[i, slot] = (centers[parts] * weights[:, None]).sum(0) / weights.sum()
            tracks.color[i, slot] = frames[i][np.isin(components, parts)].mean(0) / 255.0
            tracks.extra[i, slot] = int((~near).sum())
    return tracks


def track_scenario_frames(frames: np.ndarray, colors: np.ndarray, present: np.ndarray) -> Tracks:
    """Track the present slots of a scene in ``frames``; absent slots are never found."""
    present = np.asarray(present, bool)
    sub = track(frames, np.asarray(colors)[present])
    k = len(present)
    full = Tracks(
        found=np.zeros((len(frames), k), bool),
        centroid=np.full((len(frames), k, 2), np.nan),
        area=np.zeros((len(frames), k), np.int64),
        color=np.full((len(frames), k, 3), np.nan),
        extra=np.zeros((len(frames), k), np.int64),
    )
    for name in ("found", "centroid", "area", "color", "extra"):
        getattr(full, name)[:, present] = getattr(sub, name)
    return full


@dataclass(frozen=True)
class DetectionCounts:
    """Misses and hallucinations of a prediction's tracks against the truth's tracks."""

    misses: int  # (frame, object) pairs truth shows and the prediction lacks
    truth_objects: int  # (frame, object) pairs truth shows
    hallucinations: int  # found where truth shows nothing, plus extra blobs beyond truth's
    predicted_objects: int  # everything the prediction shows: detections plus extra blobs

    @property
    def miss_rate(self) -> float:
        return self.misses / self.truth_objects if self.truth_objects else 0.0

    @property
    def hallucination_rate(self) -> float:
        return self.hallucinations / self.predicted_objects if self.predicted_objects else 0.0


def count_detections(predicted: Tracks, truth: Tracks, hidden: np.ndarray | None = None) -> DetectionCounts:
    """Miss and hallucination counts; ``hidden`` (T, K) marks where truth says an object is not there.

    Without ``hidden`` the truth tracks decide (not found in truth = not there). With it, frames
    where truth renders a sliver the tracker cannot see (state visible, truth not found) count
    neither way.
    """
    shown = truth.found
    absent = ~truth.found if hidden is None else (np.asarray(hidden, bool) & ~truth.found)
    misses = int((shown & ~predicted.found).sum())
    # Truth itself may show an object in two far-apart pieces; only extra blobs beyond it are invented.
    extra = np.maximum(predicted.extra - truth.extra, 0)
    invented = int((absent & predicted.found).sum()) + int(extra.sum())
    return DetectionCounts(
        misses=misses,
        truth_objects=int(shown.sum()),
        hallucinations=invented,
        predicted_objects=int(predicted.found.sum() + predicted.extra.sum()),
    )
