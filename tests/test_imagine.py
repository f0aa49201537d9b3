"""Agents in imagination: SB3's PPO unmodified on worldsim/WorldModel-v0 (single and batched through
``worldsim.rl.GymnasiumVecEnv``), the adapter's autoreset against SB3's own DummyVecEnv and a hand-stepped
world-model env, the real env seen through the model's encoder, and `worldsim imagine`'s report."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import gymnasium
import numpy as np
import pytest
import torch

pytest.importorskip("stable_baselines3")

from gymnasium.vector import AutoresetMode, SyncVectorEnv  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_checker import check_env  # noqa: E402
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor  # noqa: E402
from test_world_model import WINDOW, build_model_file, one_thread  # noqa: E402, F401  (fixture)

import worldsim  # noqa: E402, F401  (registers the ids)
from worldsim.data.collect import CollectConfig, collect  # noqa: E402
from worldsim.data.dataset import EpisodeDataset  # noqa: E402
from worldsim.envs import WORLD_MODEL_ID  # noqa: E402
from worldsim.imagine import (  # noqa: E402
    LABELS,
    REAL_VECS,
    ImagineConfig,
    ModelObservation,
    PPOConfig,
    imagine,
    make_agent,
    make_real_env,
    real_venv,
    train_ppo,
)
from worldsim.rl import GymnasiumVecEnv  # noqa: E402
from worldsim.world_model import WorldModel  # noqa: E402

HORIZON = 3  # short imagined episodes, so truncations happen within a few steps
TINY_PPO = dict(n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")


@pytest.fixture(scope="module")
def push(tmp_path_factory: pytest.TempPathFactory, one_thread) -> Path:
    """A tiny random-weight model file of worldsim/Push-v0."""
    root = tmp_path_factory.mktemp("world") / "push"
    collect(
        CollectConfig(env="worldsim/Push-v0", episodes=2, max_steps=8, policy="scripted", progress=False, out=str(root))
    )
    return build_model_file(root, root.parent / "model.pt")


def make_vec(push: Path, num_envs: int, **kwargs) -> gymnasium.vector.VectorEnv:
    return gymnasium.make_vec(
        WORLD_MODEL_ID,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        checkpoint=str(push),
        observation="latent",
        horizon=HORIZON,
        device="cpu",
        **kwargs,
    )


def fewer_terminations(envs: gymnasium.vector.VectorEnv, logit: float = 0.25) -> gymnasium.vector.VectorEnv:
    """The random termination head ends ~every other step; lowered, episodes also reach the horizon."""
    with torch.no_grad():
        envs.unwrapped.model.dit.heads.termination[-1].bias.sub_(logit)
    return envs


def parameters(agent: PPO) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in agent.policy.parameters()])


@pytest.mark.slow
def test_ppo_runs_unmodified_on_the_single_model_env(push: Path) -> None:
    def make() -> gymnasium.Env:
        return gymnasium.make(WORLD_MODEL_ID, checkpoint=str(push), observation="latent", horizon=HORIZON, device="cpu")

    env = make()
    check_env(env.unwrapped, warn=False)  # SB3's own checks, beside Gymnasium's in test_world_model_env
    env.close()
    venv = VecMonitor(DummyVecEnv([make]))
    agent = PPO("MlpPolicy", venv, **TINY_PPO)
    before = parameters(agent)
    agent.learn(64)
    assert agent.num_timesteps == 64
    assert not torch.equal(parameters(agent), before)  # two rollouts, two updates
    lengths = [episode["l"] for episode in agent.ep_info_buffer]
    assert lengths and all(1 <= length <= HORIZON for length in lengths)
    venv.close()


@pytest.mark.slow
def test_ppo_runs_on_the_vector_env_with_one_batched_step_for_all_sub_envs(push: Path) -> None:
    envs = make_vec(push, 4)
    batch = envs.unwrapped.batch
    calls: list[int] = []
    step = batch.step

    def counted(actions, decode=True):
        calls.append(len(actions))
        return step(actions, decode=decode)

    batch.step = counted
    agent = PPO("MlpPolicy", VecMonitor(GymnasiumVecEnv(envs)), **TINY_PPO)
    before = parameters(agent)
    agent.learn(256)
    assert agent.num_timesteps == 256 and not torch.equal(parameters(agent), before)
    assert calls == [4] * (256 // 4)  # one model pass per vector step, every sub-env in it; no wasted reset steps
    assert all(1 <= episode["l"] <= HORIZON for episode in agent.ep_info_buffer)
    envs.close()


@pytest.mark.parametrize("mode", list(AutoresetMode))
def test_adapter_equals_sb3_dummy_vec_env_in_every_autoreset_mode(mode: AutoresetMode) -> None:
    def make() -> gymnasium.Env:
        return gymnasium.make("CartPole-v1", max_episode_steps=15)  # both terminations and truncations

    ours, reference = GymnasiumVecEnv(SyncVectorEnv([make] * 3, autoreset_mode=mode)), DummyVecEnv([make] * 3)
    ours.seed(5), reference.seed(5)
    assert np.array_equal(ours.reset(), reference.reset())
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    for _ in range(120):
        actions = rng.integers(0, 2, 3)
        obs, rewards, dones, infos = ours.step(actions)
        ref_obs, ref_rewards, ref_dones, ref_infos = reference.step(actions)
        assert np.array_equal(obs, ref_obs) and np.array_equal(rewards, ref_rewards)
        assert np.array_equal(dones, ref_dones) and rewards.dtype == ref_rewards.dtype
        for info, ref_info in zip(infos, ref_infos):
            assert info.keys() == ref_info.keys()
            assert info["TimeLimit.truncated"] == ref_info["TimeLimit.truncated"]
            if "terminal_observation" in info:
                assert np.array_equal(info["terminal_observation"], ref_info["terminal_observation"])
                ends["truncated" if info["TimeLimit.truncated"] else "terminated"] += 1
    assert ends["terminated"] > 0 and ends["truncated"] > 0


def test_adapter_autoreset_on_the_model_env_matches_stepping_it_by_hand(push: Path) -> None:
    """SB3's convention over NEXT_STEP: done rows restart in the same step, their last frame in the info."""
    adapter, by_hand = GymnasiumVecEnv(fewer_terminations(make_vec(push, 3))), fewer_terminations(make_vec(push, 3))
    adapter.seed(11)
    first = adapter.reset()
    assert np.array_equal(first, by_hand.reset(seed=11)[0])
    rng = np.random.default_rng(0)
    elapsed, ends = np.zeros(3, int), {"terminated": 0, "truncated": 0}
    for _ in range(8):
        actions = rng.uniform(-1, 1, (3, 2)).astype(np.float32)
        obs, rewards, dones, infos = adapter.step(actions)
        expected, expected_rewards, terminated, truncated, _ = by_hand.step(actions)
        elapsed += 1
        assert np.array_equal(truncated, elapsed >= HORIZON)  # the reference really is stepped by hand
        assert np.array_equal(dones, terminated | truncated)
        assert np.allclose(rewards, expected_rewards) and rewards.dtype == np.float32
        for i in range(3):
            assert infos[i]["TimeLimit.truncated"] == bool(truncated[i] and not terminated[i])
            assert ("terminal_observation" in infos[i]) == dones[i]
        if dones.any():
            restarted, _ = by_hand.reset(options={"reset_mask": dones.copy()})
            for i in np.flatnonzero(dones):
                assert np.array_equal(infos[i]["terminal_observation"], expected[i])
                assert not np.array_equal(obs[i], expected[i])  # a new episode's first frame, not the last one
            expected = np.where(dones[:, None, None, None], restarted, expected)
            elapsed[dones] = 0
            ends["terminated"] += int(terminated.sum())
            ends["truncated"] += int((truncated & ~terminated).sum())
        assert np.array_equal(obs, expected)
    assert ends["terminated"] > 0 and ends["truncated"] > 0, ends
    adapter.close(), by_hand.close()


