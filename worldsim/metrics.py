"""Image metrics, each defined once: mean squared error, PSNR and SSIM of frames.

The eval suites, ``worldsim play`` and the training logs all take their numbers from here, so a
PSNR means the same thing wherever it is reported. A bottom layer: numpy and torch, nothing else
of worldsim (and OpenCV's Gaussian blur for SSIM).

Two ways to average over several frames, named apart:

- **per frame** (``frame_psnr``): one PSNR per frame; a caller averages those dB values (the
  per-scenario mean that video-prediction papers report);
- **pooled** (``pooled_psnr``): the PSNR of the mean squared error over every frame given. On
  the squared-error scale a frame weighs what its error is, so one exact frame cannot dominate.

uint8 frames are compared in float64 on the 0-255 scale; tensors in their own dtype.
"""

from __future__ import annotations

import math
from typing import TypeVar

import cv2
import numpy as np
import torch

#: PSNR given to identical frames, and the most any PSNR here can be. The PSNR of identical
#: frames is infinite (their squared error is 0), and one such frame would make every mean over
#: frames or scenarios infinite; the cap keeps means finite. Two different 8-bit 64x64 RGB frames
#: score at most 89.0 dB (one level off in one pixel), so there only identical frames meet the cap;
#: a pooled PSNR over 16 such frames can pass it (101.1 dB) and is capped all the same.
MAX_PSNR_DB = 100.0
UINT8_PEAK = 255.0  # peak-to-peak range of uint8 pixels
SSIM_C1, SSIM_C2 = (0.01 * UINT8_PEAK) ** 2, (0.03 * UINT8_PEAK) ** 2  # Wang et al.'s stabilisers

MSE = TypeVar("MSE", float, np.ndarray, torch.Tensor)


def mse(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean squared error (0-255 scale) over every pixel and channel of uint8 frames of any shape."""
    assert predicted.shape == truth.shape, f"predicted {predicted.shape} vs truth {truth.shape}"
    return float(np.mean((predicted.astype(np.float64) - truth.astype(np.float64)) ** 2))


def frame_mse(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean squared error (N,) of each of N uint8 frames (N, H, W, 3), 0-255 scale."""
    assert predicted.shape == truth.shape, f"predicted {predicted.shape} vs truth {truth.shape}"
    error = (predicted.astype(np.float64) - truth.astype(np.float64)) ** 2
    return error.reshape(len(error), -1).mean(1)


def psnr_from_mse(mse: MSE, peak: float = UINT8_PEAK) -> MSE:
    """PSNR in dB, ``10 log10(peak^2 / mse)``, capped at ``MAX_PSNR_DB`` (which a zero error gives).

    ``mse`` is a float, or an array or tensor of them (each converted alone); ``peak`` is the
    peak-to-peak range of the pixel scale: 255 for uint8, 2 for frames in [-1, 1].
    """
    if isinstance(mse, torch.Tensor):
        return (10.0 * torch.log10(peak**2 / mse)).clamp_max(MAX_PSNR_DB)
    if isinstance(mse, np.ndarray):
        with np.errstate(divide="ignore"):
            return np.minimum(10.0 * np.log10(peak**2 / mse), MAX_PSNR_DB)
    # math.log10, not np.log10: they can differ in the last bit, and the suites' scalars always used math.
    return MAX_PSNR_DB if mse == 0 else min(10.0 * math.log10(peak**2 / mse), MAX_PSNR_DB)  # NaN stays NaN


def pooled_psnr(predicted: np.ndarray, truth: np.ndarray) -> float:
    """PSNR (dB) of the mean squared error over all of two uint8 arrays: of one frame, its PSNR."""
    return psnr_from_mse(mse(predicted, truth))


def frame_psnr(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each of N uint8 frames (N, H, W, 3): an array (N,)."""
    return psnr_from_mse(frame_mse(predicted, truth))


def ssim(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004; Gaussian window 11, sigma 1.5) of two uint8 (H, W, 3) images, over channels."""
    x, y = predicted.astype(np.float64), truth.astype(np.float64)

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    index = ((2 * mx * my + SSIM_C1) * (2 * cxy + SSIM_C2)) / ((mx * mx + my * my + SSIM_C1) * (vx + vy + SSIM_C2))
    return float(index.mean())


def weighted_mse(prediction: torch.Tensor, truth: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error (a 0-d tensor) of float frames (B, C, H, W), pooled over the batch.

    The error of a pixel is the mean over its channels; with ``weight`` (B, 1, H, W) pixels count
    by their weight, ``sum(weight * error) / sum(weight)``, else all alike.
    """
    assert prediction.shape == truth.shape, f"prediction {tuple(prediction.shape)} vs truth {tuple(truth.shape)}"
    error = (prediction - truth).square().mean(dim=1, keepdim=True)  # (B, 1, H, W)
    if weight is None:
        return error.mean()
    return (error * weight).sum() / weight.sum().clamp_min(1e-8)
