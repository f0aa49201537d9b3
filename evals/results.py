"""Metric rows and ``results.json``: the machine-readable output every suite feeds.

A **row** is one number with its uncertainty::

    {"suite": "consistency", "split": "id", "predictor": "copy_last", "metric": "psnr_db",
     "horizon": 4, "value": 21.3, "n": 32, "ci_low": 20.8, "ci_high": 21.8}

``horizon`` is the 1-based future step the value belongs to, or None for the mean over the whole
horizon. ``n`` counts the independent samples (scenarios, or scenario steps where a metric is
defined per step) and ``[ci_low, ci_high]`` is a 95% normal-approximation interval of the mean.

``results.json`` wraps the rows with what produced them; ``SCHEMA`` changes whenever a reader of
the old layout would misread the new one, and ``read_results`` refuses versions it does not know.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from worldsim.evals.protocol import Scenario

SCHEMA = 1
ROW_KEYS = ("suite", "split", "predictor", "metric", "horizon", "value", "n", "ci_low", "ci_high")
Z95 = 1.959964  # two-sided 95% quantile of the standard normal


class ResultsError(ValueError):
    """A results file this worldsim cannot read."""


#: Worlds whose suites report into one table, by the prefix their metric names carry.
TRACKED_WORLDS = {"worldsim/Physics-v0": "physics", "worldsim/Push-v0": "push"}


def per_world(descriptions: dict[str, str], worlds: dict[str, str] = TRACKED_WORLDS) -> dict[str, str]:
    """Metric descriptions renamed ``<world>_<metric>``, for a suite that scores several worlds."""
    return {
        f"{world}_{metric}": f"{world.capitalize()}: {description}"
        for world in worlds.values()
        for metric, description in descriptions.items()
    }


def mean_ignoring_nan(values: Iterable[float]) -> float:
    """Mean of the values that are not NaN; NaN (without numpy's empty-slice warning) when none are.

    The rule ``metric_row`` applies to its samples, for suites that first reduce a scenario's
    steps or objects to one sample: a step or object with nothing to measure is left out.
    """
    measured = [v for v in values if not np.isnan(v)]
    return float(np.mean(measured)) if measured else np.nan


def metric_row(
    suite: str, split: str, predictor: str, metric: str, values: Iterable[float], horizon: Optional[int] = None
) -> dict[str, Any]:
    """Summarize samples as a row: their mean and a 95% interval (NaN samples are left out).

    Infinite samples (PSNR of identical frames) make the value infinite and the interval equal to
    it; an empty sample gives value NaN with n = 0, so a metric that had nothing to measure shows
    as missing rather than as zero.
    """
    array = np.asarray(list(values), dtype=np.float64)
    array = array[~np.isnan(array)]
    n = int(array.size)
    if n == 0:
        value = low = high = math.nan
    elif not np.all(np.isfinite(array)):
        value = low = high = float(np.mean(array))
    else:
        value = float(array.mean())
        half = Z95 * float(array.std(ddof=1)) / math.sqrt(n) if n > 1 else 0.0
        low, high = value - half, value + half
    return {
        "suite": suite,
        "split": split,
        "predictor": predictor,
        "metric": metric,
        "horizon": None if horizon is None else int(horizon),
        "value": value,
        "n": n,
        "ci_low": low,
        "ci_high": high,
    }


def _finite_or_text(value: Any) -> Any:
    # JSON has no NaN or infinity; strings keep the file valid for every JSON parser.
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _from_text(value: Any) -> Any:
    return float(value) if value in ("nan", "inf", "-inf") else value


def write_results(path: str | Path, rows: list[dict[str, Any]], config: dict[str, Any], version: str) -> Path:
    """Write ``results.json`` atomically (temp file + rename) and return its path."""
    for row in rows:
        if set(row) != set(ROW_KEYS):
            raise ValueError(f"row {row} has keys {sorted(row)}; a metric row has exactly {list(ROW_KEYS)}")
    document = {
        "schema": SCHEMA,
        "worldsim_version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": config,
        "rows": [{key: _finite_or_text(row[key]) for key in ROW_KEYS} for row in rows],
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            json.dump(document, file, indent=1, allow_nan=False)
        os.chmod(temp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def read_results(path: str | Path) -> dict[str, Any]:
    """Read ``results.json``; rows come back with NaN/infinity as floats again."""
    path = Path(path)
    document = json.loads(path.read_text())
    schema = document.get("schema") if isinstance(document, dict) else None
    if schema != SCHEMA:
        raise ResultsError(
            f"{path} has results schema {schema!r}; this worldsim reads schema {SCHEMA}: "
            "re-run `worldsim eval` with this version, or read it with the worldsim that wrote it"
        )
    document["rows"] = [{key: _from_text(value) for key, value in row.items()} for row in document["rows"]]
    return document


def summary_rows(
    suite: str,
    scenarios: Sequence[Scenario],
    per_scenario: list[dict[str, np.ndarray]],
    predictor: str,
    metrics: Sequence[str],
) -> list[dict[str, Any]]:
    """Rows per split and metric: the mean over scenarios, plus one row per step for per-step arrays."""
    rows = []
    for split in sorted({s.split for s in scenarios}):
        picked = [m for s, m in zip(scenarios, per_scenario) if s.split == split]
        for metric in metrics:
            values = np.stack([m[metric] for m in picked])  # (N, H) or (N, 1)
            overall = [mean_ignoring_nan(v) for v in values]
            rows.append(metric_row(suite, split, predictor, metric, overall))
            if values.shape[1] > 1:
                rows += [
                    metric_row(suite, split, predictor, metric, values[:, h], horizon=h + 1)
                    for h in range(values.shape[1])
                ]
    return rows