def test_real_env_is_observed_as_the_model_encodes_it(push: Path) -> None:
    model = WorldModel.from_checkpoint(push, device="cpu")
    raw, seen = make_real_env(model, 8), ModelObservation(make_real_env(model, 8), model, "latent")
    imagined = gymnasium.make(WORLD_MODEL_ID, checkpoint=model, observation="latent", device="cpu")
    assert seen.observation_space == imagined.observation_space  # the policy's input space in both worlds
    frame, _ = raw.reset(seed=3)
    obs, _ = seen.reset(seed=3)
    for t in range(3):
        assert obs.dtype == np.float32 and seen.observation_space.contains(obs)
        assert np.array_equal(obs, model.encode(frame).numpy())
        action = np.full(2, 0.5 * (-1) ** t, np.float32)
        frame, *_ = raw.step(action)
        obs, *_ = seen.step(action)
    larger = ModelObservation(gymnasium.make("worldsim/Push-v0", width=96, height=96), model, "latent")
    big, _ = larger.unwrapped.reset(seed=3)
    resized = cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.array_equal(larger.observation(big), model.encode(resized).numpy())
    rgb = ModelObservation(gymnasium.make("worldsim/Push-v0", width=96, height=96), model, "rgb")
    assert np.array_equal(rgb.observation(big), resized) and rgb.observation_space.shape == (64, 64, 3)
    for env in (raw, seen, imagined, larger, rgb):
        env.close()


