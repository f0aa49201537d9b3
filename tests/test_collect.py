"""Collection: parallel == serial, killed-and-resumed == clean, policies, clear errors."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium
import numpy as np
import pytest

from worldsim.data.collect import CollectConfig, CollectError, collect, episode_seed
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.policies import make_policy
from worldsim.data.storage import MANIFEST_NAME, read_manifest

# A tiny worldsim-like world: RGB observations, Box actions and the ground truth in info.
# Written to a temp module so that `module:EnvId` makes it in any process (spawned workers too).
TINY_ENV = textwrap.dedent('''
    import time
    import gymnasium
    import numpy as np
    from gymnasium import spaces

    class TinyWorld(gymnasium.Env):
        metadata = {"render_modes": ["rgb_array"]}

        def __init__(self, steps=10, delay=0.0, render_mode="rgb_array"):
            self.observation_space = spaces.Box(0, 255, (16, 16, 3), np.uint8)
            self.action_space = spaces.Box(-1, 1, (2,), np.float32)
            self.steps, self.delay, self.render_mode = steps, delay, render_mode

        def _out(self):
            frame = np.zeros((16, 16, 3), np.uint8)
            x, y = np.clip(self.pos, 0, 15).astype(int)
            frame[y, x] = (255, 0, 0)
            info = {"caption": f"a red dot, mass {self.mass:.2f}", "split": "id",
                    "params": {"mass": float(self.mass)},
                    "state": {"object_position": self.pos[None].astype(np.float32),
                              "object_visible": np.array([True])},
                    "segmentation": (frame[..., 0] > 0).astype(np.int16),
                    "depth": np.full((16, 16), 2.0, np.float32)}
            return frame, info

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.pos = self.np_random.uniform(0, 15, 2)
            self.mass = self.np_random.uniform(0.5, 2.0)
            self.t = 0
            return self._out()

        def step(self, action):
            time.sleep(self.delay)
            self.pos = self.pos + 2 * np.asarray(action) / self.mass
            self.t += 1
            frame, info = self._out()
            return frame, float(-np.abs(self.pos - 8).sum()), False, self.t >= self.steps, info

    gymnasium.register("TinyWorld-v0", entry_point=TinyWorld)

    class Blind(gymnasium.Env):
        """Observes a vector and cannot draw itself."""
        metadata = {"render_modes": []}
        observation_space = spaces.Box(-1, 1, (2,), np.float32)
        action_space = spaces.Discrete(2)

    gymnasium.register("Blind-v0", entry_point=Blind)

    def toward_center(observation, info):
        return np.sign(8 - info["state"]["object_position"][0]).astype(np.float32)

    class ConstantPolicy:
        def __init__(self, action_space):
            self.action = np.full(action_space.shape, 0.5, np.float32)
        def reset(self, seed):
            pass
        def __call__(self, observation, info):
            return self.action

    class DiesInWorkers(ConstantPolicy):
        def reset(self, seed):
            import multiprocessing, os
            if multiprocessing.parent_process() is not None:
                os._exit(3)

    def claim_slot(ledger):
        """The lowest free number in folder ``ledger``, claimed atomically across processes."""
        import os
        slot = 0
        while True:
            try:
                os.close(os.open(os.path.join(ledger, f"attempt-{slot}"), os.O_CREAT | os.O_EXCL))
                return slot
            except FileExistsError:
                slot += 1

    class FullDiskAfter(ConstantPolicy):
        """Constant actions; its process's shard writes fail as on a full disk once a budget is spent.

        Each shard write claims a slot file in folder ``ledger``, so a test counts the attempts of
        every worker; a ``budget`` file there says how many succeed (all, without it).
        """
        def __init__(self, action_space, ledger):
            import errno, os
            import worldsim.data.storage as storage
            super().__init__(action_space)
            real = getattr(storage._write_npy, "real", storage._write_npy)

            def write(path, parts):
                if path.name == "frames.npy":  # the first file of each shard
                    slot = claim_slot(ledger)
                    budget = os.path.join(ledger, "budget")
                    if os.path.exists(budget) and slot >= int(open(budget).read()):
                        with open(path, "wb") as handle:
                            handle.write(bytes(4096))
                        raise OSError(errno.ENOSPC, "No space left on device")  # as write() raises it
                return real(path, parts)

            write.real = real
            storage._write_npy = write

    class BreaksAtEpisode(ConstantPolicy):
        """Raises in the episode reset with ``seed``; records each episode begun in folder ``ledger``."""
        def __init__(self, action_space, seed, ledger):
            super().__init__(action_space)
            self.broken_seed, self.ledger = seed, ledger

        def reset(self, seed):
            import os
            open(os.path.join(self.ledger, str(seed)), "w").close()
            if seed == self.broken_seed:
                raise ValueError("the policy broke")
''')


@pytest.fixture(scope="module")
def tiny_env_module(tmp_path_factory: pytest.TempPathFactory) -> str:
    directory = tmp_path_factory.mktemp("tinyenv")
    (directory / "tiny_world.py").write_text(TINY_ENV)
    sys.path.insert(0, str(directory))
    yield "tiny_world"
    sys.path.remove(str(directory))


def cartpole(out: Path, **overrides) -> CollectConfig:
    fields = dict(env="CartPole-v1", episodes=6, shard_episodes=2, out=str(out), size=[32, 32], progress=False)
    return CollectConfig(**{**fields, **overrides})


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("shard-*/*"))}


def test_cartpole_collection_reads_back(tmp_path: Path) -> None:
    summary = collect(cartpole(tmp_path / "data"))
    dataset = EpisodeDataset(tmp_path / "data")
    assert len(dataset) == summary.episodes == 6
    assert summary.frames == int(dataset.lengths.sum()) + 6 == summary.recorded_frames
    assert summary.frames_per_s == pytest.approx(summary.recorded_frames / summary.seconds)
    assert summary.frames_per_s > 0
    episode = dataset.episode(0)
    assert episode.frames.shape == (episode.length + 1, 32, 32, 3)
    assert episode.actions.dtype == np.int64 and episode.actions.shape == (episode.length,)
    assert set(np.unique(episode.actions)) <= {0, 1}
    assert episode.terminated[-1] and not episode.terminated[:-1].any()  # the pole fell
    assert episode.rewards.tolist() == [1.0] * episode.length
    assert episode.seed == episode_seed(0, 0) and episode.caption == "" and episode.state == {}
    # The recording is the env's own: replaying the stored actions reproduces the rewards.
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=episode.seed)
    for action in episode.actions:
        _, reward, terminated, _, _ = env.step(int(action))
    assert terminated
    manifest = json.loads((tmp_path / "data" / MANIFEST_NAME).read_text())
    assert manifest["action_space"] == {"type": "Discrete", "n": 2, "start": 0}
    assert manifest["frames_from"] == "render" and manifest["num_shards"] == 3


def test_two_workers_write_the_same_bytes_as_one(tmp_path: Path) -> None:
    collect(cartpole(tmp_path / "one", workers=1))
    summary = collect(cartpole(tmp_path / "two", workers=2))
    assert summary.recorded_episodes == 6
    one, two = shard_bytes(tmp_path / "one"), shard_bytes(tmp_path / "two")
    assert len(one) == 3 * 6 and one == two


def test_tiny_world_stores_ground_truth_and_images(tmp_path: Path, tiny_env_module: str) -> None:
    cfg = CollectConfig(
        env=f"{tiny_env_module}:TinyWorld-v0",
        episodes=3,
        shard_episodes=2,
        out=str(tmp_path / "data"),
        record_images=True,
        max_steps=7,
        progress=False,
    )
    collect(cfg)
    episode = EpisodeDataset(tmp_path / "data").episode(2)
    assert episode.length == 7 and episode.truncated.tolist() == [False] * 6 + [True]
    assert episode.frames.shape == (8, 16, 16, 3)
    assert episode.actions.dtype == np.float32 and episode.actions.shape == (7, 2)
    assert episode.state["object_position"].shape == (8, 1, 2)
    assert episode.state["object_visible"].dtype == np.bool_
    assert episode.segmentation.dtype == np.int16 and episode.segmentation.shape == (8, 16, 16)
    assert episode.depth.dtype == np.float16 and (episode.depth == 2.0).all()
    assert episode.caption.startswith("a red dot, mass ")
    assert episode.params["mass"] == pytest.approx(float(episode.caption.split()[-1]), abs=0.01)
    # Each frame's red pixel is where the state says the dot is.
    y, x = np.argwhere(episode.frames[3, :, :, 0] == 255)[0]
    assert (x, y) == tuple(np.clip(episode.state["object_position"][3, 0], 0, 15).astype(int))


def test_callable_policies(tmp_path: Path, tiny_env_module: str) -> None:
    env = f"{tiny_env_module}:TinyWorld-v0"
    collect(
        CollectConfig(
            env=env, episodes=1, out=str(tmp_path / "f"), progress=False, policy=f"{tiny_env_module}:toward_center"
        )
    )
    episode = EpisodeDataset(tmp_path / "f").episode(0)
    expected = np.sign(8 - episode.state["object_position"][:-1, 0])
    np.testing.assert_array_equal(episode.actions, expected)

    policy_file = tmp_path / "my_policy.py"
    policy_file.write_text("from tiny_world import ConstantPolicy\n")
    collect(
        CollectConfig(
            env=env, episodes=1, out=str(tmp_path / "c"), progress=False, policy=f"{policy_file}:ConstantPolicy"
        )
    )
    assert (EpisodeDataset(tmp_path / "c").episode(0).actions == 0.5).all()


def test_policy_kwargs_reach_a_policy_class(tmp_path: Path) -> None:
    policy_file = tmp_path / "kw_policies.py"
    policy_file.write_text(
        textwrap.dedent("""
        class Scaled:
            def __init__(self, action_space, scale=1.0):
                self.action_space, self.scale = action_space, scale
            def reset(self, seed): pass
            def __call__(self, observation, info): return self.scale

        class Fixed:
            def __init__(self, value):
                self.value = value
            def reset(self, seed): pass
            def __call__(self, observation, info): return self.value
    """)
    )
    env = gymnasium.make("CartPole-v1")
    scaled = make_policy(f"{policy_file}:Scaled", env, {"scale": 0.5})
    assert scaled.action_space is env.action_space and scaled(None, {}) == 0.5
    assert make_policy(f"{policy_file}:Fixed", env, {"value": 1})(None, {}) == 1
    with pytest.raises(ValueError, match=r"cannot be built with policy_kwargs \{'speed': 2\}"):
        make_policy(f"{policy_file}:Scaled", env, {"speed": 2})
    env.close()


def test_a_dead_worker_stops_collection_with_a_clear_error(tmp_path: Path, tiny_env_module: str) -> None:
    cfg = CollectConfig(
        env=f"{tiny_env_module}:TinyWorld-v0",
        episodes=4,
        shard_episodes=1,
        workers=2,
        out=str(tmp_path / "d"),
        progress=False,
        policy=f"{tiny_env_module}:DiesInWorkers",
    )
    with pytest.raises(RuntimeError, match="collection worker process died"):
        collect(cfg)
    with pytest.warns(UserWarning, match="did not finish"):
        assert len(EpisodeDataset(tmp_path / "d")) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_a_full_disk_stops_at_once_names_the_file_leaves_no_temps_and_resumes_to_a_clean_run(
    tmp_path: Path, tiny_env_module: str, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    import worldsim.data.storage as storage

    monkeypatch.setattr(storage, "_write_npy", storage._write_npy)  # undone after the test, whoever patched it
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    (ledger / "budget").write_text("2")  # the disk fills up during the third shard
    cfg = CollectConfig(
        env=f"{tiny_env_module}:TinyWorld-v0",
        env_kwargs={"delay": 0.005},
        policy=f"{tiny_env_module}:FullDiskAfter",
        policy_kwargs={"ledger": str(ledger)},
        episodes=24,
        shard_episodes=2,
        workers=workers,
        out=str(tmp_path / "data"),
        progress=False,
    )
    root = tmp_path / "data"
    with pytest.raises(CollectError) as error:
        collect(cfg)
    message = str(error.value)
    assert re.search(rf"no space left on device writing {root}/shard-\d{{5}}\.tmp-\d+/frames\.npy \(ENOSPC\)", message)
    assert "free space, then re-run the same command to resume" in message
    attempts = len(list(ledger.glob("attempt-*")))
    assert attempts <= 2 + 2 * workers  # of 12: the shards after the failure were never recorded
    assert not [p.name for p in root.iterdir() if ".tmp-" in p.name]
    committed = [s["name"] for s in read_manifest(root)["shards"]]
    assert sorted(p.name for p in root.glob("shard-*")) == sorted(committed)  # no uncommitted shard either
    assert f"the {len(committed)} shard(s) that {root / MANIFEST_NAME} lists are kept" in message

    (ledger / "budget").unlink()  # space freed
    resumed = collect(cfg)
    assert resumed.recorded_episodes == 24 - 2 * len(committed) and resumed.episodes == 24
    clean = collect(dataclasses.replace(cfg, out=str(tmp_path / "clean"), workers=1))
    assert shard_bytes(root) == shard_bytes(tmp_path / "clean")
    assert read_manifest(root)["shards"] == read_manifest(tmp_path / "clean")["shards"]
    assert clean.episodes == 24


def test_a_policy_error_in_a_worker_stops_the_others_and_names_the_episode_and_seed(
    tmp_path: Path, tiny_env_module: str
) -> None:
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    seed = episode_seed(0, 3)
    cfg = CollectConfig(
        env=f"{tiny_env_module}:TinyWorld-v0",
        env_kwargs={"delay": 0.01},
        policy=f"{tiny_env_module}:BreaksAtEpisode",
        policy_kwargs={"seed": seed, "ledger": str(ledger)},
        episodes=16,
        shard_episodes=1,
        workers=2,
        out=str(tmp_path / "data"),
        progress=False,
    )
    with pytest.raises(
        CollectError,
        match=rf"episode 3 \(shard 3, reset seed {seed}\) raised ValueError: the policy broke; fix the policy or env",
    ):
        collect(cfg)
    begun = len(list(ledger.iterdir()))
    assert begun <= 8  # of 16: episodes 0..3 and at most two more per worker; the others never began
    assert not [p.name for p in (tmp_path / "data").iterdir() if ".tmp-" in p.name]


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    collect(cartpole(tmp_path / "data"))
    before = shard_bytes(tmp_path / "data")
    with pytest.raises(ValueError, match=r"different config: seed=0 \(now 1\).*new out directory"):
        collect(cartpole(tmp_path / "data", seed=1))
    assert shard_bytes(tmp_path / "data") == before
    again = collect(cartpole(tmp_path / "data", workers=2))  # workers do not change the data
    assert again.recorded_episodes == 0 and again.episodes == 6


def test_a_dataset_recorded_before_a_config_field_existed_still_resumes(tmp_path: Path) -> None:
    collect(cartpole(tmp_path / "data"))
    manifest_path = tmp_path / "data" / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    del manifest["collect"]["policy_kwargs"]  # as written before policy_kwargs was added
    manifest_path.write_text(json.dumps(manifest))
    again = collect(cartpole(tmp_path / "data"))
    assert again.recorded_episodes == 0 and again.episodes == 6


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"env": "NoSuchEnv-v3"}, "env 'NoSuchEnv-v3' cannot be made"),
        ({"episodes": 0}, "episodes=0: record at least 1 episode"),
        ({"size": [32]}, r"size=\[32\]: give \[H, W\]"),
        ({"policy": "scripted"}, "has no scripted_policy"),
        ({"policy": "nowhere:act"}, "cannot import module 'nowhere'"),
        ({"env_kwargs": {"render_mode": "human"}}, "render_mode='human': drop it"),
        ({"record_images": True}, "puts no \\['segmentation', 'depth'\\] in info"),
    ],
)
def test_bad_input_is_refused_without_touching_data(tmp_path: Path, overrides: dict, message: str) -> None:
    collect(cartpole(tmp_path / "data"))
    before = shard_bytes(tmp_path / "data")
    with pytest.raises(ValueError, match=message):
        collect(cartpole(tmp_path / "data", **overrides))
    assert shard_bytes(tmp_path / "data") == before
    assert len(EpisodeDataset(tmp_path / "data")) == 6


def test_non_image_env_without_rgb_array_is_refused(tmp_path: Path, tiny_env_module: str) -> None:
    with pytest.raises(ValueError, match=r"not RGB frames, and cannot render rgb_array"):
        collect(CollectConfig(env=f"{tiny_env_module}:Blind-v0", episodes=1, out=str(tmp_path / "d"), progress=False))
    assert not (tmp_path / "d").exists()


def test_killed_collection_resumes_to_the_same_bytes(tmp_path: Path, tiny_env_module: str) -> None:
    env = f"{tiny_env_module}:TinyWorld-v0"
    kwargs = dict(env=env, env_kwargs={"delay": 0.004}, episodes=16, shard_episodes=2, progress=False)
    killed = tmp_path / "killed"
    script = (
        f"import sys; sys.path.insert(0, {str(Path(sys.modules[tiny_env_module].__file__).parent)!r})\n"
        "from worldsim.data.collect import CollectConfig, collect\n"
        f"collect(CollectConfig(out={str(killed)!r}, **{kwargs!r}))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        manifest = killed / MANIFEST_NAME
        try:
            if len(json.loads(manifest.read_text())["shards"]) >= 1:
                break
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    committed = len(json.loads((killed / MANIFEST_NAME).read_text())["shards"])
    assert 1 <= committed < 8, "the run was not killed mid-way; slow the env down"

    resumed = collect(CollectConfig(out=str(killed), **kwargs))
    assert resumed.recorded_episodes == 16 - 2 * committed
    clean = tmp_path / "clean"
    collect(CollectConfig(out=str(clean), **kwargs))
    assert shard_bytes(killed) == shard_bytes(clean)
    assert not [p for p in killed.iterdir() if ".tmp-" in p.name]
    manifests = [json.loads((root / MANIFEST_NAME).read_text()) for root in (killed, clean)]
    assert manifests[0]["shards"] == manifests[1]["shards"]
    assert manifests[0]["episodes"] == 16


def test_deleted_shard_is_recorded_again(tmp_path: Path) -> None:
    import shutil

    collect(cartpole(tmp_path / "data"))
    before = shard_bytes(tmp_path / "data")
    shutil.rmtree(tmp_path / "data" / "shard-00001")
    summary = collect(cartpole(tmp_path / "data"))
    assert summary.recorded_episodes == 2
    assert shard_bytes(tmp_path / "data") == before


def physics_available() -> bool:
    try:
        import worldsim  # noqa: F401  registers the worlds

        gymnasium.make("worldsim/Physics-v0").close()
        return True
    except Exception:
        return False


@pytest.mark.skipif(not physics_available(), reason="worldsim/Physics-v0 is not built yet")
def test_physics_world_collects_ground_truth(tmp_path: Path) -> None:
    collect(
        CollectConfig(
            env="worldsim/Physics-v0",
            episodes=2,
            shard_episodes=1,
            max_steps=8,
            out=str(tmp_path),
            record_images=True,
            progress=False,
        )
    )
    episode = EpisodeDataset(tmp_path).episode(1)
    assert episode.frames.dtype == np.uint8 and episode.length == 8
    assert episode.caption and episode.split in ("id", "ood")
    assert episode.state and all(len(v) == 9 for v in episode.state.values())
    assert episode.segmentation.shape == episode.frames.shape[:3]


def beside_the_script(env: gymnasium.Env, spec: str, seed: int, episodes: int, steps: int):
    """Actions of policy ``spec`` (seeded ``seed + episode``) and of the script, in the script's states."""
    from worldsim.data.policies import make_policy

    policy, script = make_policy(spec, env), make_policy("scripted", env)
    taken, scripted = [], []
    for episode in range(episodes):
        observation, info = env.reset(seed=episode)
        policy.reset(seed + episode)
        for _ in range(steps):
            scripted.append(script(observation, info))
            taken.append(policy(observation, info))
            observation, _, terminated, truncated, info = env.step(scripted[-1])  # same states for both
            if terminated or truncated:
                break
    return policy, np.array(taken), np.array(scripted)


