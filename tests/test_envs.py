"""Ground-truth worlds: Gymnasium compliance, determinism, ground truth that agrees with pixels."""

from __future__ import annotations

import re
import warnings

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import worldsim  # noqa: F401  (registers the ids)
from worldsim.envs.base import SceneEnv
from worldsim.envs.blockworld import BlockWorldEnv
from worldsim.envs.occlusion import OcclusionEnv
from worldsim.envs.orbit import OrbitEnv
from worldsim.envs.physics import PhysicsEnv
from worldsim.envs.policy import Policy
from worldsim.envs.push import GOAL_RADIUS, TABLE_HALF, PushEnv

WORLDS = [PhysicsEnv, PushEnv, OcclusionEnv, OrbitEnv, BlockWorldEnv]
COMMON_STATE_KEYS = {
    "object_id",
    "object_present",
    "object_shape",
    "object_color",
    "object_size",
    "object_mass",
    "object_position",
    "object_orientation",
    "object_linear_velocity",
    "object_angular_velocity",
    "object_centroid",
    "object_pixels",
    "object_visible",
    "camera_view",
    "camera_projection",
    "camera_position",
}


def rollout(env: SceneEnv | BlockWorldEnv, seed: int, steps: int, split: str = "id"):
    """Reset with ``seed`` and run the world's scripted policy; returns frames and infos."""
    observation, info = env.reset(seed=seed, options={"split": split})
    policy = env.scripted_policy()
    policy.reset(seed)
    frames, infos, rewards, terminated = [observation], [info], [], False
    for _ in range(steps):
        observation, reward, terminated, truncated, info = env.step(policy(observation, info))
        frames.append(observation)
        infos.append(info)
        rewards.append(reward)
        if terminated:
            break
    return frames, infos, rewards, terminated


@pytest.fixture(params=WORLDS, ids=lambda cls: cls.__name__)
def env(request):
    env = request.param()
    yield env
    env.close()


