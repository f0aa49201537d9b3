"""``worldsim imagine``: PPO trained inside the learned world, scored in the real one.

Trains Stable-Baselines3's PPO, unmodified, twice with the same budget: once in imagination (the
batched ``worldsim/WorldModel-v0`` vector env of a Push model, through ``worldsim.rl``'s adapter)
and once in the real PyBullet ``worldsim/Push-v0``. Both policies, a random one and the world's
scripted policy (a reference ceiling) then play the same real-env episodes (fixed seeds), and
``<out>/imagine.json`` and ``<out>/imagine.md`` report each one's real-env return with its 95%
confidence interval, success rate, training wall time and env frames/s, and the ratio of the
imagination-trained return to the real-trained one. Each trained policy is saved as
``<out>/ppo_<name>.zip``, its learning curve (PPO's table after every rollout) as ``<out>/ppo_<name>.csv``.

Both PPO runs see the same kind of observation: ``observation=latent`` (default) gives the model's
autoencoder latents, in the real env too (``ModelObservation`` encodes each real frame with
``WorldModel.encode``), read by an MLP; ``observation=rgb`` gives frames to a CNN, much slower on a
CPU. Imagined episodes start from real frames of the world left alone (``context_policy=zero``), so
they begin where real episodes do. ``env_kwargs`` configures every real env alike, e.g.
``+env_kwargs.start=behind`` for Push's start behind the target. Needs the ``rl`` extra:
``pip install -e ".[rl]"``.

Two more modes train nothing. ``rescore=<run>`` plays a finished run's saved policies again on
``eval_episodes`` real episodes, the run's own first (reproduced exactly, as a check), and writes a
report of the same shape into ``out``. ``pool.imagination=[...] pool.real=[...]`` pools the reports
of several seeds into one imagination/real return ratio with two intervals
(``worldsim.imagine_pool``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from worldsim.config_checks import check_at_least, check_within
from worldsim.envs import WORLD_MODEL_ID
from worldsim.evals.results import Z95
from worldsim.imagine_pool import PoolConfig, pool
from worldsim.imagine_pool import markdown as pool_markdown
from worldsim.sampling import SamplingConfig
from worldsim.saved_policy import load_ppo_policy, net_arch_of, read_policy_weights
from worldsim.world_model import WorldModel

OBSERVATIONS = {"latent": "MlpPolicy", "rgb": "CnnPolicy"}  # observation -> the SB3 policy that reads it
POLICIES = ("imagination", "real", "random", "scripted")
REAL_VECS = ("dummy", "subproc")  # how the real-env PPO run steps its envs: SB3's DummyVecEnv or SubprocVecEnv
LABELS = {
    "imagination": "PPO trained in imagination",
    "real": "PPO trained in the real env",
    "random": "random",
    "scripted": "scripted (reference ceiling)",
}


@dataclass
class PPOConfig:
    n_steps: int = 128  # steps per sub-env between updates (a rollout holds n_steps * n_envs transitions)
    batch_size: int = 256  # minibatch size of each gradient step
    n_epochs: int = 10  # passes over each rollout
    learning_rate: float = 3e-4  # Adam step size
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE's bias-variance trade-off
    clip_range: float = 0.2  # PPO's policy ratio clip
    ent_coef: float = 0.0  # entropy bonus
    net_arch: list[int] = field(default_factory=lambda: [64, 64])  # hidden layers of the policy and value MLPs

    def __post_init__(self) -> None:
        check_at_least(
            self,
            "ppo",
            n_steps=1,
            batch_size=1,
            n_epochs=1,
            net_arch=1,
            learning_rate=1e-12,
            clip_range=1e-6,
            ent_coef=0,
        )
        check_within(self, "ppo", gamma=(0, 1), gae_lambda=(0, 1))


@dataclass
class ImagineConfig:
    # exported model file of a Push world model (<run>/model.pt of `worldsim train`); required to train; rescore: the
    # run's own unless given
    checkpoint: Optional[str] = None
    timesteps: int = 20000  # env steps of each PPO run, the same budget in imagination and in the real env
    # wall-time limit of each PPO run (None: none); one cut short reports the steps it took
    max_seconds: Optional[float] = None
    n_envs: int = 16  # sub-envs: one batched model pass per step in imagination; real envs as real_vec says
    real_vec: str = "dummy"  # dummy: real envs stepped in turn in this process | subproc: one process each (many cores)
    eval_episodes: int = 32  # real-env episodes per policy, the same seeds for every policy
    eval_seed: int = 1000000  # reset seed of evaluation episode 0 (episode i: eval_seed + i), far from training seeds
    seed: int = 0  # seeds torch, numpy, PPO and the training envs
    observation: str = "latent"  # latent (the model's autoencoder latents, MlpPolicy) | rgb (frames, CnnPolicy)
    horizon: Optional[int] = None  # steps per episode, imagined and real; None: the real env's limit (128 for Push)
    # for every real env (training, contexts, scoring), over the checkpoint's: e.g. {start: behind}
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    # rolls the real context frames of each imagined episode; zero: it starts where a real one does
    context_policy: str = "zero"
    # how imagined frames are sampled (sampling.steps=1 ...); unset fields: the model file's default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # rows to run: imagination | real | random | scripted
    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    ppo: PPOConfig = field(default_factory=PPOConfig)  # PPO hyperparameters, shared by both training runs
    device: str = "cpu"  # torch device of the world model and of PPO
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    verbose: int = 0  # Stable-Baselines3 verbosity (1: PPO's table after every rollout on stdout, as in ppo_<name>.csv)
    # a saved ppo_<name>.zip whose weights both PPO runs start from (hyperparameters: ppo's)
    init_policy: Optional[str] = None
    # folder for imagine.json, imagine.md, the trained policies (ppo_<name>.zip) and their curves (.csv); pool:
    # pool.json, pool.md
    out: str = "imagine"
    # a finished run (its folder or imagine.json, ppo_<name>.zip beside it): play its policies again on eval_episodes
    # real episodes, its own first, into out; trains nothing
    rescore: Optional[str] = None
    # pool.imagination=[reports] pool.real=[reports] (files, run folders or globs): the imagination/real return ratio
    # over their seeds with a bootstrap and a t interval, into out; pool.draws, pool.seed: the bootstrap's; trains
    # nothing
    pool: PoolConfig = field(default_factory=PoolConfig)

    def __post_init__(self) -> None:
        check_at_least(
            self,
            timesteps=1,
            max_seconds=1e-9,
            n_envs=1,
            eval_episodes=2,
            horizon=1,
            threads=0,
            seed=0,
            eval_seed=0,
            verbose=0,
        )


#: What each mode reads from the command line; every other field keeps its default there.
MODE_FIELDS = {
    "rescore": ("rescore", "eval_episodes", "checkpoint", "device", "threads", "out"),
    "pool": ("pool", "out"),
}


def mode(cfg: ImagineConfig) -> str:
    """``train``, or ``rescore`` or ``pool``, which take only their fields (MODE_FIELDS)."""
    modes = [
        name
        for name, on in (("rescore", cfg.rescore is not None), ("pool", bool(cfg.pool.imagination or cfg.pool.real)))
        if on
    ]
    if len(modes) > 1:
        raise ValueError("rescore= and pool.* are two modes: run one at a time")
    if not modes:
        if cfg.checkpoint is None:
            raise ValueError(
                "checkpoint= is required to train: give a Push model file (<run>/model.pt of "
                "`worldsim train`), or rescore=<run> or pool.imagination=[...] pool.real=[...]"
            )
        return "train"
    name, default = modes[0], ImagineConfig()
    ignored = [
        f.name
        for f in fields(cfg)
        if f.name not in MODE_FIELDS[name] and getattr(cfg, f.name) != getattr(default, f.name)
    ]
    if ignored:
        raise ValueError(
            f"{name} takes only {list(MODE_FIELDS[name])}, but {ignored} were set: "
            + (
                "rescoring plays the policies as the run did, with its own settings"
                if name == "rescore"
                else "pooling reads finished reports"
            )
            + "; leave them out"
        )
    if name == "pool" and not (cfg.pool.imagination and cfg.pool.real):
        raise ValueError(
            f"pool.imagination={cfg.pool.imagination} and pool.real={cfg.pool.real}: pooling needs "
            "reports of both kinds"
        )
    return name


def _check(cfg: ImagineConfig) -> None:
    checks = [
        (cfg.observation in OBSERVATIONS, f"observation={cfg.observation!r}: use one of {list(OBSERVATIONS)}"),
        (
            set(cfg.policies) <= set(POLICIES) and bool(cfg.policies),
            f"policies={cfg.policies}: choose a non-empty subset of {list(POLICIES)}",
        ),
        (cfg.real_vec in REAL_VECS, f"real_vec={cfg.real_vec!r}: use one of {list(REAL_VECS)}"),
        (
            cfg.init_policy is None or Path(cfg.init_policy).is_file(),
            f"init_policy={cfg.init_policy!r} is no file: give a policy `worldsim imagine` saved (<out>/ppo_<name>.zip)",
        ),
        (
            cfg.ppo.n_steps * cfg.n_envs > 1,
            f"ppo.n_steps * n_envs = {cfg.ppo.n_steps * cfg.n_envs}: PPO's advantage normalisation needs 2 or more",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)


# -- the real world, seen as the policy sees it -------------------------------------------------------


class ModelObservation(gymnasium.ObservationWrapper):
    """A real env's RGB frames as the world model's env observes them: ``"latent"`` or ``"rgb"``.

    ``"latent"``: ``WorldModel.encode`` of the frame, ``Box(-inf, inf, (C, h, w), float32)``, the
    observation of ``worldsim/WorldModel-v0`` with ``observation="latent"``, so a policy trained in
    imagination reads real frames exactly as it read imagined ones. ``"rgb"``: the frame at the
    model's frame size. Frames of another size are resized with INTER_AREA, as datasets record them.
    """

    def __init__(self, env: gymnasium.Env, model: WorldModel, observation: str = "latent") -> None:
        super().__init__(env)
        space = env.observation_space
        if not (
            isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3 and space.shape[-1] == 3
        ):
            raise ValueError(
                f"{env.spec.id if env.spec else env} observes {space}; ModelObservation reads "
                "RGB frames: Box(0, 255, (H, W, 3), uint8)"
            )
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation={observation!r}: use one of {list(OBSERVATIONS)}")
        self.model, self.mode = model, observation
        self.observation_space = model_observation_space(model, observation)

    def observation(self, frame: np.ndarray) -> np.ndarray:
        return model_observation(self.model, frame, self.mode)


def model_observation_space(model: WorldModel, observation: str) -> spaces.Box:
    """What ``model_observation`` gives: ``Box`` of the latent (C, h, w) float32, or of the frame at the model's size."""
    height, width, _ = model.frame_shape
    return (
        spaces.Box(-np.inf, np.inf, model.latent_shape, np.float32)
        if observation == "latent"
        else spaces.Box(0, 255, (height, width, 3), np.uint8)
    )


