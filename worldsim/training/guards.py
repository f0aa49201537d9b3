"""Stop a run on a non-finite loss before it can write a broken checkpoint."""

from __future__ import annotations

import torch


class NonFiniteLossError(RuntimeError):
    pass


def check_finite(loss: torch.Tensor, step: int, logs: dict[str, float] | None = None) -> None:
    """Raise with the step and the loss terms when ``loss`` is NaN or infinite.

    Raising inside ``training_step`` ends ``Trainer.fit`` before the next checkpoint callback
    runs, so the last checkpoint on disk is the last good one.
    """
    if not torch.isfinite(loss):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in (logs or {}).items())
        raise NonFiniteLossError(
            f"training loss is {loss.item()} at step {step} ({terms}): stopping before a broken "
            f"checkpoint is saved. Lower optim.lr, keep optim.grad_clip > 0, or use "
            f"precision=32-true; then resume from the last checkpoint with resume=<run dir>"
        )
