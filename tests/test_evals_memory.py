"""Memory suite: known answers. The truth comes back exactly and scores perfectly; copy-last shows the
last context frame, which is already turned away; a model that redraws the old block fails the edit."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.evals import memory
from worldsim.evals.baselines import make_predictor
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import read_results
from worldsim.evals.run import EvalConfig, evaluate
from worldsim.evals.scenarios import make_env, predict_scenarios
from worldsim.metrics import MAX_PSNR_DB, pooled_psnr

N = 4  # scenarios per kind: the first four variants of each


@pytest.fixture(scope="module")
def kinds() -> dict[str, list[Scenario]]:
    return {kind: memory.blockworld_scenarios(kind, N, "id", 0) for kind in ("lookaway", "loop", "edit")}


def overall(rows: list[dict], metric: str) -> float:
    (row,) = [r for r in rows if r["metric"] == metric and r["horizon"] is None]
    return row["value"]


def scored(scenarios: list[Scenario], predictor: str) -> list[dict]:
    return memory.score_memory(scenarios, predict_scenarios(make_predictor(predictor), scenarios), predictor)


def test_times_away_fall_in_their_buckets_and_the_horizon_decides_which_fit() -> None:
    assert [memory.bucket(t) for t in (1, 12, 16, 17, 36, 64, 65, 128, 256, 257, 600)] == [
        8, 8, 8, 32, 32, 32, 128, 128, 128, 600, 600,
    ]  # fmt: skip
    short = memory.plans("lookaway")
    assert {memory.bucket(p.time_away) for p in short} == {8, 32, 128}
    assert [(p.name, p.time_away) for p in short[:4]] == [
        ("turn90", 12),
        ("turn90", 32),
        ("turn90", 128),
        ("turn180", 32),
    ]
    long = memory.plans("lookaway", horizon=600)
    assert {p.time_away for p in long if memory.bucket(p.time_away) == 600} == {600}
    assert all(p.back <= memory.CONTEXT + 600 - 1 for p in long)


def test_scenarios_are_deterministic_under_a_seed(kinds) -> None:
    again = memory.blockworld_scenarios("loop", N, "id", 0)
    for a, b in zip(kinds["loop"], again, strict=True):
        assert a.seed == b.seed and np.array_equal(a.frames, b.frames) and np.array_equal(a.actions, b.actions)
    other = memory.blockworld_scenarios("loop", 1, "id", 1)
    assert other[0].seed != kinds["loop"][0].seed


def test_returns_really_return(kinds) -> None:
    for kind, scenarios in kinds.items():
        assert len(scenarios) == N, f"{kind}: every scenario found a reset seed whose player came back"
        for s, plan in zip(scenarios, memory.plans(kind)):
            ((start, back),) = s.params["memory"]["returns"]
            assert (start, back) == (plan.start, plan.back)
            assert np.array_equal(s.frames[back], s.frames[start]), f"{kind} {s.params['memory']['variant']}"
            position = s.state["player_position"]
            assert np.abs(position[back] - position[start]).max() < memory.POSE_TOLERANCE
            assert np.array_equal(s.state["player_look"][back], s.state["player_look"][start])
            # the view really left: the frames between differ from it
            assert np.abs(s.frames[(start + back) // 2].astype(int) - s.frames[start]).mean() > 5


def test_a_walk_that_does_not_come_back_is_not_a_return(kinds) -> None:
    env = make_env(memory.BLOCKWORLD)
    s = kinds["loop"][0]  # "back": 6 steps forward, 6 back
    plan = memory.plans("loop")[0]
    assert plan.name == "back" and memory.check_return(env, s, plan) is not None
    assert memory.check_return(env, s, memory.Plan("loop", "short", plan.actions, 0, plan.back - 1, 6)) is None
    assert memory.check_return(env, s, memory.Plan("loop", "far", plan.actions, 0, plan.back, 7)) is None


def test_truth_scores_perfectly(kinds) -> None:
    for kind, scenarios in kinds.items():
        rows = scored(scenarios, "truth")
        assert overall(rows, f"{kind}_psnr_db") == MAX_PSNR_DB
        assert overall(rows, f"{kind}_ssim") == pytest.approx(1.0, abs=1e-12)
        assert overall(rows, f"{kind}_closure_error") == 0.0
        for t in (8, 32, 128):
            assert overall(rows, f"{kind}_psnr_db_away{t}") == MAX_PSNR_DB
    rows = scored(kinds["edit"], "truth")
    assert overall(rows, "edit_present") == 1.0 and overall(rows, "edit_color_error") == 0.0


def test_copy_last_shows_the_last_context_frame_which_is_turned_away(kinds) -> None:
    """Copy-last repeats frame 3, 45 degrees off the view of frame 0 that the player returns to: its
    return PSNR is that of frame 3 against frame 0, and its closure error their mean difference."""
    scenarios = kinds["lookaway"]
    rows = scored(scenarios, "copy_last")
    psnr = [pooled_psnr(s.frames[s.context - 1], s.frames[0]) for s in scenarios]
    gap = [np.abs(s.frames[s.context - 1].astype(float) - s.frames[0]).mean() for s in scenarios]
    assert overall(rows, "lookaway_psnr_db") == pytest.approx(np.mean(psnr), abs=1e-9)
    assert overall(rows, "lookaway_closure_error") == pytest.approx(np.mean(gap), abs=1e-9)
    assert overall(rows, "lookaway_psnr_db") == pytest.approx(9.17, abs=0.01)
    assert overall(rows, "lookaway_ssim") == pytest.approx(0.317, abs=0.001)
    edit_rows = scored(kinds["edit"], "copy_last")
    assert overall(edit_rows, "edit_present") == 0.0  # 45 degrees off, the new block is elsewhere in the frame


def test_a_predictor_that_shows_the_old_block_fails_edit_persistence(kinds) -> None:
    scenarios = kinds["edit"]
    wrong = []
    for s in scenarios:
        record = s.params["memory"]
        frames = s.future_frames.copy()
        (_, back), mask = record["returns"][0], record["edit_mask"]
        frames[back - s.context][mask] = s.frames[record["edit_before"]][mask]  # the cell as it was
        wrong.append(frames)
    rows = memory.score_memory(scenarios, np.stack(wrong), "old_block")
    assert overall(rows, "edit_present") == 0.0
    assert overall(rows, "edit_color_error") > memory.MIN_EDIT_CONTRAST
    assert overall(rows, "edit_psnr_db") < 30.0


def test_edited_cell_pixels_are_the_pixels_the_edit_changed(kinds) -> None:
    for s in kinds["edit"]:
        record = s.params["memory"]
        before = record["edit_before"]
        changed = np.abs(s.frames[before + 1].astype(int) - s.frames[before]).max(-1) > 0
        mask = record["edit_mask"]
        assert mask.sum() >= memory.MIN_EDIT_PIXELS
        assert (mask != changed).sum() <= 0.03 * mask.sum()  # edge pixels at a block's border may differ


def test_eval_writes_the_memory_report_with_return_frames(tmp_path) -> None:
    assert "memory" not in EvalConfig().suites  # minutes for a model on a CPU: only when named
    evaluate(
        EvalConfig(
            suites=["memory"],
            predictors=["truth", "copy_last"],
            n=1,
            split=["id"],
            out=str(tmp_path),
            progress=False,
        )
    )
    rows = read_results(tmp_path / "results.json")["rows"]
    truth = {r["metric"]: r["value"] for r in rows if r["predictor"] == "truth" and r["horizon"] is None}
    assert truth["lookaway_psnr_db"] == MAX_PSNR_DB and truth["edit_present"] == 1.0
    assert truth["occlusion_reappearance_rate"] == 1.0 and "orbit_psnr_db" in truth
    assert (tmp_path / "example_memory_id.png").exists()
    assert "predictors at steps 1, 3, 5, 7, 8, 9, 10" in (tmp_path / "summary.md").read_text()