def model_observation(model: WorldModel, frame: np.ndarray, observation: str) -> np.ndarray:
    """One RGB frame as ``ModelObservation`` gives it: its latent (C, h, w) float32, or the frame at the model's size."""
    height, width, _ = model.frame_shape
    if frame.shape[:2] != (height, width):
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    if observation == "rgb":
        return frame
    return model.encode(frame).cpu().numpy()


def real_horizon(model: WorldModel, horizon: Optional[int]) -> int:
    """``horizon``, or the real env's registered episode limit."""
    if horizon is not None:
        return int(horizon)
    limit = gymnasium.spec(model.real_env_id()).max_episode_steps
    if limit is None:
        raise ValueError(f"{model.real_env_id()} registers no episode limit: set horizon=<steps per episode>")
    return int(limit)


def sampling_words(model: WorldModel, cfg: ImagineConfig) -> str:
    """How imagined frames are sampled, in words: the model file's default with what cfg overrides."""
    s = model.sampling_for(cfg.sampling)
    start = f"a warm start at tau {s.warm_start:g}" if s.warm_start > 0 else "noise"
    return f"{s.steps} {s.sampler} step{'s' if s.steps > 1 else ''} per frame from {start}"


def make_real_env(model: WorldModel, horizon: int, env_kwargs: Optional[dict[str, Any]] = None) -> gymnasium.Env:
    """The world the model learned (its env id and kwargs, updated by ``env_kwargs``), truncated after ``horizon``."""
    env_id = model.real_env_id("imagine needs the real world to train and score in")
    return gymnasium.make(env_id, max_episode_steps=horizon, **{**model.env_kwargs, **(env_kwargs or {})})


