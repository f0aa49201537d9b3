"""Rotary time embedding (RoPE) over frame indices, shared by the DiT and the caches that move keys in time."""

from __future__ import annotations

import torch


def rope_frequencies(head_dim: int, base: float, device=None) -> torch.Tensor:
    """Angular speeds (head_dim / 2,) in radians per frame, float64: the fastest 1, the slowest 1 / base."""
    half = head_dim // 2
    return base ** (-torch.arange(half, device=device, dtype=torch.float64) / half)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE: rotate pairs (x[i], x[i + head_dim/2]) of x (B, heads, S, head_dim) by angles (S, head_dim/2).

    Rotations compose, so a key already rotated to frame p and rotated again by d frames is the key
    of frame p + d: a cache can move held keys in time without the network.
    """
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
