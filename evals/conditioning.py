"""Conditioning: does a predictor's future depend on the actions and the caption it is given?

Unlike the other suites this one calls the predictor itself, with altered inputs:

- **actions** (Push): every scenario is predicted twice, with its own future actions and with
  another scenario's (scenario i gets the future actions of scenario i + 1; the context and its
  actions stay true). Both predictions are scored against the truth under the true actions. A
  predictor that ignores actions scores the same twice (``action_gain_db`` 0, like copy-last);
  the simulator, replaying the shuffled actions, shows how much the actions change these
  scenarios at all. It needs n >= 2 scenarios.
- **text** (Physics): predictors that can imagine a world from a caption alone
  (``text_to_video = True``: the worldsim model, and the simulator, which replays the episode
  as the ceiling) get no context frames, the episode's actions and its caption. The most
  frequent object color of their frames is compared with the color the caption names
  ("a red ball is dropped, ..."). With 1-3 objects of random sizes the named object is not
  always the largest, so the simulator's own rate is below 1; chance is 1 / 8 colors.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from worldsim import metrics
from worldsim.envs.colors import COLORS
from worldsim.envs.push import PUSHER
from worldsim.evals.protocol import Predictor, Scenario
from worldsim.evals.results import metric_row
from worldsim.evals.scenarios import predict_scenarios
from worldsim.evals.tracking import label_pixels, track

SUITE = "conditioning"
PUSH_ENV_ID = "worldsim/Push-v0"
PHYSICS_ENV_ID = "worldsim/Physics-v0"
PALETTE = np.array(list(COLORS.values()))
COLOR_NAMES = list(COLORS)
MIN_COLOR_PIXELS = 3  # a color covering fewer pixels in a frame is noise, not an object

METRICS = {
    "psnr_true_db": "PSNR (dB) of the future predicted with the true actions, against the truth",
    "psnr_shuffled_db": "PSNR (dB) of the future predicted with another scenario's actions, against the same truth",
    "action_gain_db": "psnr_true_db - psnr_shuffled_db: how much the true actions improve the prediction (0: actions ignored)",
    "pusher_error_true_px": "tracked pusher centroid error (px) with the true actions (frames where both have it)",
    "pusher_error_shuffled_px": "tracked pusher centroid error (px) with shuffled actions",
    "text_color_dominant": "share of caption-only predictions whose most frequent object color is the one the caption names",
    "text_color_present": "share of caption-only predictions where the named color is an object in most frames",
}
HEADLINE = ["action_gain_db"]
HIGHER_IS_BETTER = {"psnr_true_db", "action_gain_db", "text_color_dominant", "text_color_present"}
NO_BEST = ("psnr_shuffled_db", "pusher_error_shuffled_px")


def scenario_psnr_db(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Pooled PSNR of one scenario's future frames; inf, not the cap, when every frame is exact.

    The other suites cap the PSNR of exact frames at ``metrics.MAX_PSNR_DB``; this one does not.
    The simulator replaying the true actions is exact, and so is the perturbed-truth anchor on
    scenarios its tiny nudge leaves unchanged. Capped, their ``action_gain_db`` would be the cap
    minus the shuffled PSNR (about 73 dB for the simulator), a number that measures the cap, and
    the suite's normalized score would divide by it; infinite, the anchor is degenerate and the
    score stays n/a.
    """
    mse = metrics.mse(predicted, truth)
    return math.inf if mse == 0 else metrics.psnr_from_mse(mse)


def pusher_error_px(scenario: Scenario, predicted: np.ndarray) -> float:
    """Mean distance of the tracked pusher in ``predicted`` from its track in the truth (NaN: never both found)."""
    color = scenario.state["object_color"][0, PUSHER][None]
    truth, guess = track(scenario.future_frames, color), track(predicted, color)
    both = truth.found[:, 0] & guess.found[:, 0]
    if not both.any():
        return math.nan
    return float(np.linalg.norm(truth.centroid[both, 0] - guess.centroid[both, 0], axis=-1).mean())


