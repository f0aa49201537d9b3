"""Per-mode permanence figures and a picture of memory models against the truth (docs/memory.md).

Run from the repository root, each model as ``label=path``, e.g.::

    python docs/memory_figure.py on=runs/occlusion-memory/model.pt off=runs/occlusion-memory-off/model.pt \
        --bank-off on --n 64 --out docs/memory-camera-pan.png

It makes the permanence suite's scenarios (Occlusion, 8 context frames, 48 predicted, the
scripted policy), predicts them with every model (``--bank-off LABEL`` adds that model again with
its bank switched off, ``sampling.memory=false``) and copy-last, prints the suite's figures per
episode mode (``camera_pan``, ``occluder_slides``, ``pass_behind``) as a markdown table, and draws
the first ``--pictures`` scenarios of ``--mode``: the truth, then each model, every 4th frame.
``--sampling residual=false`` sets a sampling field for every model; ``--bank-attention LABEL``
also prints the share of attention that model gives its bank over the ``--mode`` scenarios.
``--orbit`` takes the memory suite's Orbit loops instead (4 context frames, 48 predicted), prints
its return-frame figures per time away and draws the first ``--pictures`` scenarios.
``--clip-coverage DATA [--window W]`` only counts the clips of a dataset that hold a return past
the window (what a memory model can learn from); ``--return-loss DATA`` only prints each model's
prediction error on the frames of DATA where something comes back after longer than its window
away (an Occlusion object shown again, Orbit's camera back at a pose), each frame seeing the clean
frames before it (``return_frame_loss``).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from worldsim.data.dataset import EpisodeDataset
from worldsim.evals import memory, permanence
from worldsim.evals.baselines import make_predictor
from worldsim.evals.consistency import loop_returns
from worldsim.evals.scenarios import make_scenarios, predict_scenarios
from worldsim.models.dit import CleanHistory, VideoDiT
from worldsim.models.memory import memory_visibility
from worldsim.viz import frame_strip, labelled_rows
from worldsim.world_model import WorldModel

METRICS = ("reappearance_rate", "identity_kept", "position_error_px", "visible_while_hidden")


def per_mode(scenarios, predictions, name: str) -> dict[str, dict[str, float]]:
    """The suite's metric means over each mode's scenarios: {mode: {metric: value}}."""
    modes = defaultdict(list)
    for i, scenario in enumerate(scenarios):
        modes[scenario.params["mode"]].append(i)
    table = {}
    for mode, picked in sorted(modes.items()):
        rows = permanence.score_permanence([scenarios[i] for i in picked], predictions[picked], name)
        table[mode] = {row["metric"]: row["value"] for row in rows}
        table[mode]["scenarios"] = len(picked)
    return table


def print_mode_table(scenarios, predictions: dict[str, np.ndarray]) -> None:
    """The permanence suite's figures per Occlusion episode mode, one row per predictor, as markdown."""
    print(f"| mode | predictor | {' | '.join(METRICS)} |")
    print(f"| --- | --- | {' | '.join('---:' for _ in METRICS)} |")
    tables = {label: per_mode(scenarios, frames, label) for label, frames in predictions.items()}
    for mode in sorted(next(iter(tables.values()))):
        for label, table in tables.items():
            cells = " | ".join(f"{table[mode].get(metric, float('nan')):.2f}" for metric in METRICS)
            print(f"| {mode} ({table[mode]['scenarios']}) | {label} | {cells} |")


def print_orbit_table(scenarios, predictions: dict[str, np.ndarray]) -> None:
    """The memory suite's Orbit-loop figures over all returns and per time away, one column per predictor."""
    rows = {label: memory.score_memory(scenarios, frames, label) for label, frames in predictions.items()}
    names = [row["metric"] for row in next(iter(rows.values()))]
    print(f"| return frames ({len(scenarios)} scenarios) | {' | '.join(rows)} |")
    print(f"| --- | {' | '.join('---:' for _ in rows)} |")
    for name in names:
        cells = [next(f"{r['value']:.2f}" for r in table if r["metric"] == name) for table in rows.values()]
        print(f"| {name} | {' | '.join(cells)} |")


def clip_coverage(root: str, window: int, lengths: tuple[int, ...] = (32, 48, 64)) -> None:
    """Print the share of a dataset's clips (every start) that hold a return past ``window`` frames."""
    data = EpisodeDataset(root)
    name = return_state(data)
    states = [data.clip(i, 0, data.frame_count(i), [name])[name] for i in range(len(data))]
    for length in lengths:
        held = [
            bool(returns(episode[start : start + length], window))
            for episode in states
            for start in range(len(episode) - length + 1)
        ]
        print(
            f"{length}-frame clips of {root}: {np.mean(held):.2f} of {len(held)} hold a return after > {window} frames"
        )


