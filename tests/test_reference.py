"""The reference models shipped in the package: one per world, small, loadable, scored as 'reference'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import worldsim
from worldsim.envs import WORLDS, world_name
from worldsim.references import REFERENCE_DIR


def test_every_shipped_world_has_a_small_half_precision_model_of_that_world() -> None:
    assert worldsim.reference_worlds() == ["blockworld", "occlusion", "orbit", "physics", "push"]
    env_ids = {world_name(env_id): env_id for env_id in WORLDS}
    for world in worldsim.reference_worlds():
        path = worldsim.reference_checkpoint(world)
        assert path == worldsim.reference_checkpoint(env_ids[world])
        assert path.stat().st_size <= 20e6
        weights = torch.load(path, weights_only=True)["weights"]
        assert {t.dtype for part in weights.values() for t in part.values() if t.is_floating_point()} == {torch.float16}
        model = worldsim.WorldModel.from_checkpoint(path, device="cpu")
        assert model.env_id == env_ids[world] and model.frame_shape == (64, 64, 3)
    assert (REFERENCE_DIR / "README.md").is_file()
    with pytest.raises(FileNotFoundError, match="no reference model for 'cartpole'.*shipped ones are"):
        worldsim.reference_checkpoint("cartpole")


@pytest.mark.slow
def test_reference_predictor_scores_each_world_with_its_own_model() -> None:
    from worldsim.evals.baselines import make_predictor
    from worldsim.evals.scenarios import make_scenarios, predict_scenarios

    predictor = make_predictor("reference")
    assert predictor.name == "reference"
    push = make_scenarios("worldsim/Push-v0", 2, 4, 2, "id", 0)
    shipped = [env_id for env_id in WORLDS if world_name(env_id) in worldsim.reference_worlds()]
    assert sorted(model.env_id for model, _ in predictor.models.values()) == sorted(shipped)
    frames = predict_scenarios(predictor, push)
    assert frames.shape == (2, 2, 64, 64, 3) and predictor.model.env_id == "worldsim/Push-v0"
    assert np.array_equal(frames, predict_scenarios(predictor, push))  # seeded sampling
