"""SeenFrames: a long clip's attention gathered per frame equals the dense block-masked attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from worldsim.models.frame_attention import SeenFrames


def dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, frames_seen: torch.Tensor, N: int) -> torch.Tensor:
    mask = frames_seen.repeat_interleave(N, -2).repeat_interleave(N, -1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask if mask.dim() == 2 else mask[:, None])


def banded(T: int, window: int) -> torch.Tensor:
    offset = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    return (offset >= 0) & (offset <= window)


def test_seen_frames_lists_each_frames_keys_earliest_first() -> None:
    seen = SeenFrames.from_visibility(banded(6, 2), batch=2, width=3)
    assert seen.index.shape == (2, 6, 3) and seen.width == 3
    assert seen.index[0, 4].tolist() == [2, 3, 4] and seen.valid[0, 4].all()
    assert seen.index[1, 0, 0] == 0 and seen.valid[1, 0].tolist() == [True, False, False]  # frame 0 sees itself only
    assert seen.valid[:, 1].sum(dim=-1).tolist() == [2, 2]


def test_gathered_attention_equals_the_dense_mask_for_a_window_and_per_row_memory() -> None:
    torch.manual_seed(0)
    B, h, T, N, hd = 2, 3, 12, 4, 8
    q, k, v = (torch.randn(B, h, T * N, hd) for _ in range(3))
    window_only = banded(T, 3)
    assert torch.allclose(
        SeenFrames.from_visibility(window_only, B, width=4).attend(q, k, v), dense(q, k, v, window_only, N), atol=1e-5
    )

    # Each row remembers different older frames, as memory_visibility gives them.
    remembered = torch.zeros(B, T, T, dtype=torch.bool)
    remembered[0, 8:, 0] = True
    remembered[0, 10:, 2] = True
    remembered[1, 6:, 1] = True
    with_memory = window_only | remembered
    gathered = SeenFrames.from_visibility(with_memory, B, width=4 + 2)
    assert gathered.width == 4 + 2  # the window, itself and at most two remembered frames
    assert torch.allclose(gathered.attend(q, k, v), dense(q, k, v, with_memory, N), atol=1e-5)


def test_gathered_attention_passes_gradients_like_the_dense_mask() -> None:
    torch.manual_seed(1)
    B, h, T, N, hd = 1, 2, 10, 3, 4
    leaves = [torch.randn(B, h, T * N, hd, requires_grad=True) for _ in range(3)]
    frames_seen = banded(T, 2)
    SeenFrames.from_visibility(frames_seen, B, width=3).attend(*leaves).square().sum().backward()
    sparse_grads = [x.grad.clone() for x in leaves]
    for x in leaves:
        x.grad = None
    dense(*leaves, frames_seen, N).square().sum().backward()
    for sparse_grad, x in zip(sparse_grads, leaves):
        assert torch.allclose(sparse_grad, x.grad, atol=1e-5)
