"""Imagination-trained over real-trained return, pooled over PPO seeds, with a bootstrap interval.

One ``worldsim imagine`` run trains one PPO seed, and its 32 evaluation episodes say little about
another seed: the real-env runs of seeds 0 and 1 differed by a factor of two. This reads the
reports (``imagine.json``) of several seeds of each kind, takes the mean real-env return of each
kind over all its seeds and episodes, and gives the ratio a 95% interval from a two-level
bootstrap: seeds resampled within each kind, then the evaluation episodes, the same draw for both
kinds (every run plays the same evaluation seeds, so episode i starts from the same state in all).

    python benchmarks/imagine_ratio.py --imagination runs/imag-s*/imagine.json --real runs/real-s*/imagine.json
"""

from __future__ import annotations

import argparse
import json
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


if __name__ == "__main__":
    main()
