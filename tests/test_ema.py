import copy

import torch
from torch import nn

from worldsim.training.ema import EMA


def reference_update(average: nn.Module, model: nn.Module, n: int, decay: float) -> None:
    """The EMA rule, one tensor at a time: average += (1 - d) * (weights - average), d = min(decay, (1+n)/(10+n))."""
    d = min(decay, (1 + n) / (10 + n))
    with torch.no_grad():
        for a, w in zip(average.parameters(), model.parameters()):
            a.lerp_(w, 1 - d)


def test_ema_follows_the_warmed_up_decay_exactly() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ema = EMA(model, decay=0.9)
    expected = copy.deepcopy(model)
    for n in range(1, 30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 4))  # moves the BatchNorm running statistics (buffers)
        ema.update(model)
        reference_update(expected, model, n, 0.9)
    for a, b in zip(ema.model.parameters(), expected.parameters()):
        assert torch.equal(a, b)
    assert int(ema.updates) == 29
    assert int(ema.model[1].num_batches_tracked) == int(model[1].num_batches_tracked)  # integer buffers copied


def test_ema_count_continues_from_a_loaded_state() -> None:
    model = nn.Linear(3, 3)
    trained = EMA(model, decay=0.99)
    for _ in range(7):
        trained.update(model)
    restored = EMA(model, decay=0.99)
    restored.update(model)  # its own count (1) must not survive the load
    restored.load_state_dict(trained.state_dict())
    restored.update(model)
    assert int(restored.updates) == 8
