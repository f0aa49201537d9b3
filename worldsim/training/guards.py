"""Stop a run on a non-finite loss before it can write a broken checkpoint."""

from __future__ import annotations

from typing import Mapping

import torch


class NonFiniteLossError(RuntimeError):
    pass


def check_finite(loss: torch.Tensor, step: int, logs: Mapping[str, float | torch.Tensor] | None = None) -> None:
    """Raise with the step and the loss terms when ``loss`` is NaN or infinite.

    Raising inside ``training_step`` ends ``Trainer.fit`` before the next checkpoint callback
    runs, so the last checkpoint on disk is the last good one.
    """
    if not torch.isfinite(loss):
        terms = ", ".join(f"{k}={float(v):.4g}" for k, v in (logs or {}).items())
        raise NonFiniteLossError(
            f"training loss is {float(loss)} at step {step} ({terms}): stopping before a broken "
            f"checkpoint is saved. Lower optim.lr, keep optim.grad_clip > 0, or use "
            f"precision=32-true; then resume from the last checkpoint with resume=<run dir>"
        )


class FiniteLossGuard:
    """``check_finite`` for every training step without making the host wait for the GPU each step.

    ``watch`` starts copying a step's loss and terms to the host and returns at once; the copy is
    checked at the next ``watch`` (by then the GPU is working on the next step, so nothing stalls)
    or at ``check``, which a module calls before any checkpoint is written. A NaN step's weights
    therefore never reach a checkpoint, and the error still names the step the loss went bad at.
    On the CPU the copy is immediate and the guard behaves like calling ``check_finite`` each step.
    """

    def __init__(self) -> None:
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None, int, list[str]] | None = None

    def watch(self, loss: torch.Tensor, step: int, logs: Mapping[str, torch.Tensor | float]) -> None:
        self.check()
        names = [name for name in logs if name != "loss"]
        values = torch.stack(
            [
                loss.detach().float().reshape(()),
                *[torch.as_tensor(logs[n], device=loss.device).detach().float().reshape(()) for n in names],
            ]
        )
        host = values.to("cpu", non_blocking=True)
        event = None
        if values.is_cuda:
            event = torch.cuda.Event()
            event.record()
        self._pending = (host, event, step, names)

    def check(self) -> None:
        """Raise NonFiniteLossError if the last watched step's loss was not finite."""
        if self._pending is None:
            return
        host, event, step, names = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        check_finite(host[0], step, dict(zip(names, host[1:])))
