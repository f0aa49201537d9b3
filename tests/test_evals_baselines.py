"""Baselines do what they say, and external predictors load from a user's own file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from worldsim.evals.baselines import (
    CopyLastPredictor,
    GroundTruthPredictor,
    OpticalFlowPredictor,
    PerturbedGroundTruthPredictor,
    load_predictor,
    make_predictor,
)
from worldsim.evals.physics import run_physics
from worldsim.evals.scenarios import make_scenarios, predict_scenarios
from worldsim.evals.tracking import track

RED = np.array([[0.9, 0.1, 0.1]])


def disk_frame(x: float, y: float, radius: float = 5.0, size: int = 64) -> np.ndarray:
    frame = np.full((size, size, 3), 140, np.uint8)
    rows, cols = np.mgrid[:size, :size]
    frame[(cols - x) ** 2 + (rows - y) ** 2 <= radius**2] = (230, 25, 25)
    return frame


def test_copy_last_repeats_the_last_context_frame() -> None:
    context = np.random.default_rng(0).integers(0, 255, (2, 3, 8, 8, 3), dtype=np.uint8)
    out = CopyLastPredictor().predict(context, np.zeros((2, 6, 1)), ["", ""], 4)
    assert out.shape == (2, 4, 8, 8, 3)
    assert all(np.array_equal(out[:, h], context[:, -1]) for h in range(4))


@pytest.mark.parametrize("velocity", [(2.0, 0.0), (1.0, 1.0), (0.0, -2.0)])
def test_optical_flow_carries_a_moving_disk_at_its_speed(velocity: tuple[float, float]) -> None:
    start = np.array([24.0, 30.0])
    context = np.stack([disk_frame(*(start + t * np.array(velocity))) for t in range(3)])
    out = OpticalFlowPredictor().predict(context[None], np.zeros((1, 7, 1)), [""], 5)[0]
    tracks = track(out, RED)
    assert tracks.found.all()
    expected = start + np.arange(3, 8)[:, None] * np.array(velocity)
    # Farneback underestimates the speed of an untextured disk by ~7%: 0.7 px after 5 steps of 2 px.
    assert np.abs(tracks.centroid[:, 0] - expected).max() < 1.0
    assert np.abs(tracks.area[:, 0] - tracks.area[0, 0]).max() <= 0.15 * tracks.area[0, 0]


def test_truth_replays_exactly_and_refuses_unprepared_batches() -> None:
    scenarios = make_scenarios("worldsim/Physics-v0", 3, 2, 5)
    out = predict_scenarios(GroundTruthPredictor(), scenarios)
    assert all(np.array_equal(o, s.future_frames) for o, s in zip(out, scenarios))
    with pytest.raises(ValueError, match="prepare"):
        GroundTruthPredictor().predict(
            np.stack([s.context_frames for s in scenarios]), np.stack([s.actions for s in scenarios]), [""] * 3, 5
        )


def test_perturbed_truth_keeps_the_context_and_barely_moves_the_future() -> None:
    scenarios = make_scenarios("worldsim/Physics-v0", 4, 3, 6, seed=1)
    out = predict_scenarios(PerturbedGroundTruthPredictor(), scenarios)
    truth = np.stack([s.future_frames for s in scenarios])
    changed = np.mean(out != truth)
    assert 0 < changed < 0.01
    bigger = predict_scenarios(PerturbedGroundTruthPredictor(scale=0.2), scenarios)
    assert np.mean(bigger != truth) > changed


USER_FILE = '''
import numpy as np

class Still:
    """Someone else's model: copies the last frame; knows nothing of worldsim."""

    def predict(self, context_frames, actions, text, horizon):
        return np.repeat(context_frames[:, -1:], horizon, axis=1)

def make(offset=0):
    model = Still()
    model.name = f"still{offset}"
    return model

instance = Still()
not_a_model = 3
'''


def test_external_predictor_from_a_file_scores_like_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "my_model.py"
    path.write_text(textwrap.dedent(USER_FILE))
    model = load_predictor(f"{path}:Still")
    assert model.name == "Still"
    assert load_predictor(f"{path}:make", offset=2).name == "still2"
    assert load_predictor(f"{path}:instance").name == "instance"
    scenarios = make_scenarios("worldsim/Physics-v0", 4, 3, 5)
    external = run_physics([model], scenarios)
    builtin = run_physics([make_predictor("copy_last")], scenarios)
    assert [r["value"] for r in external] == pytest.approx([r["value"] for r in builtin], nan_ok=True)
    assert {r["predictor"] for r in external} == {"Still"}


def test_loading_errors_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "user.py"
    path.write_text(textwrap.dedent(USER_FILE))
    with pytest.raises(ValueError, match="does not exist"):
        load_predictor(f"{tmp_path / 'missing.py'}:Still")
    with pytest.raises(ValueError, match="no attribute 'Nope'"):
        load_predictor(f"{path}:Nope")
    with pytest.raises(ValueError, match="no predict"):
        load_predictor(f"{path}:not_a_model")
    with pytest.raises(ValueError, match="cannot import"):
        load_predictor("no_such_module_xyz:Model")
    with pytest.raises(ValueError, match="built-in"):
        make_predictor("flow")
    assert make_predictor("optical_flow").name == "optical_flow"
