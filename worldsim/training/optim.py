"""AdamW with linear warmup then cosine decay: the one optimiser recipe of both stages."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from worldsim.config_checks import check_at_least, check_within


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak learning rate, reached after warmup
    weight_decay: float = 0.01  # applied to matrices only; norms, biases and embeddings are exempt
    beta1: float = 0.9
    beta2: float = 0.99  # a little below 0.999: faster adaptation on small, noisy batches
    warmup_steps: int = 200  # linear ramp from 0 to lr
    min_lr_ratio: float = 0.1  # the cosine ends at lr * min_lr_ratio at max_steps
    grad_clip: float = 1.0  # global gradient-norm clip (0 disables)
    ema_decay: float = 0.999  # EMA of the weights used for validation and export (0 disables)

    def __post_init__(self) -> None:
        check_at_least(self, "optim", lr=1e-12, weight_decay=0, warmup_steps=0, grad_clip=0)
        check_within(self, "optim", beta1=(0, 0.9999), beta2=(0, 0.9999), min_lr_ratio=(0, 1), ema_decay=(0, 0.9999999))


def lr_factor(step: int, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak learning rate at ``step``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
    return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def adamw_with_schedule(module: nn.Module, cfg: OptimConfig, max_steps: int, fused: bool = False) -> dict[str, Any]:
    """What ``LightningModule.configure_optimizers`` returns: AdamW plus a per-step schedule.

    ``fused``: one kernel updates every parameter instead of a few per tensor (``TrainingModule``
    decides when, and then clips gradients itself).
    """
    decay, no_decay = [], []
    for param in module.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(cfg.beta1, cfg.beta2),
        fused=fused or None,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, cfg.warmup_steps, max_steps, cfg.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