# -- training -------------------------------------------------------------------------------------------


@dataclass
class TrainStats:
    timesteps: int  # env steps PPO took (a whole number of rollouts: at least the budget)
    wall_s: float  # the whole .learn(), gradient steps included
    env_s: float  # time inside the env's reset and step
    episodes: int  # episodes started (each imagined one begins with real context frames)
    real_frames: int  # real-env frames the run consumed (imagination: only its contexts)
    train_return: Optional[float]  # mean return of the last (up to) 100 training episodes, in the env trained in


def imagination_venv(cfg: ImagineConfig, horizon: int) -> Any:
    """The batched world-model env of ``cfg.checkpoint`` as an SB3 VecEnv."""
    from worldsim.rl import GymnasiumVecEnv

    envs = gymnasium.make_vec(
        WORLD_MODEL_ID,
        num_envs=cfg.n_envs,
        vectorization_mode="vector_entry_point",
        checkpoint=cfg.checkpoint,
        observation=cfg.observation,
        horizon=horizon,
        context="env",
        context_policy=cfg.context_policy,
        sampling=cfg.sampling,
        device=cfg.device,
        env_kwargs=dict(cfg.env_kwargs),
    )
    return GymnasiumVecEnv(envs)


def real_venv(cfg: ImagineConfig, model: WorldModel, horizon: int) -> Any:
    """``n_envs`` real envs observed through ``ModelObservation``.

    ``real_vec="dummy"`` steps them one by one in SB3's DummyVecEnv, sharing ``model``;
    ``"subproc"`` runs each in its own process (SB3's SubprocVecEnv) with its own CPU copy of the
    model, loaded from ``cfg.checkpoint`` with one torch thread, for machines with many cores.
    """
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if cfg.real_vec == "dummy":

        def make() -> gymnasium.Env:
            return ModelObservation(make_real_env(model, horizon, cfg.env_kwargs), model, cfg.observation)

        return DummyVecEnv([make] * cfg.n_envs)
    checkpoint, env_kwargs, observation = cfg.checkpoint, dict(cfg.env_kwargs), cfg.observation

    def make_in_process() -> gymnasium.Env:
        torch.set_num_threads(1)
        own = WorldModel.from_checkpoint(checkpoint, "cpu")
        return ModelObservation(make_real_env(own, horizon, env_kwargs), own, observation)

    return SubprocVecEnv([make_in_process] * cfg.n_envs)