def test_collect_records_a_saved_ppo_policy_in_the_real_env(push: Path, tmp_path: Path) -> None:
    """``worldsim collect policy=worldsim.imagine:SavedPPOPolicy``: the actions are the policy's, for the frames recorded."""
    model = WorldModel.from_checkpoint(push, device="cpu")
    agent = PPO("MlpPolicy", DummyVecEnv([lambda: ModelObservation(make_real_env(model, 6), model)]), **TINY_PPO)
    agent.save(tmp_path / "ppo.zip")  # untrained: its mean action still depends on the frame

    def record(out: str, **extra) -> EpisodeDataset:
        kwargs = {"path": str(tmp_path / "ppo.zip"), "checkpoint": str(push), **extra}
        collect(
            CollectConfig(
                env="worldsim/Push-v0",
                episodes=2,
                max_steps=6,
                progress=False,
                out=str(tmp_path / out),
                policy="worldsim.imagine:SavedPPOPolicy",
                policy_kwargs=kwargs,
            )
        )
        return EpisodeDataset(tmp_path / out)

    episode = record("greedy").episode(1)
    expected = np.stack(
        [agent.predict(model.encode(frame).numpy(), deterministic=True)[0] for frame in episode.frames[:-1]]
    )
    np.testing.assert_allclose(episode.actions, expected, atol=1e-5)
    assert np.ptp(episode.actions, axis=0).min() > 0
    noisy, again = record("noisy", random_prob=1.0), record("again", random_prob=1.0)
    assert np.array_equal(noisy.episode(1).actions, again.episode(1).actions)  # reseeded per episode
    assert np.abs(noisy.episode(1).actions).max() > np.abs(expected).max() + 0.1
    with pytest.raises(ValueError, match="pass the model, observation and env the policy was trained with"):
        record("rgb", observation="rgb")
    with pytest.raises(ValueError, match=r"policy_kwargs \['path'\] given to policy 'random'"):
        collect(
            CollectConfig(
                env="worldsim/Push-v0",
                episodes=1,
                policy="random",
                policy_kwargs={"path": "x"},
                out=str(tmp_path / "bad"),
            )
        )
    assert not (tmp_path / "rgb").exists() and not (tmp_path / "bad").exists()


