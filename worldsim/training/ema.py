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
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        assert 0.0 <= decay < 1.0, f"EMA decay {decay} is not in [0, 1)"
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        n = float(self.updates)
        decay = min(self.decay, (1 + n) / (10 + n))
        averaged = list(self.model.parameters()) + list(self.model.buffers())
        current = list(model.parameters()) + list(model.buffers())
        for ema_tensor, tensor in zip(averaged, current, strict=True):
            if ema_tensor.dtype.is_floating_point:
                ema_tensor.lerp_(tensor.detach().to(ema_tensor.dtype), 1 - decay)
            else:
                ema_tensor.copy_(tensor)

    def train(self, mode: bool = True) -> "EMA":
        # The average is never trained: keep dropout and the like off whatever the parent does.
        super().train(mode)
        self.model.eval()
        return self
