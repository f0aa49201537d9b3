"""Rollout quality at fixed horizons, always beside the copy-last-frame baseline, and a picture of it.

Horizon h is the h-th generated frame after the context (h = 1 is the frame right after the last
context frame). Metrics are computed per clip and frame, then averaged over clips: per-frame PSNR
(not the PSNR of the mean error), as video-prediction papers report it.
"""

from __future__ import annotations

from typing import Sequence

import torch

from worldsim.metrics import psnr_from_mse


def copy_last(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The baseline prediction: the last context frame (B, ...) of context (B, T0, ...), repeated horizon times."""
    assert context.shape[1] >= 1, f"context {tuple(context.shape)} holds no frame to copy"
    return context[:, -1:].expand(-1, horizon, *context.shape[2:])  # (B, horizon, ...)


def mse_per_frame(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared error (B, T) of float frames (B, T, ...)."""
    assert prediction.shape == truth.shape, f"prediction {tuple(prediction.shape)} vs truth {tuple(truth.shape)}"
    return (prediction.float() - truth.float()).square().flatten(2).mean(-1)


def psnr_per_frame(prediction: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """PSNR in dB (B, T) of uint8 frames (B, T, 3, H, W); identical frames score ``metrics.MAX_PSNR_DB``."""
    assert prediction.dtype == torch.uint8 and truth.dtype == torch.uint8, (
        f"PSNR takes uint8 frames, got {prediction.dtype} and {truth.dtype}"
    )
    return psnr_from_mse(mse_per_frame(prediction, truth))


def at_horizons(per_frame: torch.Tensor, horizons: Sequence[int], name: str) -> dict[str, float]:
    """{f"{name}_h{h}": mean over clips of per_frame (B, H)[:, h - 1]} for every h <= H."""
    return {f"{name}_h{h}": per_frame[:, h - 1].mean().item() for h in horizons if 1 <= h <= per_frame.shape[1]}


def comparison_grid(
    context: torch.Tensor, truth: torch.Tensor, prediction: torch.Tensor, gutter: int = 2
) -> torch.Tensor:
    """One uint8 image (3, H', W') of uint8 frames (B, T, 3, H, W): per clip two rows,
    [context | truth] above [blank | prediction], so each predicted frame sits under its truth.

    Gutters are dark gray (scenes may have a white sky); a wider one marks where the context ends.
    """
    B, T0, _, H, W = context.shape
    horizon = truth.shape[1]
    assert prediction.shape == truth.shape, f"prediction {tuple(prediction.shape)} vs truth {tuple(truth.shape)}"
    columns = T0 + horizon
    split = 3 * gutter  # extra space between the last context frame and the first future frame
    height = 2 * B * (H + gutter) + (B - 1) * split
    width = columns * (W + gutter) + split
    grid = torch.full((3, height, width), 48, dtype=torch.uint8)
    for b in range(B):
        top = b * (2 * (H + gutter) + split)
        rows = [(torch.cat([context[b], truth[b]]), 0), (prediction[b], T0)]
        for r, (frames, first_column) in enumerate(rows):
            y = top + r * (H + gutter)
            for k, frame in enumerate(frames):
                column = first_column + k
                x = column * (W + gutter) + (split if column >= T0 else 0)
                grid[:, y : y + H, x : x + W] = frame
    return grid
