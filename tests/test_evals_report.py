"""Normalized scores, results.json and the report files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from worldsim.evals.baselines import make_predictor
from worldsim.evals.consistency import score_consistency
from worldsim.evals.report import Example, MetricInfo, write_report
from worldsim.evals.results import ResultsError, mean_ignoring_nan, metric_row, read_results, write_results
from worldsim.evals.scenarios import make_scenarios, predict_scenarios
from worldsim.evals.scoring import normalized_score, score_rows


def row(predictor: str, metric: str, value: float, suite: str = "s") -> dict:
    return metric_row(suite, "id", predictor, metric, [value])


def test_mean_ignoring_nan_leaves_out_what_was_not_measured() -> None:
    assert mean_ignoring_nan([1.0, math.nan, 3.0]) == 2.0
    assert math.isnan(mean_ignoring_nan([math.nan])) and math.isnan(mean_ignoring_nan([]))
    assert mean_ignoring_nan([1.0, math.inf]) == math.inf  # only NaN is left out


def test_normalized_score_anchors_and_mirror() -> None:
    assert normalized_score(10.0, 10.0, 2.0, higher_is_better=False) == 0.0
    assert normalized_score(2.0, 10.0, 2.0, higher_is_better=False) == 1.0
    assert normalized_score(0.0, 10.0, 2.0, higher_is_better=False) == 1.25
    assert normalized_score(14.0, 10.0, 2.0, higher_is_better=False) == -0.5
    assert normalized_score(0.9, 0.5, 0.9, higher_is_better=True) == pytest.approx(1.0)
    assert math.isnan(normalized_score(3.0, 2.0, 2.0, higher_is_better=False))  # degenerate gap
    # Copy-last beats the perturbed truth (never flickers where the nudged simulator does): no scale,
    # else a predictor flickering 30 times more would score 30.
    assert math.isnan(normalized_score(0.04, 0.0, 0.00136, higher_is_better=False))
    assert math.isnan(normalized_score(0.5, 1.0, 0.9, higher_is_better=True))
    assert normalized_score(math.inf, 20.0, 40.0, higher_is_better=True) == math.inf


def test_suite_score_is_the_mean_of_headline_scores() -> None:
    rows = [
        row("copy_last", "err", 10),
        row("perturbed_truth", "err", 2),
        row("model", "err", 6),
        row("copy_last", "acc", 0.2),
        row("perturbed_truth", "acc", 1.0),
        row("model", "acc", 1.0),
        row("copy_last", "same", 1.0),
        row("perturbed_truth", "same", 1.0),
        row("model", "same", 5.0),
    ]
    scores = {
        (s["predictor"], s["metric"]): s["score"] for s in score_rows(rows, {"acc"}, {"s": ["err", "acc", "same"]})
    }
    assert scores[("model", "err")] == 0.5 and scores[("model", "acc")] == 1.0
    assert math.isnan(scores[("model", "same")])
    assert scores[("model", "suite")] == 0.75  # the degenerate metric is skipped
    assert scores[("copy_last", "suite")] == 0.0 and scores[("perturbed_truth", "suite")] == 1.0


def test_scores_of_real_baselines_on_consistency() -> None:
    scenarios = make_scenarios("worldsim/Orbit-v0", 2, context=4, horizon=8, split="id", seed=1)
    rows = []
    for name in ("copy_last", "perturbed_truth", "truth"):
        rows += score_consistency(scenarios, predict_scenarios(make_predictor(name), scenarios), name)
    scores = {
        s["predictor"]: s["score"]
        for s in score_rows(rows, {"psnr_db", "ssim"}, {"consistency": ["psnr_db", "ssim", "loop_closure_mae"]})
        if s["metric"] == "suite"
    }
    assert scores["copy_last"] == 0.0 and scores["perturbed_truth"] == pytest.approx(1.0)
    assert scores["truth"] >= 1.0


def test_results_round_trip_and_schema_refusal(tmp_path: Path) -> None:
    rows = [
        metric_row("consistency", "id", "truth", "psnr_db", [math.inf, 30.0]),
        metric_row("consistency", "id", "copy_last", "sampson_px", [1.0, 2.0, 3.0], horizon=2),
        metric_row("consistency", "ood", "copy_last", "loop_closure_mae", []),
    ]
    assert rows[1]["value"] == 2.0 and rows[1]["n"] == 3
    assert rows[1]["ci_low"] == pytest.approx(2.0 - 1.959964 / math.sqrt(3))
    path = write_results(tmp_path / "results.json", rows, {"n": 3}, "0.1.0")
    document = read_results(path)
    assert document["schema"] == 1 and document["config"] == {"n": 3}
    assert document["rows"][0]["value"] == math.inf and math.isnan(document["rows"][2]["value"])
    assert document["rows"][1] == rows[1]
    raw = json.loads(path.read_text())
    raw["schema"] = 2
    path.write_text(json.dumps(raw))
    with pytest.raises(ResultsError, match="schema 2; this worldsim reads schema 1"):
        read_results(path)


def test_report_files_hold_the_tables(tmp_path: Path) -> None:
    rows = [
        metric_row("consistency", "id", p, "psnr_db", [v, v + 1], horizon=h)
        for p, v in (("copy_last", 20.0), ("truth", 90.0))
        for h in (None, 1, 2)
    ]
    rows += [metric_row("consistency", "id", "perturbed_truth", "psnr_db", [60.0])]
    path = write_results(tmp_path / "results.json", rows, {}, "0.1.0")
    frames = np.zeros((4, 64, 64, 3), np.uint8)
    example = Example("consistency", "id", frames, frames, {"copy_last": frames, "truth": frames})
    scores = score_rows(rows, {"psnr_db"}, {"consistency": ["psnr_db"]})
    html_path, md_path = write_report(tmp_path, read_results(path), scores, MetricInfo({"psnr_db"}), [example])
    summary = md_path.read_text()
    assert "| metric | copy_last | truth | perturbed_truth |" in summary
    assert "| psnr_db | 20.5 | **90.5** | 60 |" in summary
    assert "| consistency (id) | 0 | 1.77 | 1 |" in summary
    page = html_path.read_text()
    assert "<table>" in page and page.count("data:image/png;base64,") >= 3 and "<b>90.5</b>" in page
    assert (tmp_path / "example_consistency_id.png").is_file()  # the strip, beside the page
    assert "](example_consistency_id.png)" in summary
