"""Draw docs/rollout.png: truth, the shipped reference and copy-last on the first ID rollout scenario.

Run from the repository root: ``python docs/rollout_figure.py``. Each row shows the last context
frame, then horizons 1, 2, 4, 8, 12 and 16 of ``make_scenarios(env_id, 1, 4, 16, "id", 0)[0]``.
"""

from __future__ import annotations

import numpy as np

from worldsim.evals.baselines import make_predictor
from worldsim.evals.scenarios import make_scenarios, predict_scenarios
from worldsim.viz import frame_strip, labelled_rows, save_png

CONTEXT, HORIZON = 4, 16
SHOWN = [0, 1, 2, 4, 8, 12, 16]  # steps after the last context frame


def main() -> None:
    predictors = {"reference": make_predictor("reference"), "copy-last": make_predictor("copy_last")}
    rows = []
    for world, env_id in (("Physics", "worldsim/Physics-v0"), ("Push", "worldsim/Push-v0")):
        scenario = make_scenarios(env_id, 1, CONTEXT, HORIZON, "id", 0)[0]
        last = scenario.frames[CONTEXT - 1 : CONTEXT]
        futures = {"truth": scenario.frames[CONTEXT:]}
        futures |= {name: predict_scenarios(p, [scenario])[0] for name, p in predictors.items()}
        for name, future in futures.items():
            frames = np.concatenate([last, future])[SHOWN]
            rows.append((f"{world} {name}", frame_strip(frames, count=len(SHOWN), stride=1)))
    save_png("docs/rollout.png", labelled_rows(rows, label_width=120))


if __name__ == "__main__":
    main()