def return_state(data: EpisodeDataset) -> str:
    """The recorded state that says what comes back: Orbit's camera pose, or which objects show."""
    return "state.camera_pose" if "state.camera_pose" in data.arrays else "state.object_visible"


def returns(state: np.ndarray, window: int) -> list[tuple[int, np.ndarray]]:
    """Every frame where something comes back after more than ``window`` frames away, with the frames showing it.

    ``state`` is a clip's ``return_state``: camera poses (T, 3), where a return is the camera back
    at a pose it left (``loop_returns``, timed from the last frame with that pose); or object
    visibility (T, K), where a return is an object shown again after hiding. Each return is
    ``(frame, shows)``, ``shows`` (T,) bool marking the frames that show what returns.
    """
    if np.issubdtype(state.dtype, np.floating):
        return [
            (j, np.all(state == state[j], axis=1))
            for i, j in loop_returns(state, first=0, latest=True)
            if j - i > window
        ]
    visible = state.astype(bool)
    found = []
    for slot in range(visible.shape[1]):
        seen = np.flatnonzero(visible[:, slot])
        found += [(int(t), visible[:, slot]) for s, t in zip(seen[:-1], seen[1:]) if t - s > window]
    return found


@torch.no_grad()
def return_frame_loss(
    paths: dict[str, str], root: str, bank_off: list[str], clip_length: int, noise_levels=(0.25, 0.5, 0.75)
) -> None:
    """Print each model's velocity error on the frames where something returns after longer than its
    window away (``returns``), against its error on every other frame, every frame seeing clean frames before it.

    The frames each model predicts are the first ``clip_length`` of every episode of ``root``, noised
    the same way for every model at each of ``noise_levels`` (paired), each frame conditioned on the
    clean (context-noised) clip before it, as a rollout conditions it (``CleanHistory``). Where the
    bank helps, the error on return frames falls while the error elsewhere stays.
    """
    data = EpisodeDataset(root)
    state_name = return_state(data)
    arms = [(label, path, True) for label, path in paths.items()]
    arms += [(f"{label}, bank off", paths[label], False) for label in bank_off]
    errors = {label: ([], []) for label, _, _ in arms}
    in_bank = {label: [] for label, _, _ in arms}
    for label, path, bank_on in arms:
        model = WorldModel.from_checkpoint(path, device="cpu")
        dit = model.dit if bank_on else plain_network(model.dit)
        window = model.dit.cfg.window
        for index in range(len(data)):
            clip = data.clip(index, 0, clip_length, ["frames", "actions", state_name])
            returned = returns(clip[state_name], window)
            is_return = torch.zeros(clip_length, dtype=torch.bool)
            is_return[[t for t, _ in returned]] = True
            latents = model.encode(clip["frames"])[None].float()  # (1, T, C, h, w)
            if dit.remembers:  # is what returns in a frame the bank holds then?
                bank = memory_visibility(latents, window, dit.cfg.memory_slots)[0].numpy()  # (T, T)
                in_bank[label] += [bool(shows[bank[t]].any()) for t, shows in returned]
            actions = model.model_actions(clip["actions"][None, : clip_length - 1], 1, clip_length - 1)
            if actions is not None:  # actions[:, t] led to frame t
                actions = torch.cat([torch.zeros_like(actions[:, :1]), actions], dim=1)
                action_mask = (torch.arange(clip_length) > 0)[None]
            else:
                action_mask = None
            text = model.encode_text(data.caption(index), 1)
            generator = torch.Generator().manual_seed(index)
            history_noise = torch.randn(latents.shape, generator=generator)
            history = CleanHistory(
                model.context_noise * latents + (1 - model.context_noise) * history_noise,
                torch.full((1, clip_length), model.context_noise),
            )
            memory_from = {"memory_from": latents} if dit.remembers else {}
            for tau in noise_levels:
                noise = torch.randn(latents.shape, generator=generator)
                level = torch.full((1, clip_length), tau)
                velocity = dit(
                    tau * latents + (1 - tau) * noise, level, actions, action_mask, text, history=history, **memory_from
                )
                per_frame = (velocity - (latents - noise)).pow(2).mean(dim=(2, 3, 4))[0]  # (T,)
                errors[label][0].extend(per_frame[is_return].tolist())
                errors[label][1].extend(per_frame[~is_return & (torch.arange(clip_length) > window)].tolist())
    frames = len(errors[arms[0][0]][0]) // len(noise_levels)
    print(f"| model | {frames} return frames, {len(noise_levels)} noise levels each | other frames past the window |")
    print("| --- | ---: | ---: |")
    for label, (returned, other) in errors.items():
        print(f"| {label} | {np.mean(returned):.4f} | {np.mean(other):.4f} |")
    for label, held in in_bank.items():
        if held:
            print(f"{label}: what returns is in a bank frame at {sum(held)} of {len(held)} returns")


