"""Test-suite markers.

- ``slow``: end to end (trains, runs the CLI in a subprocess, builds a wheel); run by default, as
  CI runs them. A developer's quick loop leaves them out: ``python -m pytest -q -m "not slow"``.
- ``long``: minutes each (an ablation, re-recording a reference's dataset); run only with
  ``--runlong``, never in CI.
- ``gpu``: needs CUDA; skipped where there is none.
"""

from __future__ import annotations

import pytest
import torch


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runlong", action="store_true", help="also run tests marked long (minutes each)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_long = pytest.mark.skip(reason="long: run with --runlong")
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "long" in item.keywords and not config.getoption("--runlong"):
            item.add_marker(skip_long)
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(skip_gpu)
