"""Draw the pictures of docs/text.md: the simulator's episodes beside a model's caption-only videos.

Run from the repository root after ``worldsim train experiment=physics_text`` (or pass another
model files). Each row is one of the text suite's first eight scenarios (seed 0) of a split: the
simulator's episode, every third frame, then each model's video from the caption alone.

    python docs/text_figure.py <bytes model.pt> --cfg-text 10 --out docs/text-confetti.png
    python docs/text_figure.py <bytes model.pt> runs/physics-text/model.pt --split ood --out docs/text-unseen-pairs.png
"""

from __future__ import annotations

import argparse

import numpy as np

from worldsim.evals.baselines import make_predictor
from worldsim.evals.scenarios import predict_scenarios
from worldsim.evals.text import caption_only, make_text_scenarios
from worldsim.sampling import SamplingConfig
from worldsim.viz import frame_strip, save_png

ROWS, EVERY = 8, 3


def main(checkpoints: list[str], cfg_text: float, split: str, out: str) -> None:
    scenarios = make_text_scenarios(ROWS, split, 0, None)[0]
    sampling = SamplingConfig(cfg_text=cfg_text)
    videos = [
        predict_scenarios(make_predictor("model", checkpoint=c, sampling=sampling), caption_only(scenarios), ROWS)
        for c in checkpoints
    ]
    count = -(-len(scenarios[0].frames) // EVERY)
    rows = [
        np.concatenate([frame_strip(v[::EVERY], count, 1, 1) for v in (s.frames, *by_model)], axis=1)
        for s, *by_model in zip(scenarios, *videos)
    ]
    save_png(out, np.concatenate(rows, axis=0))
    for s in scenarios:
        print(s.caption)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="model files, one column each")
    parser.add_argument("--cfg-text", type=float, default=3.0, help="text guidance scale")
    parser.add_argument("--split", choices=("id", "ood"), default="id")
    parser.add_argument("--out", default="docs/text-model.png")
    args = parser.parse_args()
    main(args.checkpoints, args.cfg_text, args.split, args.out)