@pytest.mark.parametrize("name", ["Physics", "Push", "Occlusion", "Orbit", "BlockWorld"])
def test_check_env_passes_without_warnings(name):
    env = gymnasium.make(f"worldsim/{name}-v0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)
    env.close()


def test_make_registered_ids_after_import():
    env = gymnasium.make("worldsim/Push-v0")
    observation, info = env.reset(seed=3)
    assert observation.shape == (64, 64, 3) and observation.dtype == np.uint8
    assert env.spec.max_episode_steps == 128
    for env_id in ("worldsim/Physics-v0", "worldsim/Occlusion-v0", "worldsim/Orbit-v0"):
        assert gymnasium.spec(env_id).max_episode_steps == 64
    env.close()


def test_info_has_the_same_keys_shapes_and_dtypes_everywhere(env):
    frames, infos, _, _ = rollout(env, seed=0, steps=3)
    k = env.max_objects
    for info in infos:
        assert set(info) == {"caption", "split", "params", "state", "segmentation", "depth"}
        state = info["state"]
        assert COMMON_STATE_KEYS <= set(state)
        assert state["object_position"].shape == (k, 3) and state["object_position"].dtype == np.float32
        assert state["object_centroid"].shape == (k, 2) and state["object_pixels"].dtype == np.int32
        assert state["object_shape"].dtype == np.int8 and state["object_id"].dtype == np.int32
        assert state["camera_view"].shape == (4, 4) and state["camera_projection"].dtype == np.float32
        assert info["segmentation"].shape == (64, 64) and info["segmentation"].dtype == np.int16
        assert info["depth"].shape == (64, 64) and info["depth"].dtype == np.float32
        present = state["object_present"]
        assert (state["object_id"][~present] == -1).all() and (state["object_shape"][~present] == -1).all()
        # Pixel counts are the segmentation's, slot by slot.
        counts = np.bincount(info["segmentation"].ravel(), minlength=k + 1)[1:]
        np.testing.assert_array_equal(counts, state["object_pixels"])
        assert info["segmentation"].max() <= present.sum()
    import json

    json.dumps(infos[0]["params"])  # params must serialize as they are


def test_same_seed_same_episode_different_seed_different(env):
    other = type(env)()
    a_frames, a_infos, _, _ = rollout(env, seed=7, steps=12)
    b_frames, b_infos, _, _ = rollout(other, seed=7, steps=12)
    assert len(a_frames) == len(b_frames)
    for fa, fb, ia, ib in zip(a_frames, b_frames, a_infos, b_infos):
        np.testing.assert_array_equal(fa, fb)
        assert ia["caption"] == ib["caption"] and ia["params"] == ib["params"]
        for key in ia["state"]:
            np.testing.assert_array_equal(ia["state"][key], ib["state"][key])
        np.testing.assert_array_equal(ia["depth"], ib["depth"])
    c_frames, c_infos, _, _ = rollout(other, seed=8, steps=0)
    assert c_infos[0]["params"] != a_infos[0]["params"]
    assert not np.array_equal(c_frames[0], a_frames[0])
    other.close()


@pytest.mark.parametrize("cls", [PhysicsEnv, PushEnv, OrbitEnv], ids=lambda c: c.__name__)
@pytest.mark.parametrize("size", [64, 128])
def test_gt_centroids_match_mask_centroids(cls, size):
    env = cls(width=size, height=size)
    checked = 0
    for seed in range(4):
        _, infos, _, _ = rollout(env, seed=seed, steps=20)
        for info in infos[::4]:
            seg, state = info["segmentation"], info["state"]
            for slot in np.flatnonzero(state["object_visible"]):
                rows, cols = np.nonzero(seg == slot + 1)
                # Fully visible: clear of the border and of every other object's pixels.
                grown = np.zeros_like(seg, dtype=bool)
                grown[max(rows.min() - 2, 0) : rows.max() + 3, max(cols.min() - 2, 0) : cols.max() + 3] = True
                others = (seg != 0) & (seg != slot + 1)
                if rows.min() == 0 or cols.min() == 0 or rows.max() == size - 1 or cols.max() == size - 1:
                    continue
                if (grown & others).any() or len(rows) < 12:
                    continue
                x, y = state["object_centroid"][slot]
                # Perspective shifts a silhouette's centroid off its center's projection by a
                # fixed fraction of the frame, so the 1 px budget at 64x64 scales with the size.
                tolerance = size / 64
                assert abs(cols.mean() - x) <= tolerance and abs(rows.mean() - y) <= tolerance, (seed, slot, x, y)
                checked += 1
    env.close()
    assert checked >= 10


def test_depth_is_metric_distance_along_the_view_axis():
    env = OrbitEnv()
    _, info = env.reset(seed=1)
    state, depth = info["state"], info["depth"]
    view = state["camera_view"].astype(np.float64)
    for slot in np.flatnonzero(state["object_visible"]):
        x, y = np.round(state["object_centroid"][slot]).astype(int)
        center_depth = -(view @ np.r_[state["object_position"][slot], 1.0])[2]
        # The visible surface is in front of the center by at most the object's half-width.
        assert center_depth - 1.8 * state["object_size"][slot] <= depth[y, x] <= center_depth + 0.01
    env.close()


def test_physics_caption_states_what_the_params_say():
    env = PhysicsEnv()
    words = {"sphere": "ball", "box": "box", "cylinder": "cylinder"}
    for seed in range(30):
        _, info = env.reset(seed=seed, options={"split": "ood" if seed % 2 else "id"})
        p, caption = info["params"], info["caption"]
        assert caption.startswith(f"a {p['color'][0]} {words[p['shape'][0]]} ") or caption.startswith(
            f"an {p['color'][0]} {words[p['shape'][0]]} "
        ), caption
        if p["motion"] == "drop":
            assert "dropped" in caption and "to the" not in caption
        else:
            assert f"to the {p['direction'][0]}" in caption
        others = re.search(r"with (\d) other", caption)
        assert (int(others.group(1)) if others else 0) == p["count"] - 1
        assert ("very bouncy" in caption) == (p["restitution"][0] >= 0.7)
        # The caption's color is the color slot 0 really has.
        from worldsim.envs.colors import COLORS

        np.testing.assert_allclose(info["state"]["object_color"][0], COLORS[p["color"][0]], atol=1e-6)
    env.close()


@pytest.mark.parametrize("cls", [OcclusionEnv, OrbitEnv, PushEnv], ids=lambda c: c.__name__)
def test_other_captions_name_every_object_color(cls):
    env = cls()
    for seed in range(8):
        _, info = env.reset(seed=seed)
        colors = info["params"]["color"]
        for color in [colors] if isinstance(colors, str) else colors:
            assert color in info["caption"]
        if cls is OcclusionEnv:
            phrase = {
                "pass_behind": "behind a gray wall",
                "occluder_slides": "wall slides",
                "camera_pan": "camera pans",
            }
            assert phrase[info["params"]["mode"]] in info["caption"]
    env.close()


@pytest.mark.parametrize("cls", WORLDS, ids=lambda c: c.__name__)
def test_id_and_ood_parameters_never_overlap(cls):
    env = cls(split="ood")
    seen: dict[str, dict[str, set]] = {"id": {}, "ood": {}}
    for seed in range(40):
        for split in ("id", "ood"):
            _, info = env.reset(seed=seed, options={"split": split})
            assert info["split"] == split
            for name, param in cls.params.items():
                if param.ood is None:
                    continue
                values = info["params"][name]
                for value in values if isinstance(values, list) else [values]:
                    assert param.contains(value, split), (name, value, split)
                    other = "ood" if split == "id" else "id"
                    assert not param.contains(value, other), (name, value, split)
                    seen[split].setdefault(name, set()).add(value)
    for name, values in seen["id"].items():
        assert not values & seen["ood"][name], name
    # Without the option, the constructor's split holds.
    assert env.reset(seed=0)[1]["split"] == "ood"
    env.close()


def test_bad_split_and_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="split 'test' is not one of"):
        PhysicsEnv(split="test")
    env = PhysicsEnv()
    with pytest.raises(ValueError, match="split 'val' is not one of"):
        env.reset(seed=0, options={"split": "val"})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(seed=0, options={"splt": "ood"})
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"is not in Box\(-1.0, 1.0, \(3,\)"):
        env.step(np.array([0.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="be finite"):
        env.step([0.0, np.nan, 0.0])
    env.close()


@pytest.mark.parametrize("size", [32, 128])
def test_frame_size_kwargs(size):
    env = PhysicsEnv(width=size, height=size)
    observation, info = env.reset(seed=0)
    assert observation.shape == (size, size, 3) == env.observation_space.shape
    assert info["segmentation"].shape == info["depth"].shape == (size, size)
    assert env.render().shape == (size, size, 3)
    env.close()


def test_frame_size_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="width=16 is outside 32..256"):
        PhysicsEnv(width=16)
    with pytest.raises(ValueError, match="height=300 is outside 32..256"):
        OrbitEnv(height=300)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"frame_skip": True}, r"frame_skip=True is not an integer but bool"),
        ({"frame_skip": 10**9}, r"frame_skip=1000000000 is outside 1..240"),
        ({"width": 64.0}, r"width=64.0 is not an integer but float"),
        ({"split": np.array(["id"])}, r"split array\(\['id'\].* is not one of"),
        ({"render_mode": np.array(["rgb_array"])}, r"render_mode array\(.* is not supported"),
        ({"start": np.array(["behind", "random"])}, r"start=array\(.* is not one of"),
    ],
)
def test_arguments_that_only_look_right_are_refused_by_name(kwargs, message):
    # Found by tests/test_fuzz.py: a bool frame_skip ran as 1, an array split or render_mode compared
    # elementwise and passed, a huge frame_skip hung every step.
    with pytest.raises(ValueError, match=message):
        PushEnv(**kwargs)


