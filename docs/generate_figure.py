"""Draw docs/generate-physics.gif: the simulator's episode beside four seeds of the Physics reference.

Run from the repository root: ``python docs/generate_figure.py``. The prompt is the caption
``worldsim/Physics-v0`` writes for reset seed ``EPISODE_SEED``; the simulator plays that episode
with the zero action (no kick), and the shipped reference imagines it from the caption alone
(``WorldModel.generate``, text guidance ``CFG_TEXT``) with seeds 0-3, no frame of the episode seen.
"""

from __future__ import annotations

import gymnasium
import numpy as np

import worldsim  # noqa: F401  (registers the ids)
from worldsim.references import reference_checkpoint
from worldsim.viz import frame_strip, title_band, write_gif
from worldsim.world_model import WorldModel

EPISODE_SEED = 38  # "a green ball is thrown to the right": one object, so its colour and motion are plain to see
FRAMES, SEEDS, CFG_TEXT, SCALE, FPS = 48, 4, 3.0, 2, 10


def simulator_episode(seed: int, frames: int) -> tuple[np.ndarray, str]:
    """(frames (T, 64, 64, 3), caption) of Physics-v0 reset with ``seed`` and left alone."""
    env = gymnasium.make("worldsim/Physics-v0")
    observation, info = env.reset(seed=seed)
    seen = [observation]
    for _ in range(frames - 1):
        seen.append(env.step(np.zeros(3, np.float32))[0])
    env.close()
    return np.stack(seen), info["caption"]


def main() -> None:
    truth, caption = simulator_episode(EPISODE_SEED, FRAMES)
    model = WorldModel.from_checkpoint(reference_checkpoint("physics"), device="cpu")
    videos = model.generate(caption, FRAMES, n=SEEDS, seed=0, sampling={"cfg_text": CFG_TEXT}, progress=True)
    panels = np.concatenate([truth[None], videos])  # (1 + SEEDS, T, H, W, 3)
    width = 64 * SCALE
    titles = ["simulator"] + [f"model seed {s}" for s in range(SEEDS)]
    pictures = []
    for t in range(FRAMES):
        strip = frame_strip(panels[:, t], count=len(panels), stride=1, scale=SCALE)
        heading = title_band(strip.shape[1], strip.shape[1], [f'"{caption}"   t={t}'], SCALE)
        pictures.append(np.concatenate([heading, title_band(strip.shape[1], width, titles, SCALE), strip]))
    write_gif("docs/generate-physics.gif", pictures, FPS)


if __name__ == "__main__":
    main()
