"""The reward suite: real Push episodes replayed open loop, predicted return against the real one."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_world_model import build_model_file, one_thread  # noqa: F401  (fixture)

from worldsim.data.collect import CollectConfig, collect
from worldsim.envs.push import GOAL_RADIUS
from worldsim.evals import reward
from worldsim.evals.baselines import CopyLastPredictor, GroundTruthPredictor, WorldModelPredictor
from worldsim.evals.results import read_results
from worldsim.evals.run import EvalConfig
from worldsim.evals.scenarios import make_env, make_scenarios


@pytest.fixture(scope="module")
def push_env():
    env = make_env(reward.ENV_ID, reward.ENV_KWARGS)
    yield env
    env.close()


@pytest.fixture(scope="module")
def push_model(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:  # noqa: F811
    """A tiny random-weight model file of worldsim/Push-v0."""
    root = tmp_path_factory.mktemp("world") / "push"
    collect(
        CollectConfig(env="worldsim/Push-v0", episodes=2, max_steps=8, policy="scripted", progress=False, out=str(root))
    )
    return build_model_file(root, root.parent / "model.pt")


def test_episodes_start_with_the_world_left_alone_and_end_with_the_real_episode(push_env) -> None:
    episode = reward.record_episode(push_env, "scripted", seed=7)
    scenario = episode.scenario
    assert scenario.context == reward.CONTEXT and len(episode.rewards) == scenario.horizon <= reward.HORIZON
    assert np.all(scenario.actions[: reward.CONTEXT - 1] == 0)  # no action during the context
    still = scenario.context_frames.astype(int)
    assert np.abs(still - still[0]).max() <= 1  # the scene settles by a shade at most: nothing moves
    distance = scenario.state["target_goal_distance"]  # Push pays 10 per meter of progress, 5 on success
    success = 5.0 if distance[-1] < GOAL_RADIUS else 0.0
    assert success and scenario.horizon < reward.HORIZON  # the scripted push succeeds, and the episode ends there
    assert episode.real_return == pytest.approx(
        10.0 * (distance[reward.CONTEXT - 1] - distance[-1]) + success, abs=1e-5
    )


def test_the_simulator_predicts_the_real_return_exactly_and_copy_last_predicts_nothing(push_env) -> None:
    for policy in ("scripted", "diagonal"):
        episode = reward.record_episode(push_env, policy, seed=3)
        truth = reward.score_episode(episode, GroundTruthPredictor())
        assert truth["predicted"] == truth["real"] == episode.real_return
        assert truth["found"].all() and np.all(truth["error_px"] == 0)
        floor = reward.score_episode(episode, CopyLastPredictor())
        assert floor["predicted"] == 0.0 and floor["real"] == episode.real_return
    assert floor["error_px"][1] > 5  # the drive took the pusher away from where copy-last leaves it


def test_a_model_predicts_finite_returns_for_every_policy(push_model: Path) -> None:
    scenarios = make_scenarios(reward.ENV_ID, 2, 1, 1)
    rows = reward.score_reward(scenarios, WorldModelPredictor(str(push_model), device="cpu"))
    values = {row["metric"]: row for row in rows}
    assert set(values) == set(reward.METRICS)
    for policy in reward.POLICIES:
        assert values[f"{policy}_predicted_return"]["n"] == 2
        assert math.isfinite(values[f"{policy}_predicted_return"]["value"])
        error = values[f"{policy}_return_error"]["value"]
        assert error == pytest.approx(
            values[f"{policy}_predicted_return"]["value"] - values[f"{policy}_real_return"]["value"]
        )
        assert 0.0 <= values[f"{policy}_pusher_found"]["value"] <= 1.0
    assert values["return_abs_error"]["n"] == 2 * len(reward.POLICIES)


def test_reward_runs_only_when_named_and_skips_predictors_without_rewards(tmp_path: Path) -> None:
    assert "reward" not in EvalConfig().suites
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldsim.cli",
            "eval",
            "suites=[reward]",
            "predictors=[copy_last,optical_flow,truth]",
            "n=1",
            "split=[id]",
            "progress=false",
            "out=run",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "skipped (the suite needs what the predictor lacks): optical_flow on reward (no predict_rewards)"
        in result.stdout
    )
    rows = read_results(tmp_path / "run" / "results.json")["rows"]
    value = {(r["predictor"], r["metric"]): r["value"] for r in rows}
    assert {p for p, _ in value} == {"copy_last", "truth", "perturbed_truth"}
    assert value["truth", "return_abs_error"] == 0.0 and value["copy_last", "scripted_predicted_return"] == 0.0
    assert value["copy_last", "scripted_return_abs_error"] > 1.0  # the scripted push earns the success bonus
