"""Rollout suite: the simulator scores perfectly, a shifted prediction has its shift as centroid error."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.evals.baselines import make_predictor
from worldsim.evals.rollout import score_rollout
from worldsim.evals.scenarios import make_scenarios, predict_scenarios


@pytest.fixture(scope="module", params=["worldsim/Physics-v0", "worldsim/Push-v0"])
def scenarios(request):
    return make_scenarios(request.param, 3, 3, 5, "id", 0)


def overall(rows, suffix):
    return {r["metric"]: r["value"] for r in rows if r["horizon"] is None and r["metric"].endswith(suffix)}


def test_truth_is_perfect_and_rows_come_per_horizon(scenarios) -> None:
    rows = score_rollout(scenarios, predict_scenarios(make_predictor("truth"), scenarios), "truth")
    world = "physics" if "Physics" in scenarios[0].env_id else "push"
    assert overall(rows, "psnr_db") == {f"{world}_psnr_db": 100.0}
    assert overall(rows, "centroid_error_px") == {f"{world}_centroid_error_px": 0.0}
    assert overall(rows, "miss_rate")[f"{world}_miss_rate"] == 0.0
    assert sorted({r["horizon"] for r in rows if r["horizon"]}) == [1, 2, 3, 4, 5]


def test_shifted_frames_give_the_shift_as_centroid_error(scenarios) -> None:
    truth = np.stack([s.future_frames for s in scenarios])
    shifted = np.roll(truth, 2, axis=3)  # every object 2 px to the right (the scene wraps around)
    rows = score_rollout(scenarios, shifted, "shifted")
    world = "physics" if "Physics" in scenarios[0].env_id else "push"
    assert overall(rows, "centroid_error_px")[f"{world}_centroid_error_px"] == pytest.approx(2.0, abs=0.3)
    assert overall(rows, "psnr_db")[f"{world}_psnr_db"] < 40.0


def test_other_worlds_are_refused() -> None:
    orbit = make_scenarios("worldsim/Orbit-v0", 1, 2, 2, "id", 0)
    with pytest.raises(ValueError, match="the rollout suite scores"):
        score_rollout(orbit, np.stack([s.future_frames for s in orbit]), "x")


def test_psnr_gain_is_paired_against_copy_last(scenarios) -> None:
    world = "physics" if "Physics" in scenarios[0].env_id else "push"
    copy = np.stack([np.repeat(s.context_frames[-1:], s.horizon, axis=0) for s in scenarios])
    rows = score_rollout(scenarios, copy, "copy_last")
    gain = [r for r in rows if r["metric"] == f"{world}_psnr_gain_db"]
    assert all(r["value"] == 0.0 and r["ci_low"] == r["ci_high"] == 0.0 for r in gain)
    truth = np.stack([s.future_frames for s in scenarios])
    by_metric = {r["metric"]: r for r in score_rollout(scenarios, truth, "truth") if r["horizon"] == 1}
    copy_psnr = {r["metric"]: r for r in rows if r["horizon"] == 1}[f"{world}_psnr_db"]["value"]
    assert by_metric[f"{world}_psnr_gain_db"]["value"] == pytest.approx(100.0 - copy_psnr)


def test_squared_error_is_paired_and_pools_without_the_cap(scenarios) -> None:
    """A still scene cannot decide the pooled comparison: squared errors add, capped dB do not."""
    world = "physics" if "Physics" in scenarios[0].env_id else "push"
    truth = np.stack([s.future_frames for s in scenarios])
    off_by_one = np.clip(truth.astype(np.int16) + 1, 0, 255).astype(np.uint8)  # one level off, short of white
    rows = {r["metric"]: r for r in score_rollout(scenarios, off_by_one, "off_by_one") if r["horizon"] == 1}
    below_white = np.mean(truth[:, 0] < 255)
    assert 0.3 < below_white and rows[f"{world}_mse"]["value"] == pytest.approx(below_white)
    copy_mse = np.mean([np.mean((s.context_frames[-1].astype(float) - s.future_frames[0]) ** 2) for s in scenarios])
    assert rows[f"{world}_mse_reduction"]["value"] == pytest.approx(copy_mse - rows[f"{world}_mse"]["value"])
    copy = np.stack([np.repeat(s.context_frames[-1:], s.horizon, axis=0) for s in scenarios])
    copy_rows = [r for r in score_rollout(scenarios, copy, "copy_last") if r["metric"] == f"{world}_mse_reduction"]
    assert all(r["value"] == 0.0 for r in copy_rows)