def shuffled(scenarios: list[Scenario]) -> list[Scenario]:
    """Copies of ``scenarios`` whose future actions are the next scenario's (a derangement)."""
    if len(scenarios) < 2:
        raise ValueError(f"shuffling actions needs at least 2 scenarios, got {len(scenarios)}: raise n")
    out = []
    for i, scenario in enumerate(scenarios):
        donor = scenarios[(i + 1) % len(scenarios)]
        actions = scenario.actions.copy()
        actions[scenario.context - 1 :] = donor.actions[scenario.context - 1 :]
        out.append(dataclasses.replace(scenario, actions=actions))
    return out


def named_color(caption: str) -> int:
    """Index in ``COLOR_NAMES`` of the first color word of ``caption`` (-1: none)."""
    for word in caption.replace(",", " ").split():
        if word in COLORS:
            return COLOR_NAMES.index(word)
    return -1


def color_pixels(frames: np.ndarray) -> np.ndarray:
    """Pixels per palette color in each frame, (T, 8): counts under ``MIN_COLOR_PIXELS`` set to 0."""
    labels = label_pixels(frames, PALETTE)
    counts = np.stack([(labels == k + 1).sum(axis=(1, 2)) for k in range(len(PALETTE))], axis=-1)
    return np.where(counts >= MIN_COLOR_PIXELS, counts, 0)


def text_match(caption: str, frames: np.ndarray) -> tuple[float, float]:
    """(dominant color is the named one, named color present in most frames) for one prediction."""
    named = named_color(caption)
    counts = color_pixels(frames)
    total = counts.sum(axis=0)
    dominant = float(total.any() and int(total.argmax()) == named)
    present = float(named >= 0 and (counts[:, named] > 0).mean() > 0.5)
    return dominant, present


def action_rows(predictor: Predictor, scenarios: list[Scenario], batch_size: int) -> list[dict[str, Any]]:
    if len(scenarios) < 2:
        return []  # no other scenario to take actions from: nothing to measure
    true = predict_scenarios(predictor, scenarios, batch_size)
    other = predict_scenarios(predictor, shuffled(scenarios), batch_size)
    per = {
        name: [] for name in ("psnr_true_db", "psnr_shuffled_db", "pusher_error_true_px", "pusher_error_shuffled_px")
    }
    for scenario, a, b in zip(scenarios, true, other):
        per["psnr_true_db"].append(scenario_psnr_db(a, scenario.future_frames))
        per["psnr_shuffled_db"].append(scenario_psnr_db(b, scenario.future_frames))
        per["pusher_error_true_px"].append(pusher_error_px(scenario, a))
        per["pusher_error_shuffled_px"].append(pusher_error_px(scenario, b))
    gain = np.subtract(per["psnr_true_db"], per["psnr_shuffled_db"])
    per["action_gain_db"] = np.where(np.isnan(gain), math.inf, gain).tolist()  # inf - inf: the simulator, identical
    split = scenarios[0].split
    return [metric_row(SUITE, split, predictor.name, metric, values) for metric, values in per.items()]


def text_rows(predictor: Predictor, scenarios: list[Scenario], batch_size: int) -> list[dict[str, Any]]:
    if not getattr(predictor, "text_to_video", False):
        return []
    captioned = [dataclasses.replace(s, context=0, horizon=s.context + s.horizon) for s in scenarios]
    frames = predict_scenarios(predictor, captioned, batch_size)
    matches = np.array([text_match(s.caption, f) for s, f in zip(scenarios, frames)])
    split = scenarios[0].split
    return [
        metric_row(SUITE, split, predictor.name, "text_color_dominant", matches[:, 0]),
        metric_row(SUITE, split, predictor.name, "text_color_present", matches[:, 1]),
    ]


def score_conditioning(scenarios: list[Scenario], predictor: Predictor, batch_size: int = 16) -> list[dict[str, Any]]:
    """Metric rows of ``predictor`` on Push scenarios (actions) or Physics scenarios (text)."""
    env_id = scenarios[0].env_id
    if env_id == PUSH_ENV_ID:
        return action_rows(predictor, scenarios, batch_size)
    if env_id == PHYSICS_ENV_ID:
        return text_rows(predictor, scenarios, batch_size)
    raise ValueError(
        f"the conditioning suite probes {PUSH_ENV_ID} (actions) and {PHYSICS_ENV_ID} (text), not {env_id!r}"
    )
