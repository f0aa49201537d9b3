"""Exponential moving average of a model's weights, kept as a submodule so checkpoints hold it."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of ``model`` whose weights trail the trained ones.

    Being an ``nn.Module`` attribute of the LightningModule, the average moves with ``.to(device)``
    and is saved and restored with every checkpoint, so resumed runs continue it exactly. Early
    updates use a smaller decay, ``min(decay, (1 + n) / (10 + n))``, so the average is not
    dominated by the random initial weights.

    An update never waits for the GPU: the update count lives in a buffer (for checkpoints) and is
    mirrored on the host, read from the buffer once after construction or a checkpoint load.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        assert 0.0 <= decay < 1.0, f"EMA decay {decay} is not in [0, 1)"
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))
        self._host_updates: int | None = None  # mirror of `updates`; None: read it at the next update

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._host_updates = None

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        if self._host_updates is None:
            self._host_updates = int(self.updates)
        self._host_updates += 1
        self.updates.fill_(self._host_updates)
        n = float(self._host_updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        averaged = list(self.model.parameters()) + list(self.model.buffers())
        current = list(model.parameters()) + list(model.buffers())
        floating = [
            (a, c.detach().to(a.dtype)) for a, c in zip(averaged, current, strict=True) if a.dtype.is_floating_point
        ]
        if floating:
            torch._foreach_lerp_([a for a, _ in floating], [c for _, c in floating], 1 - decay)
        for ema_tensor, tensor in zip(averaged, current, strict=True):
            if not ema_tensor.dtype.is_floating_point:
                ema_tensor.copy_(tensor)

    def train(self, mode: bool = True) -> "EMA":
        # The average is never trained: keep dropout and the like off whatever the parent does.
        super().train(mode)
        self.model.eval()
        return self
