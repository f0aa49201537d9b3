"""worldsim/WorldModel-v0: check_env, the three context sources, invalid actions, the batched vector env
(one model pass per denoising step, NEXT_STEP autoreset, determinism), and the `model` eval predictor."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from test_world_model import WINDOW, build_model_file, one_thread, physics  # noqa: F401  (fixtures)

import worldsim  # noqa: F401  (registers the ids)
from worldsim.data.dataset import EpisodeDataset
from worldsim.envs.world_model import WorldModelEnv, WorldModelVectorEnv

ENV_ID = "worldsim/WorldModel-v0"


def make(physics, **kwargs) -> WorldModelEnv:
    return gymnasium.make(ENV_ID, checkpoint=str(physics[1]), device="cpu", **kwargs).unwrapped


def make_vec(physics, num_envs: int, **kwargs) -> WorldModelVectorEnv:
    return gymnasium.make_vec(
        ENV_ID,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        checkpoint=str(physics[1]),
        device="cpu",
        **kwargs,
    )


@pytest.mark.parametrize("observation", ["rgb", "latent", "both"])
def test_model_env_passes_check_env(physics, observation: str) -> None:
    env = make(physics, observation=observation, horizon=4)
    check_env(env, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert env.render().shape == (64, 64, 3)
    env.close()


def test_a_latent_env_renders_the_frames_an_rgb_env_observes(physics) -> None:
    action = np.full(3, 0.5, np.float32)
    rgb, latent = make(physics, observation="rgb", horizon=4), make(physics, observation="latent", horizon=4)
    first, _ = rgb.reset(seed=5)
    latent.reset(seed=5)
    assert np.array_equal(latent.render(), first)  # the real last context frame
    observed = rgb.step(action)[0]
    latent.step(action)
    assert np.array_equal(latent.render(), observed)  # decoded residually, as observed
    assert not np.array_equal(observed, latent.model.decode(latent.batch.latents)[0])
    actions = np.stack([action, -action])
    rgb_vector, latent_vector = (make_vec(physics, 2, observation=kind, horizon=4) for kind in ("rgb", "latent"))
    rgb_vector.reset(seed=5)
    latent_vector.reset(seed=5)
    observed = rgb_vector.step(actions)[0]
    latent_vector.step(actions)
    assert np.array_equal(np.stack(latent_vector.render()), observed)


def test_reset_takes_its_context_from_the_env_a_dataset_episode_or_text(physics) -> None:
    root, _ = physics
    env = make(physics, horizon=3)
    first, info = env.reset(seed=3)
    assert info["context"] == "env" and info["caption"] and env.batch.cache.frames == WINDOW
    assert np.array_equal(env.reset(seed=3)[0], first) and not np.array_equal(env.reset(seed=4)[0], first)

    data = EpisodeDataset(root, verify=False)
    obs, info = env.reset(seed=0, options={"dataset": str(root), "episode": 1, "start": 2})
    assert np.array_equal(obs, data.episode(1).frames[2 + WINDOW - 1])  # the last context frame, real pixels
    assert info == {"caption": data.caption(1), "context": "dataset"}

    obs, info = env.reset(seed=0, options={"text": "a red ball drops"})
    assert info == {"caption": "a red ball drops", "context": "text"} and obs.shape == (64, 64, 3)
    assert env.batch.cache.frames == WINDOW  # imagined frames fill the window
    with pytest.raises(ValueError, match=r"unknown reset options \['seed_offset'\]"):
        env.reset(options={"seed_offset": 1})

    text_env = make(physics, context="text", text="a green box rolls", horizon=3)
    assert text_env.reset(seed=1)[1]["context"] == "text"
    step = text_env.step(np.zeros(3, np.float32))
    assert step[0].shape == (64, 64, 3) and isinstance(step[1], float) and step[3] is False


def test_truncation_at_the_horizon_and_invalid_actions_raise(physics) -> None:
    env = make(physics, horizon=2)
    env.reset(seed=0)
    assert env.step(np.zeros(3, np.float32))[3] is False
    assert env.step([0.5, -0.5, 0.0])[3] is True
    for action, rule in (
        ([0.3, np.nan, 0.0], "must be finite"),
        ([1.5, 0.0, 0.0], r"must lie in \[-1.0, 1.0\]"),
        ([0.1, 0.2], r"must have shape \(3,\), not \(2,\)"),
    ):
        with pytest.raises(ValueError, match=rf"is not in Box\(-1.0, 1.0, \(3,\), float32\): actions {rule}"):
            env.step(np.array(action, np.float32))
    vector = make_vec(physics, 2, horizon=2)
    vector.reset(seed=0)
    with pytest.raises(
        ValueError, match=r"one row per sub-env.*\[0.0, 2.0, 0.0\]\] is not a batch .*\(element \[1, 1\] is 2.0\)"
    ):
        vector.step(np.array([[0, 0, 0], [0, 2, 0]], np.float32))
    with pytest.raises(ValueError, match=r"seeds the whole batch from one int .* pass reset\(seed=<int>\)"):
        vector.reset(seed=[1, 2])


@pytest.mark.parametrize(
    "setting,message",
    [
        ({"steps": 0}, r"steps=0 is not in \[1, 64\]"),
        ({"warm_start": 1.0}, r"warm_start=1.0 is not in \[0, 1\)"),
        ({"sampler": "rk4"}, r"sampler='rk4' is not one of \('euler', 'heun'\)"),
        ({"stepz": 2}, r"sampling has no fields \['stepz'\]"),
    ],
)
def test_sampling_settings_are_checked_when_the_env_is_made(physics, setting, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(physics, sampling=setting)


def count_dit_calls(env: WorldModelVectorEnv) -> list[int]:
    """Batch sizes of every DiT forward from now on."""
    calls: list[int] = []
    env.model.dit.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    return calls


@pytest.mark.parametrize("num_envs", [1, 5])
def test_vector_env_steps_every_sub_env_in_one_batched_pass(physics, num_envs: int) -> None:
    envs = make_vec(physics, num_envs, horizon=50, sampling={"steps": 3})
    assert isinstance(envs, WorldModelVectorEnv)
    assert envs.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (num_envs, 64, 64, 3) and obs.dtype == np.uint8
    assert envs.action_space.shape == (num_envs, 3)
    calls = count_dit_calls(envs)
    obs, rewards, terminated, truncated, _ = envs.step(np.zeros((num_envs, 3), np.float32))
    # 3 Euler steps + writing the new frame into the cache, each once for the whole batch.
    assert calls == [num_envs] * 4
    assert obs.shape == (num_envs, 64, 64, 3) and rewards.shape == terminated.shape == truncated.shape == (num_envs,)
    assert envs.observation_space.contains(obs)


def test_vector_env_autoresets_on_the_next_step(physics) -> None:
    envs = make_vec(physics, 3, horizon=2)
    with torch.no_grad():  # the random termination head: first never terminal, later always
        envs.model.dit.heads.termination[-1].bias.fill_(-20.0)
    envs.reset(seed=0)
    act = np.zeros((3, 3), np.float32)
    envs.step(act)
    envs.reset(options={"reset_mask": np.array([True, False, False])})  # sub-env 0 now runs one step behind
    assert envs.elapsed.tolist() == [0, 1, 1]
    _, _, terminated, truncated, _ = envs.step(act)
    assert truncated.tolist() == [False, True, True] and not terminated.any()
    calls = count_dit_calls(envs)
    obs, rewards, terminated, truncated, _ = envs.step(act)
    assert truncated.tolist() == [True, False, False]  # 1 and 2 restarted instead of stepping
    assert rewards[1:].tolist() == [0.0, 0.0] and not terminated[1:].any()
    assert envs.elapsed.tolist() == [2, 0, 0]
    passes = envs.batch.sampling.steps + 1  # one batched step (sampling + writing the frame), then one write
    assert calls[:passes] == [3] * passes and calls[passes:] == [2]  # of both new contexts
    with torch.no_grad():
        envs.model.dit.heads.termination[-1].bias.fill_(20.0)
    _, _, terminated, _, _ = envs.step(act)
    assert terminated[1:].all() and not terminated[0]  # 0 restarts this step
    _, rewards, terminated, truncated, _ = envs.step(act)
    assert terminated[0] and not terminated[1:].any() and rewards[1:].tolist() == [0.0, 0.0]


def test_vector_env_is_deterministic_under_its_seed(physics) -> None:
    def episode(seed: int) -> list[np.ndarray]:
        envs = make_vec(physics, 2, horizon=2, observation="latent")
        actions = np.random.default_rng(0).uniform(-1, 1, (5, 2, 3)).astype(np.float32)
        return [envs.reset(seed=seed)[0]] + [envs.step(a)[0] for a in actions]

    a, b, c = episode(0), episode(0), episode(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert a[1].shape == (2, 4, 8, 8) and a[1].dtype == np.float32


def test_model_predictor_runs_through_the_eval(physics, tmp_path: Path) -> None:
    from worldsim.evals.baselines import BASELINES, WorldModelPredictor, make_predictor
    from worldsim.evals.run import EvalConfig, evaluate

    assert BASELINES["model"] is WorldModelPredictor
    evaluate(
        EvalConfig(
            checkpoint=str(physics[1]),
            predictors=["model", "copy_last"],
            suites=["physics"],
            n=2,
            split=["id"],
            out=str(tmp_path),
            progress=False,
        )
    )
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert {"model", "copy_last"} <= {row["predictor"] for row in rows}
    predictor = make_predictor("model", checkpoint=str(physics[1]))
    frames = np.zeros((1, 2, 64, 64, 3), np.uint8)
    with pytest.raises(ValueError, match=r"trained on worldsim/Physics-v0 .* score it on the suites of its world"):
        predictor.predict(frames, np.zeros((1, 5, 2), np.float32), ["x"], 4)  # Push's 2-d actions
    out = predictor.predict(frames, np.zeros((1, 5, 3), np.float32), ["x"], 4)
    assert out.shape == (1, 4, 64, 64, 3) and out.dtype == np.uint8
    assert np.array_equal(out, predictor.predict(frames, np.zeros((1, 5, 3), np.float32), ["x"], 4))


def test_model_predictor_over_a_directory_picks_each_scenario_worlds_model(physics, tmp_path: Path) -> None:
    import shutil

    from test_world_model import build_model_file

    from worldsim.data.collect import CollectConfig, collect
    from worldsim.evals.baselines import make_predictor
    from worldsim.evals.scenarios import make_scenarios, predict_scenarios

    push = tmp_path / "push"
    collect(CollectConfig(env="worldsim/Push-v0", episodes=1, max_steps=8, progress=False, out=str(push)))
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(physics[1], models / "physics.pt")
    build_model_file(push, models / "push.pt")
    predictor = make_predictor("model", checkpoint=str(models))
    scenarios = {env: make_scenarios(f"worldsim/{env}-v0", 1, 2, 3, "id", 0) for env in ("Physics", "Push", "Orbit")}
    assert [predictor.supports(s[0]) for s in scenarios.values()] == [True, True, False]
    for env in ("Physics", "Push"):
        assert predict_scenarios(predictor, scenarios[env]).shape == (1, 3, 64, 64, 3)
        assert predictor.model.env_id == f"worldsim/{env}-v0"
    shutil.copy(physics[1], models / "physics-again.pt")
    with pytest.raises(ValueError, match="are both models of worldsim/Physics-v0: keep one per world"):
        make_predictor("model", checkpoint=str(models))
    with pytest.raises(ValueError, match="holds no model files"):
        make_predictor("model", checkpoint=str(tmp_path / "push"))


def test_probe_suites_audit_the_models_autoencoder_and_conditioning(physics, tmp_path: Path) -> None:
    from worldsim.evals.run import EvalConfig, evaluate

    evaluate(
        EvalConfig(
            checkpoint=str(physics[1]),
            predictors=["model"],
            suites=["reconstruction", "conditioning"],
            n=2,
            split=["id"],
            out=str(tmp_path),
            progress=False,
        )
    )
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    model = {(r["suite"], r["metric"]) for r in rows if r["predictor"] == "model"}
    assert {
        ("reconstruction", "physics_psnr_db"),
        ("reconstruction", "physics_object_kept_1px"),
        ("conditioning", "text_color_dominant"),
    } <= model
    assert not any(m.startswith("push_") for _, m in model)  # a Physics model is not audited on Push
    copy_last = {(r["suite"], r["metric"]) for r in rows if r["predictor"] == "copy_last"}
    assert ("conditioning", "action_gain_db") in copy_last and not any(s == "reconstruction" for s, _ in copy_last)
