"""Long suite: known answers. The truth never collapses; copy-last freezes; faked blur, noise, fading
and saturation are flagged as such, at the step they start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from worldsim.evals import long
from worldsim.evals.baselines import make_predictor
from worldsim.evals.protocol import Scenario
from worldsim.evals.report import example_steps
from worldsim.evals.results import read_results
from worldsim.evals.run import EvalConfig, evaluate
from worldsim.evals.scenarios import make_scenarios, predict_scenarios

HORIZON = 48
START = 20  # 0-based future frame where a faked collapse begins: step START + 1


@pytest.fixture(scope="module", params=list(long.WORLDS))
def scenarios(request) -> list[Scenario]:
    worlds = long.make_long_scenarios(2, "id", 0, HORIZON)
    return worlds[list(long.WORLDS).index(request.param)]


@pytest.fixture(scope="module")
def push() -> list[Scenario]:
    """Push under the long suite's random pushes: the truth moves all the time."""
    return make_scenarios("worldsim/Push-v0", 2, long.CONTEXT, HORIZON, policy=long.WORLDS["worldsim/Push-v0"].policy)


def tracks_objects(scenarios: list[Scenario]) -> bool:
    return long.WORLDS[scenarios[0].env_id].track_objects


def overall(rows: list[dict], metric: str) -> float:
    (row,) = [r for r in rows if r["metric"].endswith(f"_{metric}") and r["horizon"] is None]
    return row["value"]