def plain_network(dit: VideoDiT) -> VideoDiT:
    """The same weights without memory: each frame sees its window only."""
    plain = VideoDiT(dataclasses.replace(dit.cfg, memory_slots=0)).eval()
    plain.load_state_dict(dit.state_dict())
    return plain


def bank_attention_share(path: str, scenarios) -> float:
    """Mean share of attention a memory model's new frame gives its bank's keys over ``scenarios``' rollouts.

    Measured by wrapping ``torch.nn.functional.scaled_dot_product_attention`` (which the DiT calls)
    for the rollouts only: where one new frame's keys are the bank's followed by the window's and its
    own, the softmax weights are recomputed and the bank's columns summed.
    """
    from worldsim.models import dit

    model = make_predictor("model", checkpoint=path)
    tokens = model.model.dit.cfg.tokens_per_frame
    recent = (model.model.dit.cfg.window + 1) * tokens
    shares, attention = [], dit.F.scaled_dot_product_attention

    def measured(q, k, v, attn_mask=None, **kwargs):
        if attn_mask is not None and attn_mask.shape[-1] == k.shape[2] > recent and q.shape[2] == tokens:
            weights = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~attn_mask, float("-inf")).softmax(-1)
            shares.append(float(weights[..., : k.shape[2] - recent].sum(-1).mean()))
        return attention(q, k, v, attn_mask=attn_mask, **kwargs)

    dit.F.scaled_dot_product_attention = measured
    try:
        predict_scenarios(model, scenarios)
    finally:
        dit.F.scaled_dot_product_attention = attention
    return float(np.mean(shares))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="label=path/to/model.pt")
    parser.add_argument("--clip-coverage", metavar="DATA", help="only print how many clips of DATA hold a return")
    parser.add_argument("--window", type=int, default=7, help="with --clip-coverage")
    parser.add_argument("--return-loss", metavar="DATA", help="only print each model's error on DATA's return frames")
    parser.add_argument("--clip-length", type=int, default=64, help="with --return-loss")
    parser.add_argument("--bank-attention", action="append", default=[], help="a label whose bank share to print")
    parser.add_argument("--bank-off", action="append", default=[], help="a label to add again with its bank off")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--split", default="id")
    parser.add_argument("--mode", default="camera_pan")
    parser.add_argument("--orbit", action="store_true", help="the memory suite's Orbit loops instead of Occlusion")
    parser.add_argument("--pictures", type=int, default=2)
    parser.add_argument(
        "--sampling", action="append", default=[], help="a sampling field for every model: residual=false"
    )
    parser.add_argument("--out", type=Path, default=Path("memory-figure.png"))
    args = parser.parse_args()
    if args.clip_coverage:
        clip_coverage(args.clip_coverage, args.window)
        return
    if args.return_loss:
        paths = dict(spec.split("=", 1) for spec in args.models)
        return_frame_loss(paths, args.return_loss, args.bank_off, args.clip_length)
        return
    sampling = {key: yaml.safe_load(value) for key, value in (item.split("=", 1) for item in args.sampling)}

    if args.orbit:
        scenarios = memory.orbit_scenarios(args.n, args.split, seed=0)
    else:
        scenarios = make_scenarios(permanence.ENV_ID, args.n, permanence.CONTEXT, permanence.HORIZON, args.split)
    paths = dict(spec.split("=", 1) for spec in args.models)
    predictors = [
        (label, make_predictor("model", checkpoint=path, name=label, sampling=sampling))
        for label, path in paths.items()
    ]
    for label in args.bank_off:
        bank_off = {**sampling, "memory": False}
        predictors.append((f"{label}, bank off", make_predictor("model", checkpoint=paths[label], sampling=bank_off)))
    predictors.append(("copy-last", make_predictor("copy_last")))
    predictions = {label: predict_scenarios(predictor, scenarios) for label, predictor in predictors}

    if args.orbit:
        print_orbit_table(scenarios, predictions)
        picked = list(range(len(scenarios)))
    else:
        print_mode_table(scenarios, predictions)
        picked = [i for i, s in enumerate(scenarios) if s.params["mode"] == args.mode]
    for label in args.bank_attention:
        share = bank_attention_share(paths[label], [scenarios[i] for i in picked])
        print(f"{label}: {share:.3f} of its attention on the bank over {len(picked)} scenarios")

    shown = picked[: args.pictures]
    rows = []
    for i in shown:
        rows.append((f"truth {i}", frame_strip(scenarios[i].future_frames, count=12, stride=4)))
        for label, frames in predictions.items():
            if label != "copy-last":  # its last context frame, twelve times
                rows.append((label, frame_strip(frames[i], count=12, stride=4)))
    picture = cv2.cvtColor(labelled_rows(rows, label_width=120), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(args.out), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])  # the flat frames pack 2x smaller
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
