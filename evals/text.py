"""Text: do videos imagined from a caption alone show what the caption says?

Each scenario is a Physics episode with a rich caption (``PhysicsEnv(captions="rich")``, see
``worldsim.envs.captions``), left alone (no kicks) for ``FRAMES`` frames. A predictor that can
imagine from text (``text_to_video = True``) gets no context frames, the episode's zero actions and
its caption; the color tracker then reads attributes back from its frames and from the
simulator's own episode of the same parameters. Each attribute gives three shares of scenarios,
each with a Wilson 95% interval:

- ``<attribute>``: the video's reading matches what the caption says (the structured attributes
  behind it, ``PhysicsEnv.caption_attributes``; never parsed from the text), over the scenarios
  where the caption names the attribute and the simulator's episode reads as the caption says:
  a claim the tracker cannot read even in the real episode (a box that slides 1 cm) is no
  predictor's fault, so the simulator scores 1 by construction;
- ``<attribute>_readable``: the share of the caption's claims the tracker reads in the
  simulator's episode (a property of the scenarios, the same for every predictor);
- ``<attribute>_agree``: the video's reading matches the reading of the simulator's episode.

How each attribute is read (the named object is found by the caption's color, with the tracker's
hue rule, so a video that paints the wrong color fails every attribute of the named object):

- ``color``: the named color covers at least ``MIN_COLOR_PIXELS`` pixels in most frames and is
  among the caption's count of colors covering the most pixels over the video: a video of
  confetti in every color does not show "a red ball, alone";
- ``count``: the median over frames of how many palette colors cover ``MIN_COLOR_PIXELS``;
- ``shape``: the named object's largest blob over the first ``SHAPE_FRAMES`` frames where it is
  found: a ball fills under ``BALL_FILL`` of its bounding box (median over those frames); boxes
  and cylinders (square-ish silhouettes 6-9 px wide) cannot be told apart, so ``shape`` scores
  ball against block (a box or a cylinder);
- ``start``: the first found centroid's column: left of ``LEFT_PX``, right of ``RIGHT_PX``, else
  centre; ``height``: its row, above ``HEIGHT_ROW`` high, else low;
- ``direction``: the sign of the centroid's horizontal travel from first to last found frame,
  none under ``MIN_TRAVEL_PX``;
- ``falls``: the centroid sinks more than ``MIN_FALL_PX`` rows below its start (a drop or throw)
  or not (a roll);
- ``bounce``: after the first landing (the first rise after a fall) the centroid climbs back at
  least ``MIN_REBOUND_PX`` rows: bouncy, else dead.

The ``truth`` predictor (the simulator, the ceiling) scores what the tracker allows; a predictor
that ignores the caption (``random_episode``: the simulator's episode of other parameters) is
the floor. The ``id`` split holds the color x shape pairs seen in training, ``ood`` the held-out
ones (``PhysicsEnv(holdout="combinations")``): unseen combinations of seen values. The
``text_plain`` suite scores the same episodes under their plain captions, which name only
``PLAIN_ATTRIBUTES``: what the shipped references were trained to read.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Collection

import cv2
import numpy as np

from worldsim.envs.colors import COLORS
from worldsim.envs.physics import PhysicsEnv
from worldsim.evals.conditioning import PALETTE
from worldsim.evals.protocol import Predictor, Scenario
from worldsim.evals.results import Z95
from worldsim.evals.scenarios import make_scenarios, predict_scenarios
from worldsim.evals.tracking import label_pixels

SUITE = "text"
PLAIN_SUITE = "text_plain"
ENV_ID = "worldsim/Physics-v0"
HOLDOUT = "combinations"
#: What plain captions ("a red ball is thrown to the left, with 2 other objects") name, as the suite reads it.
PLAIN_ATTRIBUTES = ("color", "count", "shape", "direction", "falls")
FRAMES = 16  # the clip length the references were trained on

MIN_COLOR_PIXELS = 3
# Thresholds set on the simulator's own episodes (250 of seed 1, id and ood, 64x64): the percentiles
# quoted are of those episodes' readings.
BALL_FILL = 0.855  # balls fill 0.73..0.85 of their box (5th..95th), boxes 0.87..1, cylinders 0.87..0.97
SHAPE_FRAMES = 4  # the fill is the median over the first frames found, before objects land and tip
LEFT_PX, RIGHT_PX = 29.0, 35.0  # start columns: left starts read 14..27, centre 30.5..33.8, right 36.8..50
HEIGHT_ROW = 33.5  # start rows: high starts read 28.7..31.9, low 35.1..37.9
MIN_TRAVEL_PX = 2.0  # throws and rolling balls travel 2.5..9.8 px; sliding boxes and cylinders under 2.3
MIN_FALL_PX = 3.0  # drops and throws sink 6..14 rows, rolls under 0.3
MIN_REBOUND_PX = 1.0  # rebounds of bouncy objects overlap those of dead ones: the weakest reading

ATTRIBUTES = ("color", "count", "shape", "start", "height", "direction", "falls", "bounce")
METRICS = {
    **{
        a: f"share of caption-only videos showing the {a} the caption says, where the simulator's episode shows it"
        for a in ATTRIBUTES
    },
    **{
        f"{a}_readable": f"share of the captions' {a} that the tracker reads in the simulator's episode (the same for "
        "every predictor)"
        for a in ATTRIBUTES
    },
    **{f"{a}_agree": f"share of caption-only videos whose tracked {a} is the simulator episode's" for a in ATTRIBUTES},
}
HEADLINE = ["color", "shape", "count", "direction"]
HIGHER_IS_BETTER = set(METRICS)
NO_BEST = tuple(f"{a}_readable" for a in ATTRIBUTES)


def make_text_scenarios(
    n: int, split: str, seed: int, horizon: int | None, worlds: Collection[str] | None = None, captions: str = "rich"
) -> list[list[Scenario]]:
    """``n`` Physics episodes of ``split`` with ``captions``, left alone for ``horizon`` (``FRAMES``) frames
    (none when ``worlds`` leaves Physics out)."""
    if worlds is not None and ENV_ID not in worlds:
        return []
    frames = horizon or FRAMES
    if frames < 2:
        raise ValueError(f"horizon={frames}: the text suite needs at least 2 frames to see motion")
    kwargs = {"captions": captions, "holdout": HOLDOUT}
    return [make_scenarios(ENV_ID, n, 1, frames - 1, split, seed, kwargs, policy="zero")]


def make_plain_text_scenarios(
    n: int, split: str, seed: int, horizon: int | None, worlds: Collection[str] | None = None
) -> list[list[Scenario]]:
    """The episodes of ``make_text_scenarios`` (same seeds, same parameters) with the plain captions."""
    return make_text_scenarios(n, split, seed, horizon, worlds, captions="plain")


def expected(scenario: Scenario) -> dict[str, Any]:
    """The attributes the scenario's caption names, as the suite scores them."""
    said = PhysicsEnv.caption_attributes(scenario.params)
    out = {"color": True, "count": said["count"], "shape": shape_class(said["shape"])}
    out["direction"] = said["direction"]
    out["falls"] = said["motion"] != "roll"
    for key in ("start", "height", "bounce"):
        if key in said:
            out[key] = said[key]
    if scenario.env_kwargs.get("captions", "plain") == "plain":
        return {key: out[key] for key in PLAIN_ATTRIBUTES}
    return out


