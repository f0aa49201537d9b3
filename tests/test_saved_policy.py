"""Saved PPO policies load from their weights alone: the same actions as SB3's loader, and no code run."""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch

import worldsim  # noqa: F401  (registers the ids)

pytest.importorskip("stable_baselines3")

from stable_baselines3 import PPO  # noqa: E402

from worldsim.saved_policy import load_ppo_policy, net_arch_of  # noqa: E402


class _Touch:
    """Unpickling this creates ``marker``: the stand-in for an ``os.system(...)`` payload."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def saved(tmp_path: Path, env_id: str, policy: str = "MlpPolicy", **policy_kwargs) -> tuple[Path, PPO]:
    agent = PPO(policy, env_id, n_steps=16, batch_size=16, seed=0, device="cpu", policy_kwargs=policy_kwargs)
    agent.learn(16)
    agent.save(tmp_path / "ppo.zip")
    return tmp_path / "ppo.zip", agent


def rewritten(path: Path, entry: str, content: bytes) -> Path:
    """A copy of the zip at ``path`` with ``entry`` replaced by ``content``."""
    out = path.with_name(f"crafted_{entry.replace('.', '_')}.zip")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, content if name == entry else source.read(name))
    return out


@pytest.mark.parametrize(
    "env_id, policy, arch",
    [
        ("Pendulum-v1", "MlpPolicy", {"net_arch": dict(pi=[16], vf=[8, 8])}),
        ("CartPole-v1", "MlpPolicy", {}),
        ("worldsim/Push-v0", "CnnPolicy", {"net_arch": [8]}),  # HWC frames, which SB3 trains on transposed
    ],
)
def test_a_loaded_policy_acts_as_the_saved_agent(tmp_path: Path, env_id: str, policy: str, arch: dict) -> None:
    path, agent = saved(tmp_path, env_id, policy, **arch)
    env = gymnasium.make(env_id)
    policy = load_ppo_policy(path, env.observation_space, env.action_space)
    assert net_arch_of(policy.state_dict()) == net_arch_of(agent.policy.state_dict())
    observations = np.stack([env.observation_space.sample() for _ in range(32)])
    np.testing.assert_array_equal(
        policy.predict(observations, deterministic=True)[0], agent.predict(observations, deterministic=True)[0]
    )


def test_a_pickled_payload_in_the_zip_never_runs(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, "Pendulum-v1")
    env = gymnasium.make("Pendulum-v1")
    marker = tmp_path / "ran"
    data = json.loads(zipfile.ZipFile(path).read("data"))
    data["policy_class"] = {":serialized:": base64.b64encode(pickle.dumps(_Touch(marker))).decode()}
    crafted = rewritten(path, "data", json.dumps(data).encode())
    policy = load_ppo_policy(crafted, env.observation_space, env.action_space)
    assert policy.predict(env.observation_space.sample())[0].shape == (1,)
    assert not marker.exists()
    with pytest.raises(Exception):  # SB3's own loader unpickles it (the payload is live), then fails on it
        PPO.load(crafted)
    assert marker.exists()
    marker.unlink()

    buffer = io.BytesIO()
    torch.save({"weights": _Touch(marker)}, buffer)
    with pytest.raises(ValueError, match=r"weights_only=True.*never unpickles code"):
        load_ppo_policy(rewritten(path, "policy.pth", buffer.getvalue()), env.observation_space, env.action_space)
    assert not marker.exists()


def test_files_that_are_no_policy_for_these_spaces_are_refused_by_name(tmp_path: Path) -> None:
    path, _ = saved(tmp_path, "Pendulum-v1")
    pendulum, cartpole = gymnasium.make("Pendulum-v1"), gymnasium.make("CartPole-v1")
    junk = tmp_path / "junk.zip"
    junk.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(ValueError, match=rf"{junk} is not a saved SB3 policy"):
        load_ppo_policy(junk, pendulum.observation_space, pendulum.action_space)
    with pytest.raises(ValueError, match="is no file"):
        load_ppo_policy(tmp_path, pendulum.observation_space, pendulum.action_space)
    with pytest.raises(ValueError, match="does not fit a PPO ActorCriticPolicy observing Box"):
        load_ppo_policy(path, cartpole.observation_space, cartpole.action_space)
