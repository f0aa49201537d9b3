"""The autoencoder audit: known answers for perfect, shifted and erased reconstructions."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.evals.reconstruction import autoencoder_round_trip, score_reconstruction
from worldsim.evals.scenarios import make_scenarios
from worldsim.metrics import MAX_PSNR_DB
from worldsim.models.autoencoder import AutoencoderConfig, FrameAutoencoder


@pytest.fixture(scope="module")
def scenarios():
    return make_scenarios("worldsim/Physics-v0", 3, 2, 6, split="id", seed=0)


def values(rows: list[dict]) -> dict[str, float]:
    return {row["metric"]: row["value"] for row in rows}


def test_a_perfect_round_trip_keeps_every_object(scenarios) -> None:
    result = values(score_reconstruction(scenarios, lambda frames: frames.copy(), "identity"))
    assert result["psnr_db"] == MAX_PSNR_DB  # identical frames score the cap, not inf
    assert result["object_kept_1px"] == 1.0
    assert result["object_color_error"] == 0.0 and result["object_area_ratio"] == 1.0


def test_objects_moved_two_pixels_or_erased_are_not_kept(scenarios) -> None:
    shifted = values(score_reconstruction(scenarios, lambda f: np.roll(f, 2, axis=2), "shifted"))
    assert shifted["object_kept_1px"] < 0.1  # objects cut by the frame edge may stay in place
    gray = values(score_reconstruction(scenarios, lambda f: np.full_like(f, 128), "gray"))
    assert gray["object_kept_1px"] == 0.0 and np.isnan(gray["object_color_error"])
    assert gray["psnr_db"] < shifted["psnr_db"] < 60


def test_autoencoder_round_trip_has_the_frame_shape(scenarios) -> None:
    autoencoder = FrameAutoencoder(AutoencoderConfig(base_channels=8, num_groups=4))
    frames = scenarios[0].frames[:3]
    rebuilt = autoencoder_round_trip(autoencoder)(frames)
    assert rebuilt.shape == frames.shape and rebuilt.dtype == np.uint8
    rows = score_reconstruction(scenarios[:1], autoencoder_round_trip(autoencoder), "untrained")
    assert values(rows)["object_kept_1px"] < 0.5  # an untrained autoencoder keeps nothing
