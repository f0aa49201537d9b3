"""Predictors for choosing residual decoding's ``min_change``: the shipped references, one per k.

Each ``kN`` is the reference predictor sampling as its files record, except ``min_change=N``.
Choose k on scenarios the README does not report (``seed=1``), then measure it once on the
eval's own (``seed=0``):

    worldsim eval "predictors=[benchmarks/min_change_sweep.py:k0,benchmarks/min_change_sweep.py:k16,\
benchmarks/min_change_sweep.py:k24,benchmarks/min_change_sweep.py:k32,benchmarks/min_change_sweep.py:k48]" \
        suites=[rollout] n=256 split=[id] seed=1 out=sweep-seed1
"""

from __future__ import annotations

from functools import partial

from worldsim.evals.baselines import WorldModelPredictor
from worldsim.references import REFERENCE_DIR


def with_min_change(k: int) -> WorldModelPredictor:
    return WorldModelPredictor(checkpoint=str(REFERENCE_DIR), name=f"k{k}", min_change=k)


k0, k16, k24, k32, k48 = (partial(with_min_change, k) for k in (0, 16, 24, 32, 48))
