"""Pooling `worldsim imagine` reports over PPO seeds: the ratio and its two intervals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from worldsim.imagine import ImagineConfig, imagine
from worldsim.imagine_pool import PoolConfig, bootstrap_ratio, pool, seed_interval, t_quantile

REPORTS = Path(__file__).parents[1] / "benchmarks" / "results" / "imagine-push-behind"


def test_t_quantiles_match_the_tables() -> None:
    for df, quantile in ((1, 12.706), (5, 2.5706), (15, 2.1314), (30, 2.0423), (1e6, 1.9600)):
        assert t_quantile(0.975, df) == pytest.approx(quantile, abs=2e-3 if df == 1 else 2e-4)


def test_bootstrap_draws_the_same_episodes_for_both_kinds() -> None:
    real = np.random.default_rng(0).exponential(size=(1, 64))
    ratios = bootstrap_ratio(2 * real, real, draws=200, seed=0)  # one seed each: only episodes are redrawn
    assert np.allclose(ratios, 2.0)


def test_the_t_interval_from_seed_means_widens_with_their_spread() -> None:
    rng = np.random.default_rng(1)
    real = 1.0 + 0.1 * rng.normal(size=(5, 32))
    low, high, df = seed_interval(1.5 * real, real)
    assert low < 1.5 < high and df > 1
    spread = real + np.linspace(-0.3, 0.3, 5)[:, None]  # the same mean, seeds further apart
    wider_low, wider_high, _ = seed_interval(1.5 * spread, spread)
    assert wider_high - wider_low > high - low


def test_the_committed_reports_give_the_agents_page_figures(tmp_path: Path) -> None:
    """docs/agents.md: 1.45 [0.93, 2.20] bootstrap, [0.86, 2.43] t on 256 episodes; 1.24 [0.61, 2.60], [0.74, 2.07] on 32."""
    rescored = pool(
        PoolConfig(
            imagination=[str(REPORTS / "rescored-256" / "imagination-s*.json")],
            real=[str(REPORTS / "rescored-256" / "real-s*.json")],
        )
    )
    assert (rescored["imagination_seeds"], rescored["real_seeds"], rescored["episodes"]) == (5, 9, 256)
    assert [round(v, 2) for v in (rescored["ratio"], *rescored["bootstrap_ci95"], *rescored["t_ci95"])] == [
        1.45,
        0.93,
        2.20,
        0.86,
        2.43,
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldsim.cli",
            "imagine",
            f"pool.imagination=[{REPORTS}/imagination-all-tuned-s?.json]",
            f"pool.real=[{REPORTS}/real-63k-s?.json]",
            "out=pooled",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    own = json.loads((tmp_path / "pooled" / "pool.json").read_text())
    assert (own["imagination_seeds"], own["real_seeds"], own["episodes"]) == (9, 9, 32)
    assert [round(v, 2) for v in (own["ratio"], *own["bootstrap_ci95"], *own["t_ci95"])] == [
        1.24,
        0.61,
        2.60,
        0.74,
        2.07,
    ]
    assert "imagination / real: 1.24, 95% bootstrap interval [0.61, 2.60]" in result.stdout
    assert (tmp_path / "pooled" / "pool.md").read_text() in result.stdout


def test_pooling_refuses_what_it_cannot_pool(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pooling needs reports of both kinds"):
        imagine(ImagineConfig(pool=PoolConfig(imagination=[str(REPORTS / "imagination-all-tuned-s0.json")])))
    with pytest.raises(ValueError, match=r"pool takes only \['pool', 'out'\], but \['eval_episodes'\] were set"):
        imagine(ImagineConfig(eval_episodes=256, pool=PoolConfig(imagination=["a"], real=["b"])))
    with pytest.raises(ValueError, match="different numbers of evaluation episodes"):
        pool(
            PoolConfig(
                imagination=[str(REPORTS / "imagination-all-tuned-s0.json")],
                real=[str(REPORTS / "real-63k-s0.json"), str(REPORTS / "rescored-256" / "real-s1.json")],
            )
        )
    with pytest.raises(ValueError, match="has no 'real' row"):
        pool(
            PoolConfig(
                imagination=[str(REPORTS / "imagination-all-tuned-s0.json")],
                real=[str(REPORTS / "imagination-all-tuned-s1.json")],
            )
        )
    with pytest.raises(ValueError, match="matches nothing"):
        pool(PoolConfig(imagination=[str(tmp_path / "runs-s*")], real=[str(REPORTS / "real-63k-s0.json")]))
    with pytest.raises(ValueError, match="checkpoint= is required to train"):
        imagine(ImagineConfig())
