"""The imagination-trained over real-trained return, pooled over the reports of several PPO seeds.

One ``worldsim imagine`` run trains one PPO seed, and its evaluation episodes say little about
another seed: on Push behind the target, real-env runs of seeds 0 and 1 differed by a factor of two.
``worldsim imagine pool.imagination=[...] pool.real=[...]`` reads the reports (``imagine.json``,
re-scored ones too) of several seeds of each kind, takes the mean real-env return of each kind over
all its seeds and episodes, and gives their ratio two 95% intervals:

- a two-level bootstrap: seeds resampled within each kind, then the evaluation episodes, the same
  draw for both kinds (every run plays the same evaluation seeds, so episode i starts from the same
  state in all);
- from the seed means alone: the delta method on the log ratio with Student's t and Welch's degrees
  of freedom. With a handful of seeds the bootstrap, which only re-draws the seeds there are, is
  narrower than it should be; t widens the interval for it.
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.config_checks import check_at_least

GOAL = 0.8  # the ratio worldsim's agents page sets as the goal: imagination earns at least 80% of real training


@dataclass
class PoolConfig:
    # reports of runs with an imagination row: imagine.json files, their folders, or globs of either
    imagination: list[str] = field(default_factory=list)
    # reports of runs with a real row, played on the same evaluation episodes
    real: list[str] = field(default_factory=list)
    draws: int = 10000  # bootstrap resamples
    seed: int = 0  # seeds the bootstrap

    def __post_init__(self) -> None:
        check_at_least(self, "pool", draws=1, seed=0)


def report_paths(entries: list[str], kind: str) -> list[Path]:
    """The ``imagine.json`` files ``entries`` name: files, folders holding one, or globs of either."""
    paths = []
    for entry in entries:
        matches = sorted(glob.glob(entry)) if glob.has_magic(entry) else [entry]
        if not matches:
            raise ValueError(
                f"pool.{kind} entry {entry!r} matches nothing: give imagine.json files, run folders or globs"
            )
        for match in map(Path, matches):
            path = match / "imagine.json" if match.is_dir() else match
            if not path.is_file():
                raise ValueError(
                    f"pool.{kind}: {path} is no file: give the imagine.json of a `worldsim imagine` run (or its folder)"
                )
            paths.append(path)
    return paths


def load_returns(paths: list[Path], policy: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Per-episode real-env returns of ``policy``, one row per report (seeds, episodes), and the rows."""
    returns, rows = [], []
    for path in paths:
        report = json.loads(path.read_text())
        row = next((r for r in report["rows"] if r["policy"] == policy), None)
        if row is None:
            raise ValueError(
                f"{path} has no {policy!r} row (its rows: {[r['policy'] for r in report['rows']]}): "
                f"pool.{policy} takes reports of runs with policies=[{policy}, ...]"
            )
        rows.append({"path": str(path), "seed": report["config"]["seed"], **row})
        returns.append(row["returns"])
    lengths = sorted({len(r) for r in returns})
    if len(lengths) != 1:
        raise ValueError(
            f"the {policy} reports hold different numbers of evaluation episodes ({lengths}): pool "
            "reports of the same episodes, e.g. all re-scored with the same eval_episodes"
        )
    return np.asarray(returns, dtype=np.float64), rows


