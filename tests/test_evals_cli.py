"""`worldsim eval` end to end: help, a small baseline run, and clear refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from worldsim.evals.results import read_results
from worldsim.evals.run import EvalConfig, evaluate, make_predictors, world_ids


def worldsim(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worldsim.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_eval_help_lists_suites_and_metrics(tmp_path: Path) -> None:
    result = worldsim("eval", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in (
        "physics",
        "permanence",
        "consistency",
        "action",
        "sampson_px",
        "push_accuracy",
        "orbit_yaw_error_deg",
        "copy_last",
    ):
        assert word in result.stdout


@pytest.mark.slow
def test_eval_with_baselines_writes_results_report_and_summary(tmp_path: Path) -> None:
    result = worldsim(
        "eval",
        "suites=[physics,consistency,action]",
        "predictors=[copy_last,optical_flow,truth]",
        "n=2",
        "split=[id]",
        "out=run",
        "progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    report = tmp_path / "run" / "report.html"
    assert f"report: {report.relative_to(tmp_path)}" in result.stdout
    document = read_results(tmp_path / "run" / "results.json")
    seen = {(r["suite"], r["predictor"]) for r in document["rows"]}
    for suite in ("physics", "consistency", "action"):
        for predictor in ("copy_last", "optical_flow", "truth", "perturbed_truth"):
            assert (suite, predictor) in seen
    truth = {r["metric"]: r["value"] for r in document["rows"] if r["predictor"] == "truth" and r["horizon"] is None}
    assert truth["loop_closure_mae"] == 0.0 and truth["push_accuracy"] >= 0.9
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "## Normalized scores" in summary and "## action — id" in summary
    assert "<table>" in report.read_text()


def test_model_predictor_needs_a_checkpoint() -> None:
    with pytest.raises(ValueError, match="needs checkpoint="):
        make_predictors(EvalConfig(predictors=["model"]))


def test_sampling_settings_reach_the_model_predictors_only() -> None:
    reference, copy_last = make_predictors(
        EvalConfig(predictors=["reference", "copy_last"], anchors=False, sampling={"cfg_text": 3.0, "steps": 2})
    )
    assert reference.sampling.given() == {"cfg_text": 3.0, "steps": 2}
    assert not hasattr(copy_last, "sampling")
    with pytest.raises(ValueError, match="cfg_txt"):  # a misspelt setting fails before anything is scored
        make_predictors(EvalConfig(predictors=["reference"], anchors=False, sampling={"cfg_txt": 3.0}))


def test_unknown_suite_is_refused(tmp_path: Path) -> None:
    result = worldsim("eval", "suites=[physcs]", "out=run", cwd=tmp_path)
    assert result.returncode != 0
    assert "suites ['physcs'] are unknown" in result.stderr


@pytest.mark.slow
def test_a_predictor_is_skipped_on_worlds_it_does_not_support(tmp_path: Path) -> None:
    (tmp_path / "physics_only.py").write_text(
        "class PhysicsOnly:\n"
        "    name = 'physics_only'\n"
        "    def supports(self, scenario):\n"
        "        return scenario.env_id == 'worldsim/Physics-v0'\n"
        "    def predict(self, context_frames, actions, text, horizon):\n"
        "        return context_frames[:, -1:].repeat(horizon, axis=1)\n"
    )
    result = worldsim(
        "eval",
        "suites=[physics,consistency]",
        "predictors=[physics_only.py:PhysicsOnly]",
        "n=1",
        "split=[id]",
        "out=run",
        "progress=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "skipped (the predictor does not support that world): physics_only on worldsim/Orbit-v0" in result.stdout
    rows = read_results(tmp_path / "run" / "results.json")["rows"]
    assert {r["suite"] for r in rows if r["predictor"] == "physics_only"} == {"physics"}
    assert {r["suite"] for r in rows if r["predictor"] == "copy_last"} == {"physics", "consistency"}


def test_worlds_keeps_only_the_named_worlds_and_skips_suites_without_one(tmp_path: Path, capsys) -> None:
    evaluate(
        EvalConfig(
            suites=["physics", "action", "memory"],
            worlds=["orbit"],
            predictors=["copy_last", "truth"],
            n=1,
            split=["id"],
            anchors=False,
            out=str(tmp_path),
            progress=False,
        )
    )
    assert "skipped (no scenario in worlds=['orbit']): physics/id" in capsys.readouterr().out
    rows = read_results(tmp_path / "results.json")["rows"]
    assert {r["suite"] for r in rows} == {"action", "memory"}
    assert {r["metric"].split("_")[0] for r in rows} == {"orbit"}  # no Push, BlockWorld or Occlusion metric


def test_worlds_are_named_by_env_id_or_short_name_and_unknown_ones_refused(tmp_path: Path) -> None:
    assert world_ids(["Orbit", "worldsim/Push-v0"]) == {"worldsim/Orbit-v0", "worldsim/Push-v0"}
    assert world_ids([]) is None
    with pytest.raises(ValueError, match=r"worlds \['orbt'\] are unknown: choose from \['blockworld'"):
        world_ids(["orbt"])
    with pytest.raises(ValueError, match="leaves every suite .* without a scenario"):
        evaluate(EvalConfig(suites=["physics"], worlds=["orbit"], n=1, split=["id"], out=str(tmp_path), progress=False))
