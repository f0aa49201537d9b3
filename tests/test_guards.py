import pytest
import torch

from worldsim.training.guards import FiniteLossGuard, NonFiniteLossError


def test_guard_reports_a_bad_step_at_the_next_watch_or_check_naming_that_step() -> None:
    guard = FiniteLossGuard()
    guard.watch(torch.tensor(0.5), step=3, logs={"loss_velocity": torch.tensor(0.5)})
    guard.watch(torch.tensor(float("nan")), step=4, logs={"loss_velocity": torch.tensor(float("nan"))})  # not yet
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at step 4 \(loss_velocity=nan\)"):
        guard.watch(torch.tensor(0.1), step=5, logs={})
    guard.check()  # the bad step was reported once; nothing is pending

    guard.watch(torch.tensor(float("inf")), step=9, logs={})
    with pytest.raises(NonFiniteLossError, match="at step 9"):
        guard.check()  # what a module calls before writing a checkpoint
