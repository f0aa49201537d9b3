"""Eval scenarios are fixed by their arguments, follow the split, and replay exactly."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.envs.physics import PhysicsEnv
from worldsim.evals.baselines import CopyLastPredictor
from worldsim.evals.protocol import Scenario
from worldsim.evals.scenarios import make_scenarios, predict_scenarios, replay, scenario_seed


def test_same_arguments_same_scenarios() -> None:
    a = make_scenarios("worldsim/Physics-v0", 3, 4, 6, split="ood", seed=5)
    b = make_scenarios("worldsim/Physics-v0", 3, 4, 6, split="ood", seed=5)
    for x, y in zip(a, b):
        assert x.seed == y.seed and x.caption == y.caption and x.params == y.params
        assert np.array_equal(x.frames, y.frames) and np.array_equal(x.actions, y.actions)
        assert x.state.keys() == y.state.keys()
        assert all(np.array_equal(x.state[k], y.state[k]) for k in x.state)
    other = make_scenarios("worldsim/Physics-v0", 3, 4, 6, split="ood", seed=6)
    assert not any(np.array_equal(x.frames, y.frames) for x, y in zip(a, other))


def test_shapes_and_stacked_state() -> None:
    (scenario,) = make_scenarios("worldsim/Occlusion-v0", 1, 3, 5, env_kwargs={"width": 48, "height": 32})
    assert scenario.frames.shape == (8, 32, 48, 3) and scenario.frames.dtype == np.uint8
    assert scenario.actions.shape == (7, 2)
    assert scenario.state["object_centroid"].shape == (8, 3, 2)
    assert scenario.state["segmentation"].shape == (8, 32, 48)
    assert scenario.state["depth"].shape == (8, 32, 48)
    assert scenario.context_frames.shape[0] == 3 and scenario.future_frames.shape[0] == 5


def test_splits_draw_their_own_parameters() -> None:
    for split in ("id", "ood"):
        for scenario in make_scenarios("worldsim/Physics-v0", 4, 2, 2, split=split):
            assert scenario.split == split
            assert PhysicsEnv.params["color"].contains(scenario.params["color"][0], split)
            assert PhysicsEnv.params["count"].contains(scenario.params["count"], split)


def test_eval_seeds_are_not_training_seeds() -> None:
    from worldsim.data.collect import episode_seed

    training = {episode_seed(0, i) for i in range(1000)}
    assert not training & {scenario_seed(0, i) for i in range(1000)}


def test_replay_reproduces_the_future_and_a_nudge_changes_it() -> None:
    scenario = make_scenarios("worldsim/Physics-v0", 1, 4, 12, seed=2)[0]
    assert np.array_equal(replay(scenario), scenario.future_frames)

    def lift(env, rng) -> None:  # a visible change: 0.2 m up
        body = env.object_body(0)
        position, orientation = env.client.getBasePositionAndOrientation(body)
        env.client.resetBasePositionAndOrientation(body, [position[0], position[1], position[2] + 0.2], orientation)

    assert not np.array_equal(replay(scenario, perturbation=lift)[0], scenario.future_frames[0])


def test_predict_scenarios_prepares_each_batch_and_checks_the_output() -> None:
    scenarios = make_scenarios("worldsim/Physics-v0", 5, 2, 3)

    class Recorder(CopyLastPredictor):
        prepared: list[list[Scenario]] = []

        def prepare(self, batch: list[Scenario]) -> None:
            self.prepared.append(batch)

    predictor = Recorder()
    out = predict_scenarios(predictor, scenarios, batch_size=2)
    assert out.shape == (5, 3, 64, 64, 3)
    assert [len(b) for b in predictor.prepared] == [2, 2, 1]

    class Wrong(CopyLastPredictor):
        def predict(self, context_frames, actions, text, horizon):
            return super().predict(context_frames, actions, text, horizon).astype(np.float32)

    with pytest.raises(ValueError, match="expected uint8"):
        predict_scenarios(Wrong(), scenarios)


def test_bad_arguments_say_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="split"):
        make_scenarios("worldsim/Physics-v0", 1, 2, 2, split="test")
    with pytest.raises(ValueError, match="policy"):
        make_scenarios("worldsim/Physics-v0", 1, 2, 2, policy="smart")
    with pytest.raises(ValueError, match="registered id"):
        make_scenarios("worldsim/Nope-v0", 1, 2, 2)


@pytest.mark.parametrize("policy", ["scripted", "random", "zero"])
def test_blockworld_scenarios_keep_its_integer_actions_and_replay_exactly(policy: str) -> None:
    """Actions stay in the world's dtype (MultiDiscrete int64), so the truth replays them and models read them."""
    (scenario,) = make_scenarios("worldsim/BlockWorld-v0", 1, 3, 6, policy=policy)
    assert scenario.actions.dtype == np.int64 and scenario.actions.shape == (8, 7)
    assert np.array_equal(replay(scenario), scenario.future_frames)
    physics = make_scenarios("worldsim/Physics-v0", 1, 2, 2, policy=policy)[0]
    assert physics.actions.dtype == np.float32  # the Box worlds' actions are as before