def shape_class(shape: str) -> str:
    """What the tracker can tell: a ball, or a box or cylinder (``"block"``)."""
    return "ball" if shape == "sphere" else "block"


def read(frames: np.ndarray, color: str, objects: int) -> dict[str, Any]:
    """Every attribute read from ``frames`` (T, h, w, 3) uint8 for the object of palette ``color``, in a
    scene of ``objects`` objects (the caption's count).

    Attributes of the named object are None where it is never found.
    """
    labels = label_pixels(frames, PALETTE)  # (T, h, w): palette index + 1, 0 = no object color
    counts = palette_pixels(labels)  # (T, 8)
    named = list(COLORS).index(color)
    totals = counts.sum(axis=0)  # (8,)
    outranked_by = int((totals > totals[named]).sum())  # colors covering more of the video than the named one
    out: dict[str, Any] = {
        "color": bool((counts[:, named] > 0).mean() > 0.5) and outranked_by < objects,
        "count": int(round(float(np.median((counts > 0).sum(axis=1))))),
    }
    centroids, fills = blob_track(labels, named)
    found = np.flatnonzero(~np.isnan(centroids[:, 0]))
    if len(found) == 0:
        return {**out, **dict.fromkeys(("shape", "start", "height", "direction", "falls", "bounce"))}
    x0, y0 = centroids[found[0]]
    out["shape"] = "ball" if np.median(fills[found[:SHAPE_FRAMES]]) < BALL_FILL else "block"
    out["start"] = "left" if x0 < LEFT_PX else "right" if x0 > RIGHT_PX else "centre"
    out["height"] = "high" if y0 < HEIGHT_ROW else "low"
    travel = centroids[found[-1], 0] - x0
    out["direction"] = "none" if abs(travel) < MIN_TRAVEL_PX else ("right" if travel > 0 else "left")
    rows = centroids[found, 1]
    out["falls"] = bool(rows.max() - y0 > MIN_FALL_PX)
    out["bounce"] = "bouncy" if rebound(rows) >= MIN_REBOUND_PX else "dead"
    return out


