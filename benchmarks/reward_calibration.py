"""Does a Push model's reward head pay what the real env pays for the same actions?

Plays a few policies in the real Push env, replays each episode's actions open loop in the model
(from 15 copies of the episode's first real frame, as ``worldsim imagine``'s imagined episodes
start) and sums the model's predicted rewards until its termination head ends the episode. A head
that pays for what the real env does not, such as a straight drive that moves nothing, is what
PPO trained in imagination finds and exploits. The last frames of the two episodes are also
compared: where the color tracker finds the target (and the pusher) in each, so a wrong predicted
return can be told apart from a wrong predicted world.

    python benchmarks/reward_calibration.py --checkpoint worldsim/reference/push.pt
"""

from __future__ import annotations

import argparse

import gymnasium
import numpy as np
import torch

import worldsim  # noqa: F401  (registers the ids)
from worldsim.data.policies import make_policy
from worldsim.evals.tracking import track
from worldsim.world_model import WorldModel


class Constant:
    """One action for the whole episode: a drive in a straight line."""

    def __init__(self, action: tuple[float, float]) -> None:
        self.action = np.array(action, np.float32)

    def reset(self, seed: int) -> None:
        pass

    def __call__(self, observation: np.ndarray, info: dict) -> np.ndarray:
        return self.action


def returns(model: WorldModel, env: gymnasium.Env, policy, seeds: range) -> dict[str, np.ndarray]:
    """Per seed: the real and the predicted return, and the tracked objects in both last frames.

    ``end_error`` (episodes, 2): pixels between the target's / pusher's centroid in the real and the
    imagined last frame, NaN where the tracker misses it in the imagined one (``end_found``).
    """
    window = model.window
    real, predicted, end_error, end_found = [], [], [], []
    for seed in seeds:
        policy.reset(seed)
        observation, info = env.reset(seed=seed)
        context = np.repeat(observation[None, None], window, axis=1)  # (1, window, H, W, 3): the world left alone
        actions, total, done = [], 0.0, False
        while not done:
            actions.append(np.asarray(policy(observation, info), np.float32))
            observation, reward, terminated, truncated, info = env.step(actions[-1])
            total, done = total + float(reward), terminated or truncated
        model.reset(context, np.zeros((1, window - 1, *actions[0].shape), np.float32), [info["caption"]], seed=0,
                    decode=False)
        imagined, frame = 0.0, None
        for action in actions:
            out = model.step(action[None])
            imagined, frame = imagined + float(out.reward[0]), out.frames[0]
            if out.terminated[0]:
                break
        colors = info["state"]["object_color"]  # (2, 3): the target, then the pusher
        truth, guess = track(observation[None], colors), track(frame[None], colors)
        end_error.append(np.linalg.norm(guess.centroid[0] - truth.centroid[0], axis=-1))
        end_found.append(guess.found[0])
        real.append(total)
        predicted.append(imagined)
    return {"real": np.array(real), "predicted": np.array(predicted), "end_error": np.array(end_error),
            "end_found": np.array(end_found)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=None, help="a Push model file (default: the shipped reference)")
    parser.add_argument("--episodes", type=int, default=12, help="episodes per policy")
    parser.add_argument("--horizon", type=int, default=48, help="steps per episode")
    parser.add_argument("--start", default="behind", help="Push's start: behind | random")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = WorldModel.from_checkpoint(args.checkpoint or worldsim.reference_checkpoint("push"), "cpu")
    env = gymnasium.make("worldsim/Push-v0", start=args.start, max_episode_steps=args.horizon)
    policies = {"scripted": make_policy("scripted", env), "random": make_policy("random", env),
                "straight (1, 1)": Constant((1.0, 1.0)), "straight (-1, 0.3)": Constant((-1.0, 0.3)),
                "still": Constant((0.0, 0.0))}
    seeds = range(2_000_000, 2_000_000 + args.episodes)
    print(f"{args.checkpoint or 'shipped Push reference'}: {args.episodes} episodes per policy, start={args.start}, "
          f"horizon {args.horizon}")
    print("| policy | real return | model-predicted return | mean abs. error | last frame: target / pusher "
          "found | their centroid error (px, where found) |\n| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, policy in policies.items():
        r = returns(model, env, policy, seeds)
        found = r["end_found"].mean(axis=0)
        error = [np.nanmean(column) if np.isfinite(column).any() else np.nan for column in r["end_error"].T]
        print(f"| {name} | {r['real'].mean():.2f} | {r['predicted'].mean():.2f} | "
              f"{np.abs(r['predicted'] - r['real']).mean():.2f} | {found[0]:.0%} / {found[1]:.0%} | "
              f"{error[0]:.1f} / {error[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