def test_non_square_frames():
    env = OrbitEnv(width=96, height=48)
    observation, info = env.reset(seed=2)
    assert observation.shape == (48, 96, 3) and info["segmentation"].shape == (48, 96)
    env.close()


def test_scripted_policies_follow_the_protocol(env):
    assert isinstance(env.scripted_policy(), Policy)


def test_physics_kick_changes_the_velocity_by_impulse_over_mass():
    env = PhysicsEnv(frame_skip=1)
    _, info = env.reset(seed=5, options={"split": "id"})
    before = info["state"]["object_linear_velocity"][0].copy()
    _, _, _, _, info = env.step(np.array([1.0, 0.0, 0.0], np.float32))
    change = info["state"]["object_linear_velocity"][0] - before
    # One 1/240 s substep of gravity and contact aside, x gains 1 N*s / mass.
    assert change[0] == pytest.approx(1.0 / info["params"]["mass"][0], rel=0.1)
    env.close()


def test_push_scripted_policy_reaches_the_goal_and_is_rewarded():
    env = PushEnv()
    successes = 0
    for seed in range(8):
        _, infos, rewards, terminated = rollout(env, seed=seed, steps=128)
        start = float(infos[0]["state"]["target_goal_distance"])
        end = float(infos[-1]["state"]["target_goal_distance"])
        if terminated and end < 0.05:
            successes += 1
            # Dense progress (10 per meter) plus the success bonus.
            assert sum(rewards) == pytest.approx(10 * (start - end) + 5.0, abs=1e-4)
    assert successes >= 6
    env.close()