def train_ppo(cfg: ImagineConfig, venv: Any, context_frames: int, log: Optional[Path] = None) -> tuple[Any, TrainStats]:
    """PPO from Stable-Baselines3 trained for ``cfg.timesteps`` on ``venv``, as shipped.

    PPO's table after every rollout (returns, losses, frames/s) goes to the CSV file ``log`` and,
    with ``cfg.verbose``, to stdout; SB3's default logger would leave an empty ``SB3-<time>``
    folder in the temp directory instead.
    """
    from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger
    from stable_baselines3.common.vec_env import VecMonitor

    from worldsim.rl import StepClock

    clock = StepClock(venv)
    agent = make_agent(cfg, VecMonitor(clock))
    logger = Logger(
        folder=None,
        output_formats=[
            *([CSVOutputFormat(str(log))] if log else []),
            *([HumanOutputFormat(sys.stdout)] if cfg.verbose else []),
        ],
    )
    agent.set_logger(logger)
    start = time.perf_counter()
    try:
        agent.learn(cfg.timesteps, callback=None if cfg.max_seconds is None else _deadline(start + cfg.max_seconds))
    finally:
        logger.close()
    wall = time.perf_counter() - start
    real_frames = clock.episodes * context_frames if context_frames else agent.num_timesteps + clock.episodes
    returns = [episode["r"] for episode in agent.ep_info_buffer]  # VecMonitor's, what PPO's logs call ep_rew_mean
    venv.close()
    return agent, TrainStats(
        int(agent.num_timesteps),
        wall,
        clock.seconds,
        clock.episodes,
        int(real_frames),
        float(np.mean(returns)) if returns else None,
    )


