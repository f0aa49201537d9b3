"""Draw the BlockWorld GIFs of the README: the shipped reference beside the truth.

Run from the repository root: ``python docs/blockworld_figure.py``. It writes

- ``docs/blockworld-long.gif``: 600 steps of the basic policy (``worldsim play`` with
  ``policy=scripted``, seed 0), the truth left and the reference right, every 8th step;
- ``docs/blockworld-lookaway.gif``: the memory suite's first look-away-and-back scenario (ID,
  seed 0), every frame from the context to the return: truth, reference, copy-last.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from worldsim.evals import memory
from worldsim.evals.baselines import make_predictor
from worldsim.evals.scenarios import predict_scenarios
from worldsim.play import PlayConfig, play
from worldsim.references import reference_checkpoint
from worldsim.viz import frame_strip, title_band, write_gif

SCALE = 2
LONG_STEPS, LONG_STRIDE = 600, 8


def panels(frames: list[np.ndarray], titles: list[str]) -> np.ndarray:
    """Frames side by side, enlarged, under a title band."""
    row = frame_strip(np.stack(frames), count=len(frames), stride=1, scale=SCALE)
    return np.concatenate([title_band(row.shape[1], frames[0].shape[1] * SCALE, titles, SCALE), row])


def long_gif(out: Path) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cfg = PlayConfig(
            checkpoint=str(reference_checkpoint("blockworld")), policy="scripted", steps=LONG_STEPS, seed=0, out=folder
        )
        result = play(cfg)
    pictures = [
        panels([truth, model], [f"truth  step {t}", "reference"])
        for t, (truth, model) in enumerate(zip(result.real_frames, result.model_frames))
        if t % LONG_STRIDE == 0
    ]
    write_gif(out, pictures, fps=8)


def lookaway_gif(out: Path) -> None:
    (scenario, *_) = memory.blockworld_scenarios("lookaway", 1, "id", 0)
    predictors = {"reference": make_predictor("reference"), "copy-last": make_predictor("copy_last")}
    futures = {name: predict_scenarios(p, [scenario])[0] for name, p in predictors.items()}
    ((start, back),) = scenario.params["memory"]["returns"]
    pictures = []
    for t in range(back + 4):
        frames = [scenario.frames[t]]
        frames += [scenario.frames[t] if t < scenario.context else f[t - scenario.context] for f in futures.values()]
        label = "view" if t == start else "back" if t == back else "context" if t < scenario.context else f"t={t}"
        pictures.append(panels(frames, [f"truth {label}", *futures]))
    write_gif(out, pictures, fps=6)


def main() -> None:
    long_gif(Path("docs/blockworld-long.gif"))
    lookaway_gif(Path("docs/blockworld-lookaway.gif"))


if __name__ == "__main__":
    main()