def test_env_kwargs_configure_the_imagined_contexts_and_the_real_env_alike(push: Path) -> None:
    """An imagined episode with the zero context policy starts on the frame a real reset shows."""
    model = WorldModel.from_checkpoint(push, device="cpu")
    starts = {}
    for start in ("random", "behind"):
        envs = make_vec(push, 1, context_frames=1, context_policy="zero", env_kwargs={"start": start})
        envs.reset(seed=5)
        frames, *_ = envs.unwrapped.source.draw(np.random.default_rng(0), {})
        real = make_real_env(model, 8, {"start": start})
        frame, info = real.reset(seed=int(np.random.default_rng(0).integers(2**31 - 1)))  # the seed draw() used
        assert np.array_equal(frames[0], frame) and real.unwrapped.start == start
        starts[start] = frame
        envs.close(), real.close()
    assert not np.array_equal(starts["random"], starts["behind"])


def test_max_seconds_cuts_a_ppo_run_short_and_reports_the_steps_it_took(push: Path) -> None:
    cfg = ImagineConfig(
        checkpoint=str(push),
        timesteps=100_000,
        n_envs=2,
        max_seconds=1e-3,
        ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=1),
    )
    model = WorldModel.from_checkpoint(push, device="cpu")
    agent, stats = train_ppo(cfg, real_venv(cfg, model, 4), context_frames=0)
    assert stats.timesteps == agent.num_timesteps == 2  # the first vector step passed the deadline


def test_init_policy_starts_ppo_from_a_saved_policy(push: Path, tmp_path: Path) -> None:
    cfg = ImagineConfig(
        checkpoint=str(push), timesteps=32, n_envs=2, ppo=PPOConfig(n_steps=16, batch_size=16, n_epochs=1)
    )
    model = WorldModel.from_checkpoint(push, device="cpu")
    trained, _ = train_ppo(cfg, real_venv(cfg, model, 4), context_frames=0)
    trained.save(tmp_path / "ppo.zip")
    fresh = make_agent(dataclasses.replace(cfg, seed=1), real_venv(cfg, model, 4))
    resumed = make_agent(
        dataclasses.replace(cfg, seed=1, init_policy=str(tmp_path / "ppo.zip")), real_venv(cfg, model, 4)
    )
    assert torch.equal(parameters(resumed), parameters(trained))
    assert not torch.equal(parameters(fresh), parameters(trained))
    wider = dataclasses.replace(cfg, init_policy=str(tmp_path / "ppo.zip"), ppo=PPOConfig(net_arch=[32]))
    with pytest.raises(ValueError, match=r"another network than ppo.net_arch=\[32\]"):
        make_agent(wider, real_venv(cfg, model, 4))
    with pytest.raises(ValueError, match="init_policy='nowhere.zip' is no file"):
        imagine(dataclasses.replace(cfg, init_policy="nowhere.zip", out=str(tmp_path / "none")))
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_real_envs_in_subprocesses_observe_what_the_in_process_ones_do(push: Path) -> None:
    model = WorldModel.from_checkpoint(push, device="cpu")
    seen = {}
    for kind in REAL_VECS:
        venv = real_venv(ImagineConfig(checkpoint=str(push), n_envs=2, real_vec=kind), model, horizon=4)
        venv.seed(7)
        first = venv.reset()
        after, rewards, *_ = venv.step(np.array([[0.5, -0.5], [-1.0, 1.0]], np.float32))
        seen[kind] = (first, after, rewards)
        venv.close()
    for dummy, subproc in zip(seen["dummy"], seen["subproc"]):
        assert dummy.shape == subproc.shape and np.allclose(dummy, subproc, atol=1e-5)
    assert not np.allclose(seen["dummy"][0][0], seen["dummy"][0][1])  # two sub-envs, two scenes


def test_rl_module_without_sb3_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name.split(".")[0] == "stable_baselines3"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "worldsim.rl")
    with pytest.raises(ImportError, match=r'pip install -e "\.\[rl\]"'):
        importlib.import_module("worldsim.rl")


