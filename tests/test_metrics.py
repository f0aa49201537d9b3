"""worldsim.metrics: PSNR and MSE against numbers computed by hand, on numpy and torch alike."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldsim.metrics import (
    MAX_PSNR_DB,
    frame_mse,
    frame_psnr,
    mse,
    pooled_psnr,
    psnr_from_mse,
    weighted_mse,
)
from worldsim.models.autoencoder import psnr as autoencoder_psnr
from worldsim.training.rollout_metrics import psnr_per_frame

PIXELS = 64 * 64 * 3  # values in one 64x64 RGB frame


@pytest.fixture
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)


def test_one_pixel_off_by_255_in_a_64x64_rgb_frame(frame) -> None:
    truth, off = frame.copy(), frame.copy()
    truth[10, 20, 1], off[10, 20, 1] = 0, 255
    assert mse(off, truth) == pytest.approx(255**2 / PIXELS)
    # 10 log10(255^2 / (255^2 / 12288)) = 10 log10(12288)
    assert pooled_psnr(off, truth) == pytest.approx(40.8948, abs=1e-4)
    one_level = truth.copy()
    one_level[0, 0, 0] ^= 1
    # 10 log10(255^2 * 12288): the most two different 64x64 RGB frames score, below the cap
    assert pooled_psnr(one_level, truth) == pytest.approx(89.0256, abs=1e-4)


def test_psnr_of_known_squared_errors() -> None:
    assert psnr_from_mse(100.0) == pytest.approx(28.1308, abs=1e-4)  # 10 log10(65025 / 100)
    assert psnr_from_mse(255.0**2) == 0.0
    assert psnr_from_mse(1.0, peak=2.0) == pytest.approx(10 * math.log10(4))
    assert psnr_from_mse(1e-12) == MAX_PSNR_DB  # above the cap: capped
    assert math.isnan(psnr_from_mse(math.nan)) and torch.isnan(psnr_from_mse(torch.tensor(math.nan)))
    assert np.isnan(psnr_from_mse(np.array([math.nan]))).all()


def test_identical_frames_score_the_cap_everywhere(frame) -> None:
    clip = np.stack([frame, frame])
    assert pooled_psnr(frame, frame) == MAX_PSNR_DB
    assert frame_psnr(clip, clip).tolist() == [MAX_PSNR_DB] * 2
    assert psnr_from_mse(0.0) == MAX_PSNR_DB
    with np.errstate(all="raise"):  # no divide-by-zero warning on the way
        assert psnr_from_mse(np.zeros(3)).tolist() == [MAX_PSNR_DB] * 3
    assert psnr_from_mse(torch.zeros(2)).tolist() == [MAX_PSNR_DB] * 2
    as_clip = torch.from_numpy(clip)[None].movedim(-1, -3)  # (1, 2, 3, H, W)
    assert psnr_per_frame(as_clip, as_clip).tolist() == [[MAX_PSNR_DB] * 2]
    unit = torch.from_numpy(frame).movedim(-1, 0)[None].float() / 127.5 - 1.0  # (1, 3, H, W)
    assert autoencoder_psnr(unit, unit).item() == MAX_PSNR_DB


def test_per_frame_and_pooled_psnr_differ_as_defined(frame) -> None:
    exact, off = frame.copy(), frame.astype(np.int16)
    off[:, :, 0] = np.where(off[:, :, 0] >= 30, off[:, :, 0] - 30, off[:, :, 0] + 30)  # every red value off by 30
    truth, predicted = np.stack([frame, frame]), np.stack([exact, off.astype(np.uint8)])
    assert frame_mse(predicted, truth).tolist() == pytest.approx([0.0, 300.0])  # 30^2 over one channel in three
    per_frame = frame_psnr(predicted, truth)
    assert per_frame.tolist() == pytest.approx([MAX_PSNR_DB, 10 * math.log10(65025 / 300)])
    # Pooled: the PSNR of the mean error (150), far below the mean of the two dB values (~62 dB).
    assert pooled_psnr(predicted, truth) == pytest.approx(10 * math.log10(65025 / 150))
    assert per_frame.mean() > pooled_psnr(predicted, truth) + 30


def test_numpy_and_torch_agree(frame) -> None:
    rng = np.random.default_rng(1)
    clip = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    truth = np.clip(clip.astype(np.int16) + rng.integers(-20, 21, clip.shape), 0, 255).astype(np.uint8)
    expected = frame_psnr(clip, truth)
    assert [pooled_psnr(a, b) for a, b in zip(clip, truth)] == pytest.approx(expected.tolist(), abs=1e-12)
    errors = frame_mse(clip, truth)
    assert psnr_from_mse(torch.from_numpy(errors)).numpy() == pytest.approx(expected, abs=1e-12)
    as_clip = lambda frames: torch.from_numpy(frames)[None].movedim(-1, -3)  # noqa: E731  (1, T, 3, H, W)
    assert psnr_per_frame(as_clip(clip), as_clip(truth))[0].numpy() == pytest.approx(expected, abs=1e-4)  # float32


def test_weighted_mse_and_psnr_match_a_hand_computation() -> None:
    truth = torch.zeros(1, 3, 1, 2)  # (B, C, H, W): two pixels
    prediction = torch.tensor([1.0, 0.5]).view(1, 1, 1, 2).expand(1, 3, 1, 2)  # errors 1 and 0.25 per channel
    weight = torch.tensor([3.0, 1.0]).view(1, 1, 1, 2)
    assert weighted_mse(prediction, truth).item() == pytest.approx((1 + 0.25) / 2)
    assert weighted_mse(prediction, truth, weight).item() == pytest.approx((3 * 1 + 1 * 0.25) / 4)  # 0.8125
    # The autoencoder's PSNR: frames in [-1, 1], peak-to-peak 2, so 10 log10(4 / 0.8125).
    assert autoencoder_psnr(prediction, truth, weight).item() == pytest.approx(6.9224, abs=1e-4)
    assert autoencoder_psnr(torch.full_like(truth, 3.0), torch.ones_like(truth)).item() == MAX_PSNR_DB  # 3 clamps to 1
    assert weighted_mse(prediction, truth, torch.zeros_like(weight)).item() == 0.0  # no weight: nothing counted