def bootstrap_ratio(imagined: np.ndarray, real: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """Ratios of the pooled means under ``draws`` two-level resamples (seeds, then shared episodes).

    imagined (S_i, E) and real (S_r, E): returns per seed and episode. NaN where a draw's real mean
    is not positive.
    """
    if imagined.shape[1] != real.shape[1]:
        raise ValueError(
            f"imagination reports have {imagined.shape[1]} evaluation episodes, real ones "
            f"{real.shape[1]}: pool reports of the same episodes"
        )
    rng = np.random.default_rng(seed)
    episodes = imagined.shape[1]
    ratios = np.empty(draws)
    for i in range(draws):
        picked_episodes = rng.integers(0, episodes, episodes)
        picked_imagined = imagined[rng.integers(0, len(imagined), len(imagined))][:, picked_episodes]
        picked_real = real[rng.integers(0, len(real), len(real))][:, picked_episodes]
        real_mean = picked_real.mean()
        ratios[i] = picked_imagined.mean() / real_mean if real_mean > 0 else np.nan
    return ratios


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile for 0.5 <= p < 1, by bisection on the density integrated numerically (no scipy)."""
    if not 0.5 <= p < 1 or df <= 0:
        raise ValueError(f"t_quantile(p={p}, df={df}): needs 0.5 <= p < 1 and df > 0")
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf(t: float) -> float:
        x = np.linspace(0.0, t, 4001)
        density = np.exp(log_norm - (df + 1) / 2 * np.log1p(x * x / df))
        return 0.5 + float(np.sum((density[1:] + density[:-1]) / 2) * (x[1] - x[0]))  # the trapezoid rule

    low, high = 0.0, 1000.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) < p else (low, middle)
    return (low + high) / 2


def seed_interval(imagined: np.ndarray, real: np.ndarray) -> tuple[float, float, float]:
    """A 95% interval of the ratio from the seed means alone, and its degrees of freedom.

    The delta method on the log ratio: var(log ratio) ~ sum over both kinds of
    var(seed means) / seeds / mean^2, with Welch's degrees of freedom for Student's t.
    """
    ratio = imagined.mean() / real.mean()
    parts = [seeds.var(ddof=1) / len(seeds) / seeds.mean() ** 2 for seeds in (imagined.mean(1), real.mean(1))]
    df = sum(parts) ** 2 / (parts[0] ** 2 / (len(imagined) - 1) + parts[1] ** 2 / (len(real) - 1))
    half = t_quantile(0.975, df) * math.sqrt(sum(parts))
    return ratio * math.exp(-half), ratio * math.exp(half), df


def pool(cfg: PoolConfig) -> dict[str, Any]:
    """The pooled ratio and its intervals from the reports ``cfg`` names (see the module docstring)."""
    if cfg.draws < 100:
        raise ValueError(f"pool.draws={cfg.draws}: a 95% bootstrap interval needs at least 100 resamples")
    imagined, imagined_rows = load_returns(report_paths(cfg.imagination, "imagination"), "imagination")
    real, real_rows = load_returns(report_paths(cfg.real, "real"), "real")
    if real.mean() <= 0:
        raise ValueError(f"the real-trained policies' pooled return is {real.mean():.3f}: a ratio to it is undefined")
    ratios = bootstrap_ratio(imagined, real, cfg.draws, cfg.seed)
    finite = ratios[np.isfinite(ratios)]
    result: dict[str, Any] = {
        "imagination_return": float(imagined.mean()),
        "imagination_seeds": len(imagined),
        "real_return": float(real.mean()),
        "real_seeds": len(real),
        "episodes": int(real.shape[1]),
        "ratio": float(imagined.mean() / real.mean()),
        "bootstrap_ci95": [float(v) for v in np.percentile(finite, [2.5, 97.5])],
        "bootstrap_draws": cfg.draws,
        "bootstrap_undefined": int(len(ratios) - len(finite)),
        "p_ratio_at_least_goal": float(np.mean(finite >= GOAL)),
        "goal": GOAL,
        "t_ci95": None,
        "t_df": None,
        "runs": [
            {
                "kind": kind,
                "path": row["path"],
                "seed": row["seed"],
                "return_mean": row["return_mean"],
                "return_ci95": row["return_ci95"],
                "success_rate": row["success_rate"],
                "timesteps": row.get("train", {}).get("timesteps"),
            }
            for kind, rows in (("imagination", imagined_rows), ("real", real_rows))
            for row in rows
        ],
    }
    if len(imagined) > 1 and len(real) > 1 and imagined.mean() > 0:
        low, high, df = seed_interval(imagined, real)
        result["t_ci95"], result["t_df"] = [low, high], df
    return result


def markdown(result: dict[str, Any]) -> str:
    """The pooled runs and the ratio with both intervals, as a markdown table and lines."""
    lines = ["| kind | PPO seed | PPO steps | real-env return | success |", "| --- | ---: | ---: | ---: | ---: |"]
    for run in result["runs"]:
        steps = "-" if run["timesteps"] is None else f"{run['timesteps']:,}"
        success = "n/a" if run["success_rate"] is None else f"{run['success_rate']:.0%}"
        lines.append(
            f"| {run['kind']} | {run['seed']} | {steps} | {run['return_mean']:.2f} ± {run['return_ci95']:.2f} "
            f"| {success} |"
        )
    low, high = result["bootstrap_ci95"]
    lines += [
        "",
        f"pooled real-env return on {result['episodes']} episodes per run: imagination {result['imagination_return']:.3f} "
        f"over {result['imagination_seeds']} seeds, real {result['real_return']:.3f} over {result['real_seeds']} seeds",
        f"imagination / real: {result['ratio']:.2f}, 95% bootstrap interval [{low:.2f}, {high:.2f}] "
        f"({result['bootstrap_draws']} draws, {result['bootstrap_undefined']} with a real mean <= 0 left out); "
        f"P(ratio >= {result['goal']}) = {result['p_ratio_at_least_goal']:.2f}",
    ]
    if result["t_ci95"] is not None:
        low, high = result["t_ci95"]
        lines.append(
            f"from the seed means alone (delta method on the log ratio, Student's t, {result['t_df']:.1f} "
            f"degrees of freedom): 95% interval [{low:.2f}, {high:.2f}]"
        )
    else:
        lines.append(
            "from the seed means alone: no interval (it needs 2 or more seeds of each kind and a positive "
            "imagination return)"
        )
    return "\n".join(lines) + "\n"
