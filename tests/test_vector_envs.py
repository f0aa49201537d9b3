"""The worlds run under Gymnasium's vector envs exactly as they do alone."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import worldsim  # noqa: F401  (registers the ids)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_env_matches_single_envs(mode: str) -> None:
    seeds = [3, 4]
    vector = gymnasium.make_vec("worldsim/Push-v0", num_envs=2, vectorization_mode=mode)
    singles = [gymnasium.make("worldsim/Push-v0") for _ in seeds]
    try:
        observations, infos = vector.reset(seed=seeds)
        assert observations.shape == (2, 64, 64, 3) and observations.dtype == np.uint8
        assert list(infos["caption"]) == [env.reset(seed=s)[1]["caption"] for env, s in zip(singles, seeds)]
        actions = np.random.default_rng(0).uniform(-1, 1, (5, 2, 2)).astype(np.float32)
        for step_actions in actions:
            observations, rewards, *_ = vector.step(step_actions)
            for i, env in enumerate(singles):
                observation, reward, *_ = env.step(step_actions[i])
                np.testing.assert_array_equal(observations[i], observation)
                assert rewards[i] == pytest.approx(reward)
    finally:
        vector.close()
        for env in singles:
            env.close()
