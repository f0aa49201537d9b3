"""The optimiser recipe: schedule, and the fused AdamW path with the gradient clipping done by hand."""

from __future__ import annotations

from typing import Any

import lightning
import pytest
import torch
from torch import nn

from worldsim.training.harness import TrainingModule, fuses_adamw
from worldsim.training.optim import OptimConfig, adamw_with_schedule, lr_factor


def test_schedule_warms_up_linearly_then_decays_to_the_floor() -> None:
    assert lr_factor(0, 10, 100, 0.1) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, 0.1) == pytest.approx(1.0)
    assert lr_factor(100, 10, 100, 0.1) == pytest.approx(0.1)


class Toy(TrainingModule):
    """A linear layer whose loss has a gradient of norm ~1e3; ``fused`` forces the fused path on a CPU."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 8)
        self.fused = fused
        self.step_norms: list[float] = []

    @property
    def fused_adamw(self) -> bool:
        return self.fused

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        return 1000.0 * self.layer(batch).sum()

    def configure_optimizers(self) -> dict[str, Any]:
        setup = adamw_with_schedule(self.layer, OptimConfig(warmup_steps=0), 3, fused=self.fused_adamw)

        def record(optimizer: torch.optim.Optimizer, *_: Any) -> None:
            grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            self.step_norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        setup["optimizer"].register_step_post_hook(record)
        return setup


@pytest.mark.parametrize("fused", [False, True])
def test_gradients_reach_the_optimiser_clipped_fused_or_not_under_mixed_precision(fused: bool) -> None:
    """bf16-mixed is Lightning's MixedPrecision plugin, the one that refuses to clip for a fused optimiser."""
    module = Toy(fused)
    data = torch.utils.data.DataLoader(torch.randn(6, 8), batch_size=2)
    trainer = lightning.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        max_steps=3,
        gradient_clip_val=0.5,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    assert trainer.optimizers[0].defaults["fused"] is (True if fused else None)
    assert len(module.step_norms) == 3
    assert max(module.step_norms) == pytest.approx(0.5, rel=1e-3)


def test_fused_adamw_is_chosen_only_on_cuda() -> None:
    module = Toy(fused=False)
    assert TrainingModule.fused_adamw.fget(module) is False  # no trainer, and on the CPU
    cuda = torch.device("cuda")
    assert fuses_adamw(cuda, "bf16-mixed") and fuses_adamw(cuda, "32-true")
    assert not fuses_adamw(cuda, "16-mixed")  # Lightning would leave its gradients scaled
    assert not fuses_adamw(cuda, "bf16-mixed", sharded=True)  # FSDP's norms are sharded
    assert not fuses_adamw(torch.device("cpu"), "32-true")
