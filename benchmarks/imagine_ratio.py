"""Imagination-trained over real-trained return, pooled over PPO seeds, with a bootstrap interval.

One ``worldsim imagine`` run trains one PPO seed, and its 32 evaluation episodes say little about
another seed: the real-env runs of seeds 0 and 1 differed by a factor of two. This reads the
reports (``imagine.json``) of several seeds of each kind, takes the mean real-env return of each
kind over all its seeds and episodes, and gives the ratio a 95% interval from a two-level
bootstrap: seeds resampled within each kind, then the evaluation episodes, the same draw for both
kinds (every run plays the same evaluation seeds, so episode i starts from the same state in all).
Beside it, a more cautious interval from the seed means alone (Student's t), since a bootstrap over
a handful of seeds only re-draws the seeds there are. Reports re-scored on more episodes
(``imagine_rescore.py``) are read the same way.

    python benchmarks/imagine_ratio.py --imagination runs/imag-s*/imagine.json --real runs/real-s*/imagine.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def load_returns(paths: list[str], policy: str) -> tuple[np.ndarray, list[dict]]:
    """Per-episode real-env returns of ``policy``, one row per report: (seeds, episodes)."""
    returns, rows = [], []
    for path in paths:
        report = json.loads(Path(path).read_text())
        row = next((r for r in report["rows"] if r["policy"] == policy), None)
        if row is None:
            raise SystemExit(f"{path} has no {policy!r} row; its rows: {[r['policy'] for r in report['rows']]}")
        rows.append({"path": path, "seed": report["config"]["seed"], **row})
        returns.append(row["returns"])
    lengths = {len(r) for r in returns}
    if len(lengths) != 1:
        raise SystemExit(f"the {policy} reports hold different numbers of evaluation episodes: {sorted(lengths)}")
    return np.asarray(returns, dtype=np.float64), rows


def bootstrap_ratio(imagined: np.ndarray, real: np.ndarray, draws: int, seed: int) -> np.ndarray:
    """Ratios of the pooled means under ``draws`` two-level resamples (seeds, then shared episodes)."""
    if imagined.shape[1] != real.shape[1]:
        raise SystemExit(f"imagination reports have {imagined.shape[1]} evaluation episodes, real ones {real.shape[1]}")
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

    The delta method on the log ratio, with Welch's degrees of freedom: with a handful of seeds of a
    kind the bootstrap, which only re-draws the seeds there are, is narrower than it should be, and
    Student's t widens the interval for it.
    """
    ratio = imagined.mean() / real.mean()
    parts = [seeds.var(ddof=1) / len(seeds) / seeds.mean() ** 2 for seeds in (imagined.mean(1), real.mean(1))]
    df = sum(parts) ** 2 / (parts[0] ** 2 / (len(imagined) - 1) + parts[1] ** 2 / (len(real) - 1))
    half = t_quantile(0.975, df) * math.sqrt(sum(parts))
    return ratio * math.exp(-half), ratio * math.exp(half), df


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imagination", nargs="+", required=True, help="imagine.json of runs with an imagination row")
    parser.add_argument("--real", nargs="+", required=True, help="imagine.json of runs with a real row")
    parser.add_argument("--draws", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    imagined, imagined_rows = load_returns(args.imagination, "imagination")
    real, real_rows = load_returns(args.real, "real")
    print("| kind | PPO seed | PPO steps | real-env return | success |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for kind, rows in (("imagination", imagined_rows), ("real", real_rows)):
        for row in rows:
            print(f"| {kind} | {row['seed']} | {row['train']['timesteps']:,} | {row['return_mean']:.2f} "
                  f"± {row['return_ci95']:.2f} | {row['success_rate']:.0%} |")
    ratios = bootstrap_ratio(imagined, real, args.draws, args.seed)
    finite = ratios[np.isfinite(ratios)]
    low, high = np.percentile(finite, [2.5, 97.5])
    print(f"\npooled real-env return: imagination {imagined.mean():.3f} over {len(imagined)} seeds, "
          f"real {real.mean():.3f} over {len(real)} seeds")
    print(f"imagination / real: {imagined.mean() / real.mean():.2f}, 95% bootstrap interval [{low:.2f}, {high:.2f}] "
          f"({args.draws} draws, {len(ratios) - len(finite)} with a real mean <= 0 left out); "
          f"P(ratio >= 0.8) = {np.mean(finite >= 0.8):.2f}")
    if len(imagined) > 1 and len(real) > 1 and imagined.mean() > 0 and real.mean() > 0:
        low, high, df = seed_interval(imagined, real)
        print(f"from the seed means alone (delta method on the log ratio, Student's t, {df:.1f} degrees of freedom): "
              f"95% interval [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()