def test_push_start_behind_puts_the_pusher_on_the_far_side_of_the_same_scene():
    random_start, behind = PushEnv(), gymnasium.make("worldsim/Push-v0", start="behind")
    for seed in range(6):
        _, info = random_start.reset(seed=seed)
        _, moved = behind.reset(seed=seed)
        target, goal = moved["state"]["object_position"][0, :2], np.array(moved["params"]["goal"])
        assert np.allclose(target, info["state"]["object_position"][0, :2], atol=1e-4)  # same scene, same seed
        assert moved["params"]["goal"] == info["params"]["goal"]
        pusher = moved["state"]["object_position"][1, :2]
        away = (target - goal) / np.linalg.norm(target - goal)
        offset = pusher - target
        assert offset @ away > 0.15 and abs(offset[0] * away[1] - offset[1] * away[0]) < 0.02  # on the line, behind
        # Heading for the goal, from behind, pushes the target onto it.
        for _ in range(40):
            heading = goal - moved["state"]["object_position"][1, :2]
            _, _, terminated, _, moved = behind.step((heading / np.linalg.norm(heading)).astype(np.float32))
            if terminated:
                break
        assert terminated and moved["state"]["target_goal_distance"] < GOAL_RADIUS
    with pytest.raises(ValueError, match="start='front' is not one of"):
        PushEnv(start="front")
    random_start.close()
    behind.close()


def test_push_target_off_the_table_terminates_with_a_penalty():
    env = PushEnv()
    for seed in range(10):
        observation, info = env.reset(seed=seed)
        target = info["state"]["object_position"][0]
        if info["params"]["goal"][0] > target[0]:
            continue  # want the true goal behind us, so success cannot end the episode first
        policy = env.scripted_policy()
        for _ in range(128):
            fake = {**info, "state": {**info["state"], "goal_position": np.array([1.0, target[1], 0.0], np.float32)}}
            observation, reward, terminated, _, info = env.step(policy(observation, fake))
            if terminated:
                break
        assert terminated
        x, y, _ = info["state"]["object_position"][0]
        assert max(abs(x), abs(y)) > TABLE_HALF
        assert reward < -0.5
        env.close()
        return
    pytest.fail("no seed had its goal to the left of the target")


