"""Text suite: known answers for the simulator, a caption-ignoring floor, a wrong painter and a mirror."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.envs.colors import COLORS
from worldsim.evals.baselines import GroundTruthPredictor, make_predictor
from worldsim.evals.text import (
    ATTRIBUTES,
    PLAIN_ATTRIBUTES,
    expected,
    make_plain_text_scenarios,
    make_text_scenarios,
    read,
    score_text,
    wilson,
)


@pytest.fixture(scope="module")
def scenarios():
    return make_text_scenarios(10, "id", 0, None)[0]


def values(rows):
    return {row["metric"]: row["value"] for row in rows}


@pytest.fixture(scope="module")
def truth(scenarios):
    return values(score_text(scenarios, make_predictor("truth")))


class Recolored(GroundTruthPredictor):
    """The simulator's episode with the captioned object painted a color the scene does not have."""

    name = "recolored"

    def predict(self, context_frames, actions, text, horizon):
        frames = super().predict(context_frames, actions, text, horizon)
        for video, scenario in zip(frames, self.scenarios):
            other = next(c for c in COLORS if c not in scenario.params["color"])
            video[scenario.state["segmentation"] == 1] = np.array(COLORS[other]) * 255
        return frames


class Mirrored(GroundTruthPredictor):
    """The simulator's episode flipped left to right: every motion goes the other way."""

    name = "mirrored"

    def predict(self, context_frames, actions, text, horizon):
        return np.ascontiguousarray(super().predict(context_frames, actions, text, horizon)[:, :, :, ::-1])


def test_the_simulator_scores_every_attribute_the_tracker_reads(truth) -> None:
    for attribute in ATTRIBUTES:
        if attribute in truth:
            assert truth[attribute] == 1.0 and truth[f"{attribute}_agree"] == 1.0
    # What the tracker reads of the captions in the simulator's own episodes (calibrated on 250 episodes).
    for attribute in ("color", "count", "shape", "start", "height", "falls"):
        assert truth[f"{attribute}_readable"] >= 0.9, (attribute, truth)


def test_a_caption_ignoring_floor_scores_below_the_simulator(scenarios, truth) -> None:
    floor = values(score_text(scenarios, make_predictor("random_episode")))
    assert floor["color"] < 0.8 and floor["count"] < 0.8
    # The caption's claims do not depend on who predicts: readable is the same for everyone.
    assert all(floor[f"{a}_readable"] == truth[f"{a}_readable"] for a in ATTRIBUTES if f"{a}_readable" in truth)


def test_painting_the_wrong_color_scores_zero_on_color(scenarios) -> None:
    rows = values(score_text(scenarios, Recolored()))
    assert rows["color"] == 0.0 and rows["color_agree"] == 0.0
    assert rows["count"] == 1.0  # one color swapped for another: as many objects as before


def test_mirroring_motion_scores_zero_on_direction(scenarios) -> None:
    moving = [s for s in scenarios if expected(s)["direction"] != "none"]
    assert len(moving) >= 4
    rows = values(score_text(moving, Mirrored()))
    assert rows["direction"] == 0.0 and rows["start"] == 0.0
    assert rows["color"] == 1.0 and rows["falls"] == 1.0


def test_predictors_that_cannot_imagine_from_text_are_not_scored(scenarios) -> None:
    assert score_text(scenarios, make_predictor("copy_last")) == []


def test_reading_an_empty_video_finds_nothing_of_the_named_object() -> None:
    gray = np.full((16, 64, 64, 3), 128, np.uint8)
    reading = read(gray, "red", 1)
    assert reading["color"] is False and reading["count"] == 0 and reading["shape"] is None


def test_a_video_of_every_color_does_not_show_the_one_object_the_caption_names() -> None:
    video = np.full((16, 64, 64, 3), 128, np.uint8)
    pixels = [np.round(255 * np.asarray(rgb)).astype(np.uint8) for rgb in COLORS.values()]
    for i, rgb in enumerate(pixels):
        size = 3 if i == 0 else 5  # the named color (the first) is there, but the smallest patch
        video[:, 8 : 8 + size, 4 + 7 * i : 4 + 7 * i + size] = rgb
    named = next(iter(COLORS))
    assert read(video, named, 1)["color"] is False  # "a red ball, alone": seven larger colors outrank it
    assert read(video, named, len(COLORS))["color"] is True  # as many objects as colors: it may be the smallest
    alone = np.full_like(video, 128)
    alone[:, 8:11, 4:7] = pixels[0]
    assert read(alone, named, 1)["color"] is True


def test_wilson_interval_known_values() -> None:
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    low, high = wilson(5, 10)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)


def test_plain_captions_score_only_what_they_name(scenarios) -> None:
    plain = make_plain_text_scenarios(4, "id", 0, None)[0]
    for a, b in zip(plain, scenarios):
        assert a.params == b.params and np.array_equal(a.frames, b.frames) and a.caption != b.caption
        assert set(expected(a)) == set(PLAIN_ATTRIBUTES)
    rows = score_text(plain, make_predictor("truth"))
    assert {row["suite"] for row in rows} == {"text_plain"}
    assert {row["metric"] for row in rows} >= set(PLAIN_ATTRIBUTES) and "start" not in values(rows)