def make_agent(cfg: ImagineConfig, venv: Any) -> Any:
    """SB3's PPO with ``cfg.ppo``'s hyperparameters on ``venv``; with ``cfg.init_policy``, that policy's weights."""
    from stable_baselines3 import PPO

    p = cfg.ppo
    agent = PPO(
        OBSERVATIONS[cfg.observation],
        venv,
        n_steps=p.n_steps,
        batch_size=p.batch_size,
        n_epochs=p.n_epochs,
        learning_rate=p.learning_rate,
        gamma=p.gamma,
        gae_lambda=p.gae_lambda,
        clip_range=p.clip_range,
        ent_coef=p.ent_coef,
        policy_kwargs={"net_arch": list(p.net_arch)},
        seed=cfg.seed,
        device=cfg.device,
        verbose=cfg.verbose,
    )
    if cfg.init_policy is not None:
        state = read_policy_weights(cfg.init_policy, cfg.device)
        layers = net_arch_of(state)
        if layers != {"pi": list(p.net_arch), "vf": list(p.net_arch)}:
            raise ValueError(
                f"init_policy={cfg.init_policy!r} has another network than ppo.net_arch={list(p.net_arch)} "
                f"(its layers: {layers}): set ppo.net_arch to the one it was trained with"
            )
        try:
            agent.policy.load_state_dict(state)
        except RuntimeError:
            raise ValueError(
                f"init_policy={cfg.init_policy!r} does not observe {agent.observation_space} and act in "
                f"{agent.action_space} as this run does: start from a policy trained with the same "
                "checkpoint's autoencoder and observation"
            ) from None
    return agent