def test_orbit_loops_return_to_the_identical_frame():
    env = OrbitEnv()
    frames, infos, _, _ = rollout(env, seed=4, steps=60)
    poses = [info["state"]["camera_pose"].tobytes() for info in infos]
    closures = 0
    for i in range(len(poses)):
        for j in range(i + 6, len(poses)):
            if poses[i] == poses[j]:
                np.testing.assert_array_equal(frames[i], frames[j])
                np.testing.assert_array_equal(infos[i]["depth"], infos[j]["depth"])
                assert not np.array_equal(frames[i], frames[(i + j) // 2])  # it really moved
                closures += 1
    assert closures >= 2
    env.close()


@pytest.mark.parametrize("mode", ["pass_behind", "occluder_slides", "camera_pan"])
def test_occlusion_objects_disappear_and_come_back(mode):
    env = OcclusionEnv()
    for seed in range(30):
        _, info = env.reset(seed=seed)
        if info["params"]["mode"] != mode:
            continue
        _, infos, _, _ = rollout(env, seed=seed, steps=64)
        present = np.stack([i["state"]["object_present"] for i in infos])  # (T, K)
        visible = np.stack([i["state"]["object_visible"] for i in infos])
        for slot in np.flatnonzero(present[0]):
            hidden = np.flatnonzero(~visible[:, slot])
            assert visible[0, slot], "starts visible"
            assert len(hidden) > 0, f"slot {slot} never hidden in {mode}"
            assert visible[hidden[-1] + 1 :, slot].any(), f"slot {slot} never came back in {mode}"
        env.close()
        return
    pytest.fail(f"no seed in 0..29 drew mode {mode}")


def test_a_new_scene_is_a_few_lines():
    from worldsim.envs.params import Choice, Uniform

    class Tower(SceneEnv):
        """Boxes stacked in a tower that may topple."""

        params = {
            "count": Choice(id=[2, 3], ood=[4]),
            "color": Choice(id=["red", "green", "blue", "yellow"], per_object=True, distinct=True),
            "size": Uniform(id=(0.1, 0.12), ood=[(0.12, 0.15)], per_object=True),
            "lean": Uniform(id=(0.0, 0.03)),
        }
        max_objects = 4

        def build(self, params):
            z = 0.0
            for i in range(params["count"]):
                size = params["size"][i]
                self.add_object("box", size, params["color"][i], (params["lean"] * i, 0.0, z + size), mass=1.0)
                z += 2 * size

    env = Tower()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)  # the render check needs a registered spec
    _, info = env.reset(seed=0, options={"split": "ood"})
    assert info["params"]["count"] == 4 and info["state"]["object_present"].all()
    assert info["caption"].count("box") == 4
    env.close()


def test_rich_captions_say_every_attribute_and_plain_ones_stay_as_they_were():
    plain, rich = PhysicsEnv(), PhysicsEnv(captions="rich")
    phrasings = set()
    for seed in range(40):
        _, before = plain.reset(seed=seed)
        _, info = rich.reset(seed=seed)
        assert info["params"] == before["params"]  # rich words, the same episode
        said, caption = PhysicsEnv.caption_attributes(info["params"]), info["caption"]
        assert f"{said['color']} {'ball' if said['shape'] == 'sphere' else said['shape']}" in caption, caption
        if said["direction"] != "none":
            assert f"to the {said['direction']}" in caption
        for key, words in (("size", ("small", "big")), ("height", ("high", "low"))):
            assert (key in said) == any(w in caption.split() for w in words), caption
        if "start" in said and said["start"] == "centre":
            assert "centre" in caption
        phrasings.add(caption.split()[0])
        _, again = rich.reset(seed=seed)
        assert again["caption"] == caption  # the phrasing is the seed's too
    assert len(phrasings) >= 3  # "a ...", "two objects: ...", "from ..."
    with pytest.raises(ValueError, match="captions='poetic' is not one of"):
        PhysicsEnv(captions="poetic")
    plain.close(), rich.close()


def test_a_start_named_by_height_alone_reads_as_english():
    from worldsim.envs.captions import start_phrase

    assert start_phrase({"height": "high"}) == "from high up"
    assert start_phrase({"height": "low"}) == "from low down"
    assert start_phrase({"height": "low", "start": "left"}) == "from low on the left"
    assert start_phrase({}) == ""


def test_held_out_color_shape_pairs_appear_only_in_ood():
    from worldsim.envs.physics import HELD_OUT

    env = PhysicsEnv(holdout="combinations")
    for seed in range(30):
        _, info = env.reset(seed=seed, options={"split": "id"})
        assert not any(HELD_OUT.held(info["params"]))
        _, info = env.reset(seed=seed, options={"split": "ood"})
        held = HELD_OUT.held(info["params"])
        assert held[0] and not any(held[1:]), info["params"]
        # Unseen combinations of seen values: every value is an id value.
        for name, param in PhysicsEnv.params.items():
            value = info["params"][name]
            assert all(param.contains(v, "id") for v in (value if isinstance(value, list) else [value])), name
    with pytest.raises(ValueError, match="holdout='shapes' is not one of"):
        PhysicsEnv(holdout="shapes")
    env.close()