def rebound(rows: np.ndarray) -> float:
    """How far (rows) the track climbs back after its first landing: the first row maximum after a fall."""
    lowest = int(np.argmax(rows))
    if lowest == len(rows) - 1:
        return 0.0
    return float(rows[lowest] - rows[lowest:].min())


def palette_pixels(labels: np.ndarray) -> np.ndarray:
    """Pixels per palette color in each frame of ``labels`` (T, h, w), (T, 8); under ``MIN_COLOR_PIXELS``: 0."""
    t = len(labels)
    counts = np.stack([np.bincount(frame.ravel(), minlength=len(PALETTE) + 1)[1:] for frame in labels]).reshape(t, -1)
    return np.where(counts >= MIN_COLOR_PIXELS, counts, 0)


def blob_track(labels: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Per frame of ``labels`` (T, h, w) the centroid (T, 2) (x, y; NaN: not found) and bounding-box fill (T,)
    of the largest blob of palette color ``index``."""
    centroids = np.full((len(labels), 2), np.nan)
    fills = np.full(len(labels), np.nan)
    for t, frame in enumerate(labels):
        mask = (frame == index + 1).astype(np.uint8)
        if mask.sum() < MIN_COLOR_PIXELS:
            continue
        _, _, stats, centers = cv2.connectedComponentsWithStats(mask, connectivity=8)
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        area = stats[largest, cv2.CC_STAT_AREA]
        if area < MIN_COLOR_PIXELS:
            continue
        centroids[t] = centers[largest]
        fills[t] = area / (stats[largest, cv2.CC_STAT_WIDTH] * stats[largest, cv2.CC_STAT_HEIGHT])
    return centroids, fills


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The Wilson 95% interval of a share ``successes / n`` (exact at 0 and 1, unlike the normal one)."""
    if n == 0:
        return math.nan, math.nan
    p, z2 = successes / n, Z95**2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # At 0 and 1 the bound is the share itself, exactly (the formula gives it up to rounding).
    return (0.0 if successes == 0 else centre - half), (1.0 if successes == n else centre + half)


def rate_row(suite: str, split: str, predictor: str, metric: str, matches: list[bool]) -> dict[str, Any]:
    """A metric row of a share of ``matches`` with its Wilson interval."""
    n, hits = len(matches), int(sum(matches))
    low, high = wilson(hits, n)
    return {
        "suite": suite,
        "split": split,
        "predictor": predictor,
        "metric": metric,
        "horizon": None,
        "value": hits / n if n else math.nan,
        "n": n,
        "ci_low": low,
        "ci_high": high,
    }


def caption_only(scenarios: list[Scenario]) -> list[Scenario]:
    """The scenarios with every frame in the future: nothing to look at but the caption."""
    return [dataclasses.replace(s, context=0, horizon=s.context + s.horizon) for s in scenarios]


def score_text(scenarios: list[Scenario], predictor: Predictor, batch_size: int = 16) -> list[dict[str, Any]]:
    """Per-attribute match rates of ``predictor``'s caption-only videos (none if it cannot imagine from text)."""
    if not getattr(predictor, "text_to_video", False):
        return []
    frames = predict_scenarios(predictor, caption_only(scenarios), batch_size)
    said: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    readable: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    agree: dict[str, list[bool]] = {a: [] for a in ATTRIBUTES}
    for scenario, video in zip(scenarios, frames):
        color, want = scenario.params["color"][0], expected(scenario)
        seen, truth = read(video, color, want["count"]), read(scenario.frames, color, want["count"])
        for attribute in ATTRIBUTES:
            if attribute in want:
                readable[attribute].append(truth[attribute] == want[attribute])
                if readable[attribute][-1]:  # where the simulator's own episode shows what the caption says
                    said[attribute].append(seen[attribute] == want[attribute])
            if truth[attribute] is not None:
                agree[attribute].append(seen[attribute] == truth[attribute])
    split, name = scenarios[0].split, predictor.name
    suite = SUITE if scenarios[0].env_kwargs.get("captions") == "rich" else PLAIN_SUITE
    rows = []
    for suffix, shares in (("", said), ("_readable", readable), ("_agree", agree)):
        rows += [rate_row(suite, split, name, f"{a}{suffix}", shares[a]) for a in ATTRIBUTES if shares[a]]
    return rows