def faked(scenario: Scenario, change: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """The true future, with ``change(frame, h)`` applied to every frame from ``START`` on."""
    frames = scenario.future_frames.copy()
    for h in range(START, len(frames)):
        frames[h] = change(frames[h], h)
    return frames


def onsets(scenario: Scenario, frames: np.ndarray) -> dict[str, float]:
    values = long.scenario_metrics(scenario, frames)
    return {kind: values[f"{kind}_step"][0] for kind in long.KINDS if f"{kind}_step" in values}


def test_truth_scores_perfectly_and_never_collapses(scenarios) -> None:
    rows = long.score_long(scenarios, predict_scenarios(make_predictor("truth"), scenarios), "truth")
    assert overall(rows, "psnr_db") == 100.0 and overall(rows, "psnr_db_h17_48") == 100.0
    assert overall(rows, "sharpness_log2_ratio") == 0.0 and overall(rows, "noise_excess") == 0.0
    assert overall(rows, "color_mean_error") == 0.0
    if tracks_objects(scenarios):
        assert overall(rows, "object_kept") == 1.0
    else:
        assert not any("object_" in r["metric"] or "ghost" in r["metric"] for r in rows)
    assert overall(rows, "collapsed") == 0.0
    assert all(
        overall(rows, f"{kind}_rate") == 0.0 for kind in long.KINDS if kind != "ghost" or tracks_objects(scenarios)
    )


def test_perturbed_truth_never_collapses(scenarios) -> None:
    rows = long.score_long(scenarios, predict_scenarios(make_predictor("perturbed_truth"), scenarios), "perturbed")
    assert overall(rows, "collapsed") == 0.0
    if tracks_objects(scenarios):
        assert overall(rows, "object_kept") == 1.0


def test_copy_last_loses_psnr_with_time_and_freezes_where_the_truth_moves(push) -> None:
    rows = long.score_long(push, predict_scenarios(make_predictor("copy_last"), push), "copy_last")
    assert overall(rows, "psnr_db_h1_16") > overall(rows, "psnr_db_h17_48") + 1.0
    assert overall(rows, "frozen_rate") == 1.0
    assert overall(rows, "frozen_step") <= long.CHANGE_LAG  # from where the context stops moving in its frames
    assert overall(rows, "object_kept") == 1.0 and overall(rows, "ghost_rate") == 0.0


def test_copy_last_is_not_frozen_where_the_truth_holds_still() -> None:
    (still,) = make_scenarios("worldsim/Push-v0", 1, 4, 24, policy="zero")  # nothing moves
    copy = np.repeat(still.context_frames[-1:], still.horizon, axis=0)
    assert all(np.isnan(step) for step in onsets(still, copy).values())


def test_blur_is_flagged_blur_from_the_step_it_starts(scenarios) -> None:
    for scenario in scenarios:
        found = onsets(scenario, faked(scenario, lambda frame, h: cv2.GaussianBlur(frame, (0, 0), 2.0)))
        assert found["blur"] == START + 1 and np.isnan(found["noise"]) and np.isnan(found["exploding"])


def test_noise_is_flagged_noise_from_the_step_it_starts(scenarios) -> None:
    rng = np.random.default_rng(0)

    def noisy(frame: np.ndarray, h: int) -> np.ndarray:
        return np.clip(frame + rng.normal(0.0, 20.0, frame.shape), 0, 255).astype(np.uint8)

    for scenario in scenarios:
        found = onsets(scenario, faked(scenario, noisy))
        assert found["noise"] == START + 1 and np.isnan(found["blur"]) and np.isnan(found.get("ghost", np.nan))


def test_objects_fading_into_the_background_are_ghosts_the_colour_statistics_miss(scenarios) -> None:
    """Over four frames from START every object pixel fades to the frame's median colour: a ghost."""
    if not tracks_objects(scenarios):
        pytest.skip("objects are not tracked in this world: its ghosts are not measured")
    for scenario in scenarios:

        def fade(frame: np.ndarray, h: int) -> np.ndarray:
            objects = scenario.state["segmentation"][scenario.context + h] > 0
            alpha = min(1.0, (h - START + 1) / 4)
            out = frame.astype(np.float64)
            out[objects] = (1 - alpha) * out[objects] + alpha * np.median(frame.reshape(-1, 3), axis=0)
            return out.round().astype(np.uint8)

        frames = faked(scenario, fade)
        found = onsets(scenario, frames)
        assert START + 1 <= found["ghost"] <= START + 4
        assert np.isnan(found["blur"]) and np.isnan(found["exploding"]) and np.isnan(found["noise"])
        values = long.scenario_metrics(scenario, frames)
        assert values["color_mean_error"].max() < 8.0  # global colour hardly moves: only objects tell
        assert np.nanmean(values["object_kept"][START + 4 :]) == 0.0


def test_saturated_frames_explode_from_the_step_they_start(scenarios) -> None:
    def saturate(frame: np.ndarray, h: int) -> np.ndarray:
        return np.clip((frame.astype(np.int16) - 100) * 4 + 100, 0, 255).astype(np.uint8)

    for scenario in scenarios:
        assert onsets(scenario, faked(scenario, saturate))["exploding"] == START + 1


def test_a_verdict_needs_consecutive_bad_frames() -> None:
    k = long.COLLAPSE_FRAMES
    assert long.onset(np.array([True] * (k - 1) + [False] + [True] * (k - 1))) is None
    assert long.onset(np.array([False] * 3 + [True] * k)) == 4  # 1-based: the 4th step
    unmeasured = np.array([0.0] + [1.0] * (k // 2) + [np.nan] * 5 + [1.0] * (k - k // 2))
    assert long.onset(unmeasured) == 2  # steps not measured (truth still, object hidden) do not break a run
    ghost = np.zeros((10 + k, 2), bool)
    ghost[10:, 1] = True  # one object of two lost from step 11
    assert long.verdict({kind: ghost if kind == "ghost" else ghost[:, 0] for kind in long.KINDS})["ghost"] == 11


def test_buckets_and_rows_follow_the_horizon() -> None:
    assert long.bucket_names(600) == [
        ("h1_16", 1, 16),
        ("h17_64", 17, 64),
        ("h65_256", 65, 256),
        ("h257_600", 257, 600),
    ]
    assert long.bucket_names(40) == [("h1_16", 1, 16), ("h17_40", 17, 40)]
    assert long.curve_steps(600)[:17] == [*range(1, 17), 32] and long.curve_steps(600)[-2:] == [592, 600]
    assert {f"push_{m}" for m in ("psnr_db_h257_600", "object_kept", "ghost_step", "collapsed")} <= set(long.METRICS)
    assert "push_object_kept_h1_16" in long.HIGHER_IS_BETTER and "push_ghost_step" in long.NO_BEST


def test_long_examples_show_a_few_steps() -> None:
    assert example_steps(600) == [0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 599]
    assert example_steps(48) == list(range(0, 47, 2))  # short suites: every other frame, as before


def test_long_runs_only_on_request_and_horizon_needs_it() -> None:
    assert "long" not in EvalConfig().suites
    with pytest.raises(ValueError, match="horizon=40 sets the horizon of the long, memory and text suites"):
        evaluate(EvalConfig(suites=["physics"], horizon=40))
    with pytest.raises(ValueError, match="horizon=0"):
        EvalConfig(suites=["long"], horizon=0)


def test_worldsim_eval_runs_the_long_suite_with_its_strip_beside_the_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worldsim.cli", "eval", "suites=[long]", "predictors=[copy_last,truth]", "n=1"]
        + ["split=[id]", "horizon=40", "out=run", "progress=false"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    rows = read_results(tmp_path / "run" / "results.json")["rows"]
    value = {(r["predictor"], r["metric"]): r["value"] for r in rows if r["horizon"] is None}
    for world in ("push", "physics"):
        assert value[("truth", f"{world}_psnr_db_h17_40")] == 100.0 and value[("truth", f"{world}_collapsed")] == 0.0
    assert value[("copy_last", "push_frozen_rate")] == 1.0
    assert {r["horizon"] for r in rows if r["metric"] == "push_psnr_db"} == {None, *range(1, 17), 32, 40}
    assert (tmp_path / "run" / "example_long_id.png").is_file()
    assert "## long — id" in (tmp_path / "run" / "summary.md").read_text()


def test_objects_leaving_the_view_or_never_shown_are_not_ghosts(push) -> None:
    """Sliding out past the border is motion, not dissolving; an object coming into view that the
    prediction never drew is a miss (the rollout suite's), not a collapse."""
    for scenario in push:

        def slide(frame: np.ndarray, h: int) -> np.ndarray:  # the whole scene, 2 px further left each step
            shift = np.float32([[1, 0, -2 * (h - START + 1)], [0, 1, 0]])
            return cv2.warpAffine(frame, shift, frame.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)

        frames = faked(scenario, slide)
        assert long.object_presence(long.track_objects(scenario, frames))[0][-1].tolist() == [0.0, 0.0]  # gone
        assert np.isnan(onsets(scenario, frames)["ghost"])
    dropped = make_scenarios("worldsim/Physics-v0", 2, long.CONTEXT, HORIZON, "ood")  # more objects fall into view
    for scenario in dropped:
        copy = np.repeat(scenario.context_frames[-1:], scenario.horizon, axis=0)
        late = (
            scenario.state["object_visible"][scenario.context :].any(0)
            & ~scenario.state["object_visible"][scenario.context - 1]
        )
        assert late.any() and np.isnan(onsets(scenario, copy)["ghost"])
