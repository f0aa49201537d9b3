"""Keys and values of past frames, so a rollout runs the network on one new frame at a time."""

from __future__ import annotations

import torch


class KVCache:
    """Per-block self-attention keys/values of the frames a rollout has seen, oldest first.

    Frames are written by `VideoDiT.forward(..., cache=cache, update_cache=True)`; a forward with
    `update_cache=False` attends to them without changing anything (each denoising step of the next
    frame). At most `window` frames are held: writing more drops the oldest, so memory and step time
    stay bounded however long the rollout runs. Keys are stored already rotated by their frame's
    time position (RoPE), and attention depends only on position differences, so a held frame never
    needs recomputing when older frames fall out of the window.
    """

    def __init__(self, depth: int, window: int) -> None:
        assert window >= 1, f"window {window} must hold at least 1 past frame"
        self.window = window
        self.keys: list[torch.Tensor | None] = [None] * depth  # (B, heads, frames*N, head_dim)
        self.values: list[torch.Tensor | None] = [None] * depth
        self.frames = 0  # frames held now, <= window
        self.next_position = 0  # absolute time index the next written frame gets

    def observe(self, latents: torch.Tensor) -> None:
        """Note the clean latents of frames about to be written; a plain cache needs none (see ``MemoryKVCache``)."""

    def with_memory(self, mask: torch.Tensor | None, start: int, T: int, N: int) -> torch.Tensor | None:
        """The attention mask of T new frames; a plain cache adds nothing to it (see ``MemoryKVCache``)."""
        return mask

    def forget(self, index: torch.Tensor, fresh: "KVCache") -> None:
        """Rows ``index`` begin again from ``fresh``; a plain cache holds nothing beyond the spliced window."""

    def nbytes(self) -> int:
        """Bytes held now (bounded by the window)."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values) if t is not None)

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor, write: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Held keys/values of `layer` followed by the new ones (B, heads, (frames+T)*N, head_dim)."""
        past_k, past_v = self.keys[layer], self.values[layer]
        if past_k is not None:
            assert past_k.shape[0] == k.shape[0], f"batch {k.shape[0]} differs from the cache's batch {past_k.shape[0]}"
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
        if write:
            self.keys[layer], self.values[layer] = k, v
        return k, v

    def advance(self, new_frames: int, tokens_per_frame: int) -> None:
        """Account for `new_frames` just written by every block, then drop frames past the window."""
        self.next_position += new_frames
        self.frames = min(self.frames + new_frames, self.window)
        keep = self.frames * tokens_per_frame
        self.keys = [k[:, :, -keep:] for k in self.keys]
        self.values = [v[:, :, -keep:] for v in self.values]