def test_mixed_policy_is_the_script_with_seeded_random_bursts() -> None:
    from worldsim.data.policies import MixedPolicy

    env = gymnasium.make("worldsim/Push-v0")
    try:
        policy, taken, scripted = beside_the_script(env, "mixed", seed=1, episodes=1, steps=60)
        assert isinstance(policy, MixedPolicy)
        random_steps = ~np.all(np.isclose(taken, scripted), axis=1)
        assert 0 < random_steps.sum() < 0.5 * len(taken)  # mostly the script, with bursts
        assert np.array_equal(beside_the_script(env, "mixed", 1, 1, 60)[1], taken)
        assert not np.array_equal(beside_the_script(env, "mixed", 2, 1, 60)[1], taken)
    finally:
        env.close()


def test_sticky_policy_holds_random_actions_between_scripted_segments() -> None:
    from worldsim.data.policies import StickyPolicy, make_policy

    env = gymnasium.make("worldsim/Push-v0", start="behind")
    try:
        policy, taken, scripted = beside_the_script(env, "sticky", seed=3, episodes=4, steps=64)
        assert isinstance(policy, StickyPolicy)
        held = ~np.all(np.isclose(taken, scripted), axis=1)
        assert 0.2 < held.mean() < 0.8  # about half the segments are random holds
        repeats = np.all(taken[1:] == taken[:-1], axis=1) & held[1:] & held[:-1]
        assert repeats.sum() >= held.sum() // 2  # a held action repeats until its segment ends
        assert np.array_equal(beside_the_script(env, "sticky", 3, 4, 64)[1], taken)
        assert not np.array_equal(beside_the_script(env, "sticky", 4, 4, 64)[1], taken)
        assert make_policy("sticky", gymnasium.make("CartPole-v1")).scripted_share == 0.0  # no script: all holds
    finally:
        env.close()


def test_a_policy_action_outside_the_space_stops_collect_by_the_one_action_rule(tmp_path: Path) -> None:
    """Any env, not only worldsim's worlds (which check their own steps): Pendulum's torque lies in [-2, 2]."""
    (tmp_path / "policy.py").write_text(
        "import numpy as np\n\ndef push(observation, info):\n    return np.array([3.0])\n"
    )
    with pytest.raises(CollectError, match=r"episode 0 .*the policy's action \[3.0\] .*must lie in \[-2.0, 2.0\]"):
        collect(
            CollectConfig(
                env="Pendulum-v1",
                episodes=1,
                max_steps=4,
                policy=f"{tmp_path / 'policy.py'}:push",
                progress=False,
                out=str(tmp_path / "data"),
            )
        )
