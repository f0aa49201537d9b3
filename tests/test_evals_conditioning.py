"""Conditioning suite: known answers for predictors that ignore actions, follow them exactly, or paint a caption."""

from __future__ import annotations

import math

import numpy as np
import pytest

from worldsim.envs.colors import COLORS
from worldsim.evals.baselines import make_predictor
from worldsim.evals.conditioning import named_color, score_conditioning, shuffled, text_match
from worldsim.evals.scenarios import make_scenarios


@pytest.fixture(scope="module")
def push():
    return make_scenarios("worldsim/Push-v0", 4, 3, 6, "id", 0)


@pytest.fixture(scope="module")
def physics():
    return make_scenarios("worldsim/Physics-v0", 6, 3, 6, "id", 0)


def values(rows):
    return {row["metric"]: row["value"] for row in rows}


def test_shuffled_actions_change_only_the_future(push) -> None:
    other = shuffled(push)
    for i, (a, b) in enumerate(zip(push, other)):
        assert np.array_equal(b.actions[: a.context - 1], a.actions[: a.context - 1])
        assert np.array_equal(b.actions[a.context - 1 :], push[(i + 1) % len(push)].actions[a.context - 1 :])
        assert np.array_equal(b.frames, a.frames)
    with pytest.raises(ValueError, match="at least 2 scenarios"):
        shuffled(push[:1])


def test_copy_last_ignores_actions_and_the_simulator_follows_them(push) -> None:
    copy = values(score_conditioning(push, make_predictor("copy_last")))
    assert copy["action_gain_db"] == 0.0 and copy["psnr_true_db"] == copy["psnr_shuffled_db"]
    truth = values(score_conditioning(push, make_predictor("truth")))
    assert math.isinf(truth["psnr_true_db"]) and truth["pusher_error_true_px"] == 0.0
    assert truth["pusher_error_shuffled_px"] > 1.0 and truth["psnr_shuffled_db"] < 40.0


class CaptionPainter:
    """Paints a 6x6 square of the caption's color on gray: perfect text following."""

    name = "painter"
    text_to_video = True

    def predict(self, context_frames, actions, text, horizon):
        assert context_frames.shape[1] == 0 and actions.shape[1] == horizon - 1
        frames = np.full((len(text), horizon, 64, 64, 3), 128, np.uint8)
        for i, caption in enumerate(text):
            frames[i, :, 20:26, 30:36] = np.array(COLORS[caption.split()[1]]) * 255
        return frames


def test_text_probe_scores_the_named_color(physics) -> None:
    assert named_color("a green cylinder slides to the left, with 2 other objects") == list(COLORS).index("green")
    assert named_color("no color here") == -1
    painted = values(score_conditioning(physics, CaptionPainter()))
    assert painted["text_color_dominant"] == 1.0 and painted["text_color_present"] == 1.0
    truth = values(score_conditioning(physics, make_predictor("truth")))
    assert truth["text_color_present"] == 1.0 and truth["text_color_dominant"] > 1 / len(COLORS)
    assert score_conditioning(physics, make_predictor("copy_last")) == []  # needs context: not probed
    gray = np.full((4, 64, 64, 3), 128, np.uint8)
    assert text_match("a red ball is dropped", gray) == (0.0, 0.0)


def test_other_worlds_are_refused() -> None:
    orbit = make_scenarios("worldsim/Orbit-v0", 2, 2, 2, "id", 0)
    with pytest.raises(ValueError, match="probes worldsim/Push-v0 .* not 'worldsim/Orbit-v0'"):
        score_conditioning(orbit, make_predictor("copy_last"))