def _deadline(end: float) -> Any:
    """An SB3 callback that stops learning once ``time.perf_counter()`` passes ``end``."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Deadline(BaseCallback):
        def _on_step(self) -> bool:
            return time.perf_counter() < end

    return Deadline()


# -- evaluation in the real env ---------------------------------------------------------------------


class PPOPolicy:
    """A trained SB3 agent as a worldsim policy (``reset(seed)``, ``(observation, info) -> action``).

    Plays the policy's mean action (``deterministic=True``), as evaluations of PPO usually do.
    """

    def __init__(self, agent: Any) -> None:
        self.agent = agent

    def reset(self, seed: int) -> None:
        pass

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        return self.agent.predict(observation, deterministic=True)[0]


class SavedPPOPolicy:
    """A PPO policy ``worldsim imagine`` saved (``ppo_<name>.zip``), driving a real env from its frames.

    For recording real episodes of a trained agent, to fine-tune the world model on the states that
    agent visits (a Dyna-style loop): ``worldsim collect policy=worldsim.imagine:SavedPPOPolicy
    +policy_kwargs.path=<out>/ppo_imagination.zip +policy_kwargs.checkpoint=<model.pt>``. Each RGB
    frame is observed as in training (``model_observation`` with ``checkpoint``'s autoencoder); the
    policy plays its mean action, and with probability ``random_prob`` a step takes a uniform random
    action instead, drawn from a generator reseeded every episode, so recordings are reproducible.
    """

    def __init__(
        self,
        action_space: gymnasium.Space,
        path: str,
        checkpoint: str,
        observation: str = "latent",
        random_prob: float = 0.0,
        device: str = "cpu",
    ) -> None:
        if observation not in OBSERVATIONS:
            raise ValueError(f"observation={observation!r}: use one of {list(OBSERVATIONS)}")
        if not 0.0 <= random_prob <= 1.0:
            raise ValueError(f"random_prob={random_prob}: give a probability in [0, 1]")
        self.model = WorldModel.from_checkpoint(checkpoint, device)
        self.agent = load_ppo_policy(path, model_observation_space(self.model, observation), action_space, device)
        self.action_space, self.observation, self.random_prob = action_space, observation, random_prob
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.action_space.seed(seed)

    def __call__(self, frame: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        if self.random_prob > 0 and self.rng.random() < self.random_prob:
            return self.action_space.sample()
        return self.agent.predict(model_observation(self.model, frame, self.observation), deterministic=True)[0]


@dataclass
class Episode:
    seed: int
    ret: float  # sum of real rewards
    length: int
    success: Optional[bool]  # target on the goal at the end (None: the world reports no goal distance)


def play(env: gymnasium.Env, policy: Any, seed: int) -> Episode:
    """One real-env episode from ``reset(seed=seed)`` until it terminates or truncates."""
    from worldsim.envs.push import GOAL_RADIUS

    policy.reset(seed)
    observation, info = env.reset(seed=seed)
    total, length, done = 0.0, 0, False
    while not done:
        observation, reward, terminated, truncated, info = env.step(policy(observation, info))
        total, length, done = total + float(reward), length + 1, terminated or truncated
    distance = info.get("state", {}).get("target_goal_distance")
    return Episode(seed, total, length, None if distance is None else bool(distance < GOAL_RADIUS))


def evaluate(make_env: Callable[[], gymnasium.Env], policy: Any, seeds: list[int]) -> list[Episode]:
    env = make_env()
    try:
        return [play(env, policy, seed) for seed in seeds]
    finally:
        env.close()


def evaluate_agent(
    agent: Any, model: WorldModel, horizon: int, env_kwargs: dict[str, Any], observation: str, seeds: list[int]
) -> list[Episode]:
    """A trained SB3 agent's episodes in the real env, which it sees through ``model`` as it did in training."""
    return evaluate(
        lambda: ModelObservation(make_real_env(model, horizon, env_kwargs), model, observation), PPOPolicy(agent), seeds
    )


def summarize(name: str, episodes: list[Episode], stats: Optional[TrainStats]) -> dict[str, Any]:
    returns = np.array([e.ret for e in episodes], np.float64)
    successes = [e.success for e in episodes if e.success is not None]
    row: dict[str, Any] = {
        "policy": name,
        "label": LABELS[name],
        "n": len(episodes),
        "return_mean": float(returns.mean()),
        "return_ci95": float(Z95 * returns.std(ddof=1) / math.sqrt(len(returns))),
        "success_rate": float(np.mean(successes)) if successes else None,
        "mean_length": float(np.mean([e.length for e in episodes])),
        "returns": [round(float(r), 4) for r in returns],
    }
    if stats is not None:
        row["train"] = {
            **asdict(stats),
            "frames_per_s": stats.timesteps / stats.wall_s,
            "env_frames_per_s": stats.timesteps / max(stats.env_s, 1e-9),
        }
    return row


def return_ratios(rows: dict[str, dict[str, Any]]) -> dict[str, Optional[float]]:
    """Imagination-trained over real-trained return, raw and above random (None when undefined)."""
    if "imagination" not in rows or "real" not in rows:
        return {}
    imagined, real = rows["imagination"]["return_mean"], rows["real"]["return_mean"]
    ratios: dict[str, Optional[float]] = {"imagination_over_real": imagined / real if real > 0 else None}
    if "random" in rows:
        floor = rows["random"]["return_mean"]
        ratios["imagination_over_real_above_random"] = (imagined - floor) / (real - floor) if real > floor else None
    return ratios


# -- report -----------------------------------------------------------------------------------------------


def markdown(rows: list[dict[str, Any]], ratios: dict[str, Optional[float]], facts: dict[str, Any]) -> str:
    lines = [
        "| policy | real-env return (mean ± 95% CI) | success | n | return in its training env (last 100 episodes) "
        "| PPO steps | training wall time (s) | env frames/s in training (env only / overall) | real frames used in training |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        success = "n/a" if row["success_rate"] is None else f"{row['success_rate']:.0%}"
        train = row.get("train")
        wall = f"{train['wall_s']:.0f}" if train else "-"
        speed = f"{train['env_frames_per_s']:.0f} / {train['frames_per_s']:.0f}" if train else "-"
        real = f"{train['real_frames']:,}" if train else "-"
        trained_in = "-" if not train or train["train_return"] is None else f"{train['train_return']:.2f}"
        steps = f"{train['timesteps']:,}" if train else "-"
        lines.append(
            f"| {row['label']} | {row['return_mean']:.2f} ± {row['return_ci95']:.2f} | {success} "
            f"| {row['n']} | {trained_in} | {steps} | {wall} | {speed} | {real} |"
        )
    ratio_lines = (
        ("imagination_over_real", "return of imagination-trained / real-trained PPO (goal: >= 0.80)", "0"),
        ("imagination_over_real_above_random", "the same, both minus the random policy's return", "random's"),
    )
    for key, text, floor in ratio_lines:
        if key in ratios:
            value = ratios[key]
            lines.append(
                f"\n{text}: "
                + (f"undefined (the real-trained return is not above {floor})" if value is None else f"{value:.2f}")
            )
    lines.append(
        f"\n{facts['checkpoint']}; {facts['observation']} observations; a budget of {facts['timesteps']} PPO "
        f"steps per training run on {facts['n_envs']} sub-envs; imagined episodes start from {facts['context_frames']} "
        f"real frames rolled by the {facts['context_policy']} policy, {facts['sampling']}; "
        f"horizon {facts['horizon']}; real env kwargs {facts['env_kwargs']}; evaluation seeds {facts['eval_seeds'][0]}..{facts['eval_seeds'][-1]}; "
        f"{facts['machine']}."
    )
    return "\n".join(lines) + "\n"


def imagine(cfg: ImagineConfig) -> dict[str, Any]:
    """Train and score (or, with rescore= or pool.*, re-score or pool); returns the report it wrote."""
    chosen = mode(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    if chosen == "pool":
        result = pool(cfg.pool)
        table = pool_markdown(result)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pool.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "pool.md").write_text(table)
        print(table, end="", flush=True)
        return result
    report = rescore(cfg) if chosen == "rescore" else train_and_score(cfg)
    table = markdown(report["rows"], report["ratios"], report["facts"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "imagine.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "imagine.md").write_text(table)
    print(table, flush=True)
    return report


def train_and_score(cfg: ImagineConfig) -> dict[str, Any]:
    """PPO trained in imagination and in the real env, then every policy in ``cfg.policies`` scored."""
    _check(cfg)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model = WorldModel.from_checkpoint(cfg.checkpoint, cfg.device)  # the encoder the real envs are seen through
    horizon = real_horizon(model, cfg.horizon)
    seeds = [cfg.eval_seed + i for i in range(cfg.eval_episodes)]
    context_frames = model.window(model.sampling_for(cfg.sampling))  # each imagined episode's real frames
    rows: dict[str, dict[str, Any]] = {}

    for name in ("imagination", "real"):
        if name not in cfg.policies:
            continue
        print(
            f"imagine: training PPO {'in imagination' if name == 'imagination' else 'in the real env'} "
            f"({cfg.timesteps} steps, {cfg.n_envs} sub-envs)",
            flush=True,
        )
        venv = imagination_venv(cfg, horizon) if name == "imagination" else real_venv(cfg, model, horizon)
        agent, stats = train_ppo(cfg, venv, context_frames if name == "imagination" else 0, log=out / f"ppo_{name}.csv")
        agent.save(out / f"ppo_{name}.zip")
        print(f"imagine: {name}: {stats.timesteps} steps in {stats.wall_s:.0f} s; evaluating", flush=True)
        rows[name] = summarize(
            name, evaluate_agent(agent, model, horizon, cfg.env_kwargs, cfg.observation, seeds), stats
        )
    from worldsim.data.policies import make_policy

    for name in ("random", "scripted"):
        if name in cfg.policies:
            env = make_real_env(model, horizon, cfg.env_kwargs)
            rows[name] = summarize(name, evaluate(lambda: env, make_policy(name, env), seeds), None)
    ordered = [rows[name] for name in POLICIES if name in rows]
    ratios = return_ratios(rows)
    facts = {
        "checkpoint": cfg.checkpoint,
        "observation": cfg.observation,
        "timesteps": cfg.timesteps,
        "n_envs": cfg.n_envs,
        "horizon": horizon,
        "eval_seeds": seeds,
        "context_frames": context_frames,
        "context_policy": cfg.context_policy,
        "sampling": sampling_words(model, cfg),
        "env_kwargs": dict(cfg.env_kwargs),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"{torch.get_num_threads()} torch threads, device {cfg.device}",
    }
    return {"config": asdict(cfg), "env_id": model.env_id, "rows": ordered, "ratios": ratios, "facts": facts}


def rescore(cfg: ImagineConfig) -> dict[str, Any]:
    """The report of run ``cfg.rescore`` with its trained policies played again on ``cfg.eval_episodes``.

    Each saved ``ppo_<name>.zip`` plays exactly as the run evaluated it (its horizon, env kwargs,
    observation and evaluation seeds from the run's report), on the run's episodes first: their
    returns must come out as the run reported them, or the model seen through is not the run's. The
    rows keep the run's training figures, so the report reads like a run's.
    """

    path = Path(cfg.rescore)
    path = path / "imagine.json" if path.is_dir() else path
    if not path.is_file():
        raise ValueError(
            f"rescore={cfg.rescore!r}: no imagine.json there; give a finished `worldsim imagine` run's "
            "folder or its imagine.json"
        )
    if Path(cfg.out).resolve() == path.parent.resolve():
        raise ValueError(
            f"out={cfg.out!r} is the run's own folder: write the re-scored report elsewhere, so the run's stays"
        )
    report = json.loads(path.read_text())
    run, facts = report["config"], report["facts"]
    played = len(facts["eval_seeds"])
    if cfg.eval_episodes < played:
        raise ValueError(
            f"eval_episodes={cfg.eval_episodes} is fewer than the {played} the run played: re-scoring "
            "replays those first"
        )
    checkpoint = cfg.checkpoint or run["checkpoint"]
    if not Path(checkpoint).is_file():
        raise ValueError(
            f"{checkpoint} (the model the run saw the real env through) is no file: pass checkpoint=<its "
            "model file>, or one with the same autoencoder"
        )
    model = WorldModel.from_checkpoint(checkpoint, cfg.device)
    seeds = [run["eval_seed"] + i for i in range(cfg.eval_episodes)]
    rows = []
    for row in report["rows"]:
        if "train" not in row:
            continue
        policy = path.parent / f"ppo_{row['policy']}.zip"
        if not policy.is_file():
            raise ValueError(f"{policy} is missing: re-scoring needs the policies the run saved beside its report")
        print(f"imagine: re-scoring {policy} on {len(seeds)} real episodes", flush=True)
        agent = load_ppo_policy(
            policy, model_observation_space(model, run["observation"]), model.action_space, cfg.device
        )
        scored = summarize(
            row["policy"],
            evaluate_agent(agent, model, facts["horizon"], run["env_kwargs"], run["observation"], seeds),
            None,
        )
        again = np.asarray(scored["returns"][:played])
        if not np.allclose(again, row["returns"], atol=2e-4):  # the reports round returns to 4 decimals
            raise ValueError(
                f"{policy} earns other returns on the run's own episodes than the run reported (largest "
                f"gap {np.abs(again - row['returns']).max():.4f}): is {checkpoint} the model it used?"
            )
        rows.append({**scored, "train": row["train"]})
    if not rows:
        raise ValueError(
            f"{path} has no trained policy to re-score (its rows: {[r['policy'] for r in report['rows']]})"
        )
    return {
        **report,
        "config": {**run, "eval_episodes": cfg.eval_episodes},
        "rows": rows,
        "ratios": return_ratios({row["policy"]: row for row in rows}),
        "facts": {**facts, "eval_seeds": seeds, "rescored_from": str(path), "rescored_with": checkpoint},
    }
