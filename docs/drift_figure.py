"""Where a rollout loses the scene: in the autoencoder, one step ahead of true frames, or in the rollout itself.

For the first ``context + horizon`` frames of every episode of a recorded dataset, each model
gives three versions of frames ``context`` onwards, all decoded directly (residual decoding's
outlines would blur the answer):

- **autoencoder**: the true frame encoded and decoded, the ceiling of anything the model draws;
- **one step**: each frame predicted from the true frames before it (as many as its window
  holds), which is what training teaches;
- **rollout**: every frame after the first ``context`` predicted from the model's own, which is
  what a user steps.

Prints pooled PSNR per span of steps beside copy-last's, and draws the first episodes. Where one
step keeps the scene and the rollout loses it, the error is the rollout's compounding, not what the
model can draw. ``--actions zero`` or ``shuffled`` (another episode's) shows how much the model
follows its actions. Run from the repository root:

    python docs/drift_figure.py orbit=worldsim/reference/orbit.pt --data data/orbit-heldout --out drift.png
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image

from worldsim.data.dataset import EpisodeDataset
from worldsim.metrics import pooled_psnr
from worldsim.viz import frame_strip, labelled_rows
from worldsim.world_model import WorldModel

SPANS = ((1, 4), (5, 8), (9, 16), (17, 32), (33, 64))  # steps after the context, inclusive
DIRECT = {"residual": False}


def versions(model: WorldModel, frames: np.ndarray, actions: np.ndarray, text: list[str], context: int) -> dict:
    """The three versions of frames (B, T, H, W, 3) from ``context`` on, each (B, T - context, H, W, 3)."""
    length = frames.shape[1]
    window = model.dit.cfg.window
    one_step = []
    for t in range(context, length):
        start = max(0, t - window)
        step = model.rollout(frames[:, start:t], actions[:, start:t], text, 1, seed=t, sampling=DIRECT)
        one_step.append(step[:, 0])
    rollout = model.rollout(
        frames[:, :context], actions[:, : length - 1], text, length - context, seed=0, sampling=DIRECT
    )
    autoencoder = model.decode(model.encode(frames[:, context:]))
    return {"autoencoder": autoencoder, "one step": np.stack(one_step, 1), "rollout": rollout}


def save_small_png(path: str, image: np.ndarray) -> None:
    """64 colours are plenty for these flat-shaded worlds and keep the picture a fifth of its size."""
    Image.fromarray(image).quantize(64).save(path, optimize=True)


def span_psnr(predicted: np.ndarray, truth: np.ndarray, spans: list[tuple[int, int]]) -> str:
    """Pooled PSNR of each span of steps (first, last; from 1), as markdown cells."""
    return " | ".join(f"{pooled_psnr(predicted[:, a - 1 : b], truth[:, a - 1 : b]):.2f}" for a, b in spans)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="label=path/to/model.pt")
    parser.add_argument("--data", required=True, help="a recorded dataset of the models' world")
    parser.add_argument("--context", type=int, default=4, help="true frames before the first predicted one")
    parser.add_argument("--horizon", type=int, default=28, help="predicted frames per episode")
    parser.add_argument("--pictures", type=int, default=2, help="episodes drawn")
    parser.add_argument(
        "--actions", choices=("true", "zero", "shuffled"), default="true", help="what the models are told"
    )
    parser.add_argument("--out", default="drift.png")
    args = parser.parse_args()

    data = EpisodeDataset(args.data)
    length = args.context + args.horizon
    short = [i for i in range(len(data)) if data.frame_count(i) < length]
    if short:
        raise SystemExit(f"episodes {short} of {args.data} have fewer than {length} frames: lower --horizon")
    clips = [data.clip(i, 0, length, ["frames", "actions"]) for i in range(len(data))]
    frames = np.stack([c["frames"] for c in clips])
    actions = np.stack([c["actions"] for c in clips])
    if args.actions == "zero":
        actions = np.zeros_like(actions)
    elif args.actions == "shuffled":
        actions = actions[np.random.default_rng(0).permutation(len(actions))]
    text = [data.caption(i) for i in range(len(data))]
    truth = frames[:, args.context :]
    copy_last = np.repeat(frames[:, args.context - 1 : args.context], args.horizon, axis=1)

    spans = [(a, min(b, args.horizon)) for a, b in SPANS if a <= args.horizon]
    header = " | ".join(f"steps {a}-{b}" for a, b in spans)
    print(f"PSNR (dB) over {len(data)} episodes of {args.data}, {args.actions} actions\n| model | version | {header} |")
    print("| --- | --- |" + " ---: |" * len(spans))
    print(f"| copy-last | | {span_psnr(copy_last, truth, spans)} |")
    drawn: dict[str, np.ndarray] = {}
    for spec in args.models:
        label, path = spec.split("=", 1)
        model = WorldModel.from_checkpoint(path, device="cpu")
        for version, predicted in versions(model, frames, actions, text, args.context).items():
            print(f"| {label} | {version} | {span_psnr(predicted, truth, spans)} |")
            drawn[f"{label}: {version}"] = predicted[: args.pictures]
    count = min(10, args.horizon)
    stride = max(1, args.horizon // count)
    strips = []
    for i in range(min(args.pictures, len(data))):
        strips.append((f"truth, episode {i}", frame_strip(truth[i], count=count, stride=stride)))
        strips += [(name, frame_strip(predicted[i], count=count, stride=stride)) for name, predicted in drawn.items()]
    save_small_png(args.out, labelled_rows(strips, label_width=180))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
