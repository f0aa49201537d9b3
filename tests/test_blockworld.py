"""BlockWorld: the voxel renderer against a scalar DDA, the player's physics, edits, the task, the
exploring policy's revisits, the splits and a recorded dataset."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from test_world_model import build_model_file, one_thread  # noqa: F401  (fixture)

import worldsim  # registers the ids
from worldsim.envs.blockworld import (
    HOTBAR,
    JUMP,
    MAX_LANDMARKS,
    WOOD_GOAL,
    WORLD_SIZE,
    BlockWorldEnv,
)
from worldsim.envs.raycast import FACE_SHADE, TEXTURE_NOISE, VoxelRenderer, cast_ray
from worldsim.envs.voxels import AIR, BIOMES, BLOCKS, STONE, WOOD

NOOP = np.zeros(7, np.int64)


def act(**components: int) -> np.ndarray:
    from worldsim.envs.blockworld_policy import act as policy_act

    return policy_act(**components)


@pytest.fixture
def env():
    env = BlockWorldEnv(width=32, height=32)
    env.reset(seed=0)
    yield env
    env.close()


def settle(env: BlockWorldEnv, steps: int = 30) -> dict:
    info = {}
    for _ in range(steps):
        _, _, _, _, info = env.step(NOOP)
    return info


def test_check_env_passes_without_warnings():
    env = gymnasium.make("worldsim/BlockWorld-v0")
    assert env.spec.max_episode_steps == 600
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_same_seed_same_frames_and_info_different_seed_different_world():
    runs = []
    for _ in range(2):
        env = BlockWorldEnv(width=32, height=32)
        observation, info = env.reset(seed=5)
        policy = env.scripted_policy()
        policy.reset(5)
        frames, infos = [observation], [info]
        for _ in range(40):
            observation, _, _, _, info = env.step(policy(observation, info))
            frames.append(observation)
            infos.append(info)
        runs.append((frames, infos))
    for fa, fb, ia, ib in zip(runs[0][0], runs[1][0], runs[0][1], runs[1][1]):
        np.testing.assert_array_equal(fa, fb)
        assert ia["caption"] == ib["caption"] and ia["params"] == ib["params"]
        for key in ia["state"]:
            np.testing.assert_array_equal(ia["state"][key], ib["state"][key])
        np.testing.assert_array_equal(ia["depth"], ib["depth"])
    observation, info = BlockWorldEnv(width=32, height=32).reset(seed=6)
    assert info["params"] != runs[0][1][0]["params"] and not np.array_equal(observation, runs[0][0][0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_march_finds_the_block_a_scalar_dda_finds_for_every_pixel(seed):
    env = BlockWorldEnv(width=32, height=32)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    renderer = env.renderer
    env.position[:2] += rng.uniform(-0.45, 0.45, 2)  # off the column centre, so no ray starts on an edge
    env.yaw_index, env.pitch_index = int(rng.integers(24)), int(rng.integers(-3, 4))
    rays = renderer.bundle(env.yaw, env.pitch)
    eye = env.eye
    hits = renderer.march(eye, rays)
    _, _, block, _ = renderer.render(eye, env.yaw, env.pitch, env.palette, env.sky)
    for i in range(rays.direction.shape[1]):
        reference = cast_ray(env.blocks, eye, rays.direction[:, i].astype(np.float64), renderer.view_distance)
        if reference is None:
            assert not np.isfinite(hits.distance[i]) and block.flat[i] == 0, i
        else:
            assert hits.distance[i] == pytest.approx(reference[0], abs=1e-3), i
            assert block.flat[i] == env.blocks[reference[1]], i


def test_a_single_block_ahead_fills_the_centre_pixels_with_its_colour_and_depth():
    blocks = np.zeros((16, 16, 16), np.uint8)
    blocks[8, 12, 8] = STONE
    renderer = VoxelRenderer((16, 16, 16), 32, 32, fov=70.0, view_distance=12.0)
    renderer.set_world(blocks, np.zeros_like(blocks))
    palette = np.zeros((256, 3), np.float32)
    palette[STONE] = BLOCKS[STONE][1]
    sky = np.array([[0.7, 0.8, 0.9], [0.3, 0.5, 0.9]], np.float32)
    eye = np.array([8.5, 8.5, 8.5])  # looking along +y at the block's near face, 3.5 away
    frame, depth, block, _ = renderer.render(eye, 0.0, 0.0, palette, sky)
    centre = (slice(15, 17), slice(15, 17))
    assert (block[centre] == STONE).all() and (block[0] == 0).all() and (block[:, 0] == 0).all()
    np.testing.assert_allclose(depth[centre], 3.5, rtol=1e-5)
    expected = np.array(BLOCKS[STONE][1]) * FACE_SHADE[3] * 255  # a y+ step meets a y- facing face
    pixels = frame[centre].reshape(-1, 3).astype(float)
    assert np.all(np.abs(pixels - expected) <= expected * TEXTURE_NOISE + 1), (pixels, expected)
    # The block spans one unit at 3.5: 2 * atan(0.5 / 3.5) of the 70 degree field, in pixels.
    width = 32 * math.tan(math.atan(0.5 / 3.5)) / math.tan(math.radians(35))
    assert abs((block[16] == STONE).sum() - width) <= 1


def test_the_player_falls_to_the_ground_and_jumps_about_one_block(env):
    x, y = (int(v) for v in env.position[:2])
    ground = int(np.flatnonzero(env.blocks[x, y])[-1]) + 1
    env.position[2] += 4.0
    env.on_ground = False
    info = settle(env)
    assert info["state"]["player_position"][2] == ground and info["state"]["player_on_ground"]
    heights = []
    _, _, _, _, info = env.step(act(jump=1))
    heights.append(info["state"]["player_position"][2])
    for _ in range(20):
        _, _, _, _, info = env.step(NOOP)
        heights.append(info["state"]["player_position"][2])
    apex = max(heights) - ground
    assert 1.0 < apex < 1.5 and apex == pytest.approx(JUMP * (JUMP / 0.08 + 1) / 2)
    assert heights[-1] == ground


def test_the_player_cannot_walk_through_a_wall_but_climbs_a_step_by_jumping(env):
    settle(env, 5)
    env.yaw_index = 0  # facing +y
    x, y, z = (int(math.floor(v)) for v in env.position)
    env.blocks[x - 1 : x + 2, y + 2, z : z + 3] = STONE  # a wall three blocks high, two ahead
    env.blocks[x - 1 : x + 2, y : y + 2, z:] = AIR  # nothing else in the way
    env.blocks[x - 1 : x + 2, y : y + 2, z - 1] = STONE  # a level floor
    env.renderer.set_world(env.blocks, env.owner)
    for _ in range(20):
        _, _, _, _, info = env.step(act(move=1))
        assert info["state"]["player_position"][1] + 0.3 <= y + 2
    assert info["state"]["player_position"][1] + 0.3 == pytest.approx(y + 2, abs=1e-5)
    env.blocks[x - 1 : x + 2, y + 2, z + 1 :] = AIR  # now a one-block step
    env.renderer.set_world(env.blocks, env.owner)
    stood_on_step = False
    for _ in range(12):
        _, _, _, _, info = env.step(act(move=1, jump=1))
        x_now, y_now, z_now = info["state"]["player_position"]
        stood_on_step |= bool(info["state"]["player_on_ground"] and y_now > y + 2 and z_now == z + 1)
    assert stood_on_step


def test_break_removes_the_block_under_the_crosshair_and_place_adds_the_selected_one(env):
    settle(env, 5)
    for _ in range(3):
        _, _, _, _, info = env.step(act(pitch=2))  # 45 degrees down: the ground in reach
    target = tuple(info["state"]["target_block"])
    old = env.blocks[target]
    assert old != AIR and env.crosshair() is not None
    _, reward, _, _, info = env.step(act(use=1))
    assert env.blocks[target] == AIR and info["state"]["edit_count"] == 1
    np.testing.assert_array_equal(info["state"]["edits"][0], [*target, old, AIR, info["state"]["edits"][0][5]])
    assert (info["state"]["edits"][1:] == -1).all() and info["state"]["inventory"][old] == 1
    assert reward == float(old == WOOD)
    _, _, _, _, info = env.step(act(select=2))
    assert info["state"]["selected_block"] == HOTBAR[1]
    placed_at = env.crosshair()[2]
    _, _, _, _, info = env.step(act(use=2))
    assert env.blocks[placed_at] == HOTBAR[1] and info["state"]["edit_count"] == 2
    np.testing.assert_array_equal(info["state"]["edits"][1][:5], [*placed_at, AIR, HOTBAR[1]])
    # The edited world is what the renderer draws: the centre pixels show the placed block.
    assert (info["state"]["block_type"][15:17, 15:17] == HOTBAR[1]).any()


def test_breaking_wood_pays_one_and_the_goal_ends_the_episode(env):
    settle(env, 5)
    env.step(act(pitch=2))
    env.step(act(pitch=2))
    target = env.crosshair()[1]
    env.blocks[target] = WOOD
    env.renderer.set_world(env.blocks, env.owner)
    env.inventory[WOOD] = WOOD_GOAL - 1
    _, reward, terminated, truncated, info = env.step(act(use=1))
    assert reward == 1.0 and terminated and not truncated
    _, reward, _, _, _ = env.step(act(use=1))  # stone below the hole: nothing for it
    assert reward == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_exploring_policy_returns_to_earlier_places_and_views_and_digs_and_builds(seed):
    env = BlockWorldEnv(width=32, height=32)
    observation, info = env.reset(seed=seed)
    policy = env.scripted_policy()
    policy.reset(seed)
    poses = []
    for _ in range(400):
        state = info["state"]
        poses.append(np.r_[state["player_position"], state["player_look"]].astype(np.float64))
        observation, _, terminated, truncated, info = env.step(policy(observation, info))
        if terminated:
            break
    edits = info["state"]["edits"][: info["state"]["edit_count"]]
    poses = np.array(poses)
    returns = 0
    for i in range(0, len(poses), 5):
        # Back within 0.3 blocks of pose i, looking the same way, after 20+ steps and 2+ blocks away.
        later = poses[i + 20 :]
        away = np.linalg.norm(later[:, :2] - poses[i, :2], axis=1)
        back = np.flatnonzero((away < 0.3) & np.all(np.abs(later[:, 3:] - poses[i, 3:]) < 1e-6, axis=1))
        if back.size and away[: back[0] + 1].max() >= 2.0:
            returns += 1
    assert returns >= 5, returns
    assert (edits[:, 4] == AIR).sum() >= 3 and (edits[:, 4] != AIR).sum() >= 3  # broke and placed blocks
    assert np.ptp(poses[:, :2], axis=0).max() >= 6  # and got somewhere


def test_ood_episodes_draw_unseen_biomes_taller_terrain_and_more_landmarks():
    env = BlockWorldEnv(width=32, height=32)
    relief = {}
    for split in ("id", "ood"):
        infos = [env.reset(seed=seed, options={"split": split})[1] for seed in range(6)]
        biomes = {info["params"]["biome"] for info in infos}
        assert biomes <= set(BlockWorldEnv.params["biome"].values(split))
        assert all(BlockWorldEnv.params["relief"].contains(info["params"]["relief"], split) for info in infos)
        relief[split] = [info["state"]["object_present"].sum() for info in infos]
        assert all(info["split"] == split for info in infos)
    assert set(BlockWorldEnv.params["biome"].values("ood")).isdisjoint(BlockWorldEnv.params["biome"].values("id"))
    assert min(relief["ood"]) > max(relief["id"]) - 3 and max(relief["ood"]) <= MAX_LANDMARKS
    assert {"tundra", "mesa"} <= set(BIOMES)


def test_landmark_ground_truth_agrees_with_the_pixels(env):
    for seed in range(3):
        observation, info = env.reset(seed=seed)
        for _ in range(8):
            observation, _, _, _, info = env.step(act(yaw=2))
            state = info["state"]
            counts = np.bincount(info["segmentation"].ravel(), minlength=MAX_LANDMARKS + 1)[1:]
            np.testing.assert_array_equal(counts, state["object_pixels"])
            assert ((info["segmentation"] > 0) <= (state["block_type"] > 0)).all()
            assert state["camera_position"] == pytest.approx(state["player_position"] + [0, 0, 1.62])
            clip = state["camera_projection"] @ state["camera_view"] @ np.r_[state["camera_position"], 1.0]
            assert clip[3] == pytest.approx(0.0, abs=1e-4)  # the eye is on the camera plane


def test_collect_records_scripted_blockworld_episodes_that_the_dataset_reads(tmp_path):
    from worldsim.data.collect import CollectConfig, collect
    from worldsim.data.dataset import EpisodeDataset

    summary = collect(
        CollectConfig(
            env="worldsim/BlockWorld-v0",
            env_kwargs={"width": 32, "height": 32},
            policy="scripted",
            episodes=2,
            max_steps=40,
            out=str(tmp_path / "data"),
            progress=False,
        )
    )
    assert summary.episodes == 2
    dataset = EpisodeDataset(str(tmp_path / "data"))
    assert len(dataset) == 2
    episode = dataset.episode(0)
    assert episode.frames.shape == (41, 32, 32, 3) and episode.actions.shape == (40, 7)
    assert episode.actions.dtype == np.int64 and episode.state["edits"].shape == (41, 128, 6)
    assert "biome" in episode.params and episode.caption.startswith("first person in a")
    assert WORLD_SIZE == (32, 32, 32)


def test_a_model_of_blockworld_steps_as_an_env_that_sb3_ppo_trains_in(tmp_path: Path, one_thread) -> None:
    """Its MultiDiscrete actions reach the DiT as one-hots; the model env passes check_env and PPO runs unmodified."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    from worldsim.data.collect import CollectConfig, collect

    root = tmp_path / "blockworld"
    collect(
        CollectConfig(
            env="worldsim/BlockWorld-v0", episodes=2, max_steps=6, policy="scripted", progress=False, out=str(root)
        )
    )
    model_file = build_model_file(root, tmp_path / "model.pt")
    env = gymnasium.make(
        "worldsim/WorldModel-v0",
        checkpoint=str(model_file),
        context_frames=2,
        horizon=8,
        observation="latent",  # no decoding per step: the test is about actions
        device="cpu",
    )
    assert env.action_space == gymnasium.spaces.MultiDiscrete([3, 3, 2, 3, 3, 3, 5])
    check_env(env.unwrapped, skip_render_check=True)
    stepped = []
    for action in (np.zeros(7, np.int64), np.zeros(7, np.int64), np.array([1, 0, 0, 2, 0, 0, 0])):
        env.reset(seed=0)
        stepped.append(env.step(action)[0])
    assert stepped[0].shape == (4, 8, 8) and np.array_equal(stepped[0], stepped[1])  # same seed, same action
    assert not np.array_equal(stepped[0], stepped[2])  # another action alone changes the frame
    agent = PPO("MlpPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    agent.learn(16)
    assert agent.num_timesteps == 16


@pytest.mark.slow
def test_sb3_ppo_trains_unmodified_in_the_shipped_blockworld_reference(one_thread) -> None:
    """The reference's model env, seen in pixels as the real world is, with a CNN policy."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import PPO

    env = gymnasium.make(
        "worldsim/WorldModel-v0", checkpoint=str(worldsim.reference_checkpoint("blockworld")), horizon=8, device="cpu"
    )
    assert env.action_space == gymnasium.spaces.MultiDiscrete([3, 3, 2, 3, 3, 3, 5])
    assert env.observation_space.shape == (64, 64, 3)
    agent = PPO("CnnPolicy", env, n_steps=16, batch_size=16, n_epochs=1, seed=0, device="cpu")
    agent.learn(16)
    assert agent.num_timesteps == 16
