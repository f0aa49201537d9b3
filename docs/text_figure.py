"""Draw docs/text-confetti.png: what the text suite's colour rule must not pass.

Run from the repository root after ``worldsim train experiment=physics_text`` (or pass another
model file): ``python docs/text_figure.py runs/physics-text/model.pt``. Each row is one of the
text suite's first eight id scenarios (seed 0): the simulator's episode, every third frame, then
the model's video from the caption alone at text guidance ``CFG_TEXT``.
"""

from __future__ import annotations

import sys

import numpy as np

from worldsim.evals.baselines import make_predictor
from worldsim.evals.scenarios import predict_scenarios
from worldsim.evals.text import caption_only, make_text_scenarios
from worldsim.sampling import SamplingConfig
from worldsim.viz import frame_strip, save_png

ROWS, EVERY, CFG_TEXT = 8, 3, 10.0


def main(checkpoint: str) -> None:
    scenarios = make_text_scenarios(ROWS, "id", 0, None)[0]
    model = make_predictor("model", checkpoint=checkpoint, sampling=SamplingConfig(cfg_text=CFG_TEXT))
    videos = predict_scenarios(model, caption_only(scenarios), ROWS)
    count = -(-len(videos[0]) // EVERY)
    rows = [
        np.concatenate([frame_strip(s.frames[::EVERY], count, 1, 1), frame_strip(v[::EVERY], count, 1, 1)], axis=1)
        for s, v in zip(scenarios, videos)
    ]
    save_png("docs/text-confetti.png", np.concatenate(rows, axis=0))
    for s in scenarios:
        print(s.caption)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/physics-text/model.pt")
