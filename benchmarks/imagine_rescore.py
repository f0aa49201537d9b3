"""Re-score the policies of finished ``worldsim imagine`` runs on more real-env episodes.

A run scores each trained policy on a few real episodes (32 in the README's table), and on Push
behind the target a few successful pushes make most of the return, so one policy's mean is
uncertain by about its own size. This plays the policies a run saved (``<out>/ppo_<name>.zip``)
again, exactly as the run evaluated them, on ``--episodes`` real episodes from the run's first
evaluation seed on, and writes a report in ``imagine.json``'s shape: the trained rows re-scored,
their training figures kept. ``imagine_ratio.py`` reads it as it reads a run's. The run's own
episodes come first, so the script checks that it reproduces their returns before it goes on.

    python benchmarks/imagine_rescore.py runs/imagine-s4/imagine.json --episodes 256 --out runs/imagine-s4/rescored.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldsim.imagine import evaluate_agent, markdown, return_ratios, summarize
from worldsim.world_model import WorldModel


def rescore(report_path: Path, episodes: int) -> dict[str, Any]:
    """The report at ``report_path`` with its trained rows played again on ``episodes`` real episodes."""
    from stable_baselines3 import PPO

    report = json.loads(report_path.read_text())
    cfg, facts = report["config"], report["facts"]
    if episodes < len(facts["eval_seeds"]):
        raise SystemExit(f"--episodes {episodes} is fewer than the {len(facts['eval_seeds'])} the run played")
    model = WorldModel.from_checkpoint(cfg["checkpoint"], device="cpu")
    seeds = [cfg["eval_seed"] + i for i in range(episodes)]

    rows = []
    for row in report["rows"]:
        if "train" not in row:
            continue
        policy = report_path.parent / f"ppo_{row['policy']}.zip"
        if not policy.is_file():
            raise SystemExit(f"{policy} is missing: re-scoring needs the policies the run saved beside its report")
        agent = PPO.load(policy, device="cpu")
        scored = summarize(row["policy"], evaluate_agent(agent, model, facts["horizon"], cfg["env_kwargs"],
                                                         cfg["observation"], seeds), None)
        again = np.asarray(scored["returns"][: row["n"]])
        if not np.allclose(again, row["returns"], atol=2e-4):
            raise SystemExit(f"{policy} earns other returns on the run's own episodes than the run reported "
                             f"(largest gap {np.abs(again - row['returns']).max():.4f}): is {cfg['checkpoint']} "
                             "the model the run used?")
        rows.append({**scored, "train": row["train"]})
    if not rows:
        raise SystemExit(f"{report_path} has no trained policy to re-score (rows: {[r['policy'] for r in report['rows']]})")
    return {**report, "config": {**cfg, "eval_episodes": episodes}, "rows": rows, "ratios": return_ratios(
        {row["policy"]: row for row in rows}), "facts": {**facts, "eval_seeds": seeds, "rescored_from": str(report_path)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="imagine.json of a finished run, its ppo_<name>.zip beside it")
    parser.add_argument("--episodes", type=int, default=256, help="real episodes per policy")
    parser.add_argument("--out", type=Path, required=True, help="where the re-scored report goes (json)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = rescore(args.report, args.episodes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report["rows"], report["ratios"], report["facts"]), end="")


if __name__ == "__main__":
    main()
