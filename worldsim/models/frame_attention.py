"""Attention of a long clip, each frame over only the few frames it sees: the sparse form of a block mask.

A clip longer than the attention window (every memory model trains on one) lets each frame see its
window and at most ``slots`` remembered frames, yet a dense mask still scores every token against
every other: at 64 frames of 64 tokens that is 4,096 x 4,096 scores per head, most of them masked.
Gathering each frame's visible frames instead costs T x K frames of scores (K = window + 1 + slots),
and gives the same attention: a softmax does not depend on the order of its keys, and a masked key
adds nothing. A training step of eight 64-frame clips of the tiny DiT (window 7, 8 slots) takes
15.9 s instead of 25.3 to 27.4 s on one core of the 2-core EPYC, and the FLOPs per clip fall from
128 to 50 GFLOPs (docs/memory.md has the command).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from worldsim.models.rope import rotate


@dataclass(frozen=True)
class SeenFrames:
    """Which frames each frame of a clip attends to: index (B, T, K) into the clip, valid (B, T, K) bool."""

    index: torch.Tensor
    valid: torch.Tensor
    # RoPE angles (B, T, K, head_dim / 2) that move each seen frame's keys forward in time, or None
    key_angles: Optional[torch.Tensor] = None

    @classmethod
    def from_visibility(cls, frames_seen: torch.Tensor, batch: int, width: int) -> SeenFrames:
        """From a block mask (T, T) or (B, T, T) [query, key]: the seen keys of each query, earliest first.

        ``width`` (K) is the most frames a query may see (window + 1 + memory slots), given rather than
        counted so that building this never waits on the device; a query that sees fewer is padded
        with invalid entries.
        """
        seen = frames_seen.expand(batch, -1, -1) if frames_seen.dim() == 2 else frames_seen
        T = seen.shape[-1]
        # Seen keys carry their index, unseen ones T + index, so a sort puts the seen first, in order.
        order = torch.arange(T, device=seen.device)
        index = torch.where(seen, order, T + order).sort(dim=-1).values[..., : min(width, T)]
        return cls(index=index % T, valid=index < T)

    def read_within(self, offset: int, positions: torch.Tensor, freqs: torch.Tensor) -> SeenFrames:
        """These seen frames with any more than ``offset`` frames back read as exactly ``offset`` back.

        positions (T,) the frame index of each frame of the clip; freqs the RoPE speeds (head_dim / 2,).
        A memory cache moves its bank's keys the same way (``MemoryKVCache.with_memory``).
        """
        back = positions[:, None] - positions[self.index]  # (B, T, K) frames back
        shift = (back - offset).clamp(min=0).masked_fill(~self.valid, 0)
        return SeenFrames(self.index, self.valid, shift.double()[..., None] * freqs)

    @property
    def width(self) -> int:
        """K, the most frames a query sees."""
        return self.index.shape[-1]

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
        """Attention of q, k, v (B, heads, T*N, head_dim), each frame's queries over its seen frames' keys."""
        B, h, S, hd = q.shape
        T, K = self.index.shape[1], self.width
        N = S // T

        def frames(x: torch.Tensor) -> torch.Tensor:  # (B, heads, T*N, hd) -> (B, T, heads, N, hd)
            return x.view(B, h, T, N, hd).transpose(1, 2).contiguous()

        rows = torch.arange(B, device=q.device)[:, None, None]
        keys = frames(k)[rows, self.index]  # (B, T, K, heads, N, hd)
        if self.key_angles is not None:
            angles = self.key_angles[:, :, :, None, None]  # (B, T, K, 1, 1, hd/2)
            keys = rotate(keys, angles.cos().float(), angles.sin().float())
        values = frames(v)[rows, self.index]

        def stacked(x: torch.Tensor) -> torch.Tensor:  # (B, T, K, heads, N, hd) -> (B*T, heads, K*N, hd)
            return x.permute(0, 1, 3, 2, 4, 5).reshape(B * T, h, K * N, hd)

        mask = self.valid.repeat_interleave(N, dim=-1).reshape(B * T, 1, 1, K * N)
        queries = frames(q).reshape(B * T, h, N, hd)
        y = F.scaled_dot_product_attention(queries, stacked(keys), stacked(values), attn_mask=mask, dropout_p=dropout_p)
        return y.view(B, T, h, N, hd).transpose(1, 2).reshape(B, h, S, hd)