@pytest.mark.slow
def test_worldsim_imagine_writes_the_table(push: Path, tmp_path: Path) -> None:
    out, temp = tmp_path / "imagine", tmp_path / "temp"
    temp.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldsim.cli",
            "imagine",
            f"checkpoint={push}",
            "timesteps=64",
            "n_envs=2",
            "ppo.n_steps=16",
            "ppo.batch_size=16",
            "ppo.n_epochs=1",
            "eval_episodes=2",
            "horizon=4",
            "threads=1",
            "+env_kwargs.start=behind",
            f"out={out}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(temp)},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "imagine.json").read_text())
    rows = {row["policy"]: row for row in report["rows"]}
    assert list(rows) == ["imagination", "real", "random", "scripted"]
    assert report["config"]["env_kwargs"] == {"start": "behind"} and report["config"]["context_policy"] == "zero"
    for name, row in rows.items():
        assert row["n"] == 2 and len(row["returns"]) == 2
        assert row["return_mean"] == pytest.approx(np.mean(row["returns"]), abs=1e-3)
        assert 0.0 <= row["success_rate"] <= 1.0
        assert ("train" in row) == (name in ("imagination", "real"))
    for name in ("imagination", "real"):
        assert rows[name]["train"]["timesteps"] == 64 and (out / f"ppo_{name}.zip").exists()
        with open(out / f"ppo_{name}.csv") as log:
            curve = list(csv.DictReader(log))
        assert [int(row["time/total_timesteps"]) for row in curve] == [32, 64]  # one row per rollout
        assert all(np.isfinite(float(row["rollout/ep_rew_mean"])) for row in curve)  # 4-step episodes ended
    assert not list(temp.glob("SB3-*"))  # SB3's default logger would have left an SB3-<time> folder
    imagined = rows["imagination"]["train"]
    assert imagined["real_frames"] == imagined["episodes"] * WINDOW  # only the contexts touch the real env
    assert set(report["ratios"]) == {"imagination_over_real", "imagination_over_real_above_random"}
    table = (out / "imagine.md").read_text()
    assert all(f"| {label} |" in table for label in LABELS.values())
    assert table.splitlines()[0] in result.stdout

    rescored = tmp_path / "rescored"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "worldsim.cli",
            "imagine",
            f"rescore={out}",
            "eval_episodes=3",
            "threads=1",
            f"out={rescored}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    again = json.loads((rescored / "imagine.json").read_text())
    assert [row["policy"] for row in again["rows"]] == ["imagination", "real"]
    for row in again["rows"]:
        assert row["n"] == 3 and row["returns"][:2] == rows[row["policy"]]["returns"]  # the run's episodes again
        assert row["train"] == rows[row["policy"]]["train"]
    assert again["facts"]["eval_seeds"] == [1_000_000, 1_000_001, 1_000_002]
    assert again["config"]["horizon"] == 4 and again["config"]["env_kwargs"] == {"start": "behind"}  # the run's

    with pytest.raises(ValueError, match=r"rescore takes only .* \['horizon'\] were set"):
        imagine(ImagineConfig(rescore=str(out), horizon=8, out=str(rescored)))
    with pytest.raises(ValueError, match="out=.* is the run's own folder"):
        imagine(ImagineConfig(rescore=str(out), out=str(out)))
    with pytest.raises(ValueError, match="eval_episodes=1: it must be at least 2"):
        imagine(ImagineConfig(rescore=str(out), eval_episodes=1, out=str(rescored)))
    tampered = json.loads((out / "imagine.json").read_text())
    tampered["rows"][0]["returns"][0] += 0.5
    (out / "imagine.json").write_text(json.dumps(tampered))
    with pytest.raises(ValueError, match="earns other returns on the run's own episodes"):
        imagine(ImagineConfig(rescore=str(out), eval_episodes=2, out=str(rescored)))
