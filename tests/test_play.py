"""`worldsim play`: one action drives the model and the real env, the video shows them side by side frame by
frame, play.json is reproducible, the real episode's end, dataset context, keys to actions, clear refusals."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import gymnasium
import numpy as np
import pytest
import torch
from gymnasium import spaces
from PIL import Image
from test_world_model import WINDOW, build_model_file, one_thread, physics  # noqa: F401  (fixtures)

import worldsim  # noqa: F401  (registers the ids)
from worldsim.data.dataset import EpisodeDataset
from worldsim.play import (
    ARROW_CODES,
    PlayConfig,
    PlayResult,
    gui_available,
    key_action,
    play,
    world_keyboard,
    write_mp4,
)
from worldsim.world_batch import WorldBatch
from worldsim.world_model import WorldModel

STEPS, SCALE = 8, 2
PANEL = 64 * SCALE
BAND = 12 + 4 * SCALE  # the title band above the panels


def run(physics, out: Path, **overrides) -> PlayResult:
    cfg = PlayConfig(checkpoint=str(physics[1]), out=str(out), steps=STEPS, scale=SCALE, device="cpu")
    return play(dataclasses.replace(cfg, **overrides))


def gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as image:
        frames = []
        for index in range(image.n_frames):
            image.seek(index)
            frames.append(np.array(image.convert("RGB")))
    return frames


def test_one_action_steps_both_worlds_and_the_gif_shows_them_side_by_side(physics, tmp_path: Path) -> None:
    result = run(physics, tmp_path / "play")
    assert result.video == tmp_path / "play" / "play.gif"
    frames = gif_frames(result.video)
    assert len(frames) == STEPS + 1  # the last context frame, then one per step
    assert frames[0].shape == (BAND + PANEL, 2 * PANEL + 2, 3)  # model | 2-px gutter | real
    # Both start from the same real context frame.
    assert np.array_equal(frames[0][BAND:, :PANEL], frames[0][BAND:, PANEL + 2 :])
    assert np.array_equal(result.model_frames[0], result.real_frames[0])

    # The real half is the env replayed with the recorded actions...
    env = gymnasium.make("worldsim/Physics-v0")
    observation, info = env.reset(seed=0)
    context = [observation]
    for action in result.context_actions:
        context.append(env.step(action)[0])
    assert len(context) == WINDOW and np.array_equal(context[-1], result.real_frames[0])
    for t, action in enumerate(result.actions):
        assert np.array_equal(env.step(action)[0], result.real_frames[t + 1])
    env.close()
    # ...and the model half is the model stepped with the very same actions.
    batch = WorldBatch(WorldModel.from_checkpoint(physics[1], device="cpu"))
    batch.start(np.stack(context)[None], result.context_actions[None], info["caption"], seed=0)
    for t, action in enumerate(result.actions):
        assert np.array_equal(batch.step(action[None]).frames[0], result.model_frames[t + 1])

    record = json.loads(result.log.read_text())
    steps = record["per_step"]
    assert [s["step"] for s in steps] == list(range(1, STEPS + 1))
    assert np.allclose([s["action"] for s in steps], result.actions)
    assert all(0 < s["psnr_db"] < 100 and s["real_reward"] is not None for s in steps)
    summary = record["summary"]
    assert summary["compared_steps"] == STEPS and summary["real_ended_at"] is None
    assert summary["mean_psnr_db"] == pytest.approx(np.mean([s["psnr_db"] for s in steps]))
    assert summary["model_return"] == pytest.approx(sum(s["model_reward"] for s in steps))
    assert summary["real_return"] == pytest.approx(sum(s["real_reward"] for s in steps))


def mp4_frames(path: Path) -> list[np.ndarray]:
    video = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        frames.append(frame)
    video.release()
    return frames


def test_mp4_holds_one_frame_per_step(physics, tmp_path: Path) -> None:
    result = run(physics, tmp_path / "play", format="mp4", policy="scripted")
    frames = mp4_frames(result.video)
    assert result.video.name == "play.mp4" and len(frames) == STEPS + 1
    assert all(frame.shape == (BAND + PANEL, 2 * PANEL + 2, 3) for frame in frames)
    # The codec takes even sides only: odd pictures are padded by a pixel rather than cropped.
    write_mp4(tmp_path / "odd.mp4", [np.full((21, 33, 3), 200, np.uint8)] * 3, fps=5)
    assert [frame.shape for frame in mp4_frames(tmp_path / "odd.mp4")] == [(22, 34, 3)] * 3


def test_the_same_seed_plays_the_same_game(physics, tmp_path: Path) -> None:
    logs = [run(physics, tmp_path / name, seed=seed).log.read_text() for name, seed in (("a", 3), ("b", 3), ("c", 4))]
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]


def test_sampling_settings_change_the_model_frames_only(physics, tmp_path: Path) -> None:
    default = run(physics, tmp_path / "default")
    from_noise = run(physics, tmp_path / "noise", sampling={"steps": 2, "warm_start": 0.0})
    assert json.loads(from_noise.log.read_text())["sampling"]["steps"] == 2
    assert np.array_equal(default.real_frames, from_noise.real_frames)
    assert not np.array_equal(default.model_frames[1:], from_noise.model_frames[1:])


def test_after_the_real_episode_ends_its_last_frame_stays_and_is_not_scored(physics, tmp_path: Path) -> None:
    export = torch.load(physics[1], weights_only=True)
    export["worldsim"]["data"]["env_kwargs"] = {"max_episode_steps": WINDOW + 2}  # 2 context steps + 3 played
    torch.save(export, tmp_path / "short.pt")
    result = run((physics[0], tmp_path / "short.pt"), tmp_path / "play", side_by_side=True)

    record = json.loads(result.log.read_text())
    assert record["summary"]["real_ended_at"] == 3 and record["summary"]["compared_steps"] == 3
    assert [s["real_reward"] is None for s in record["per_step"]] == [False] * 3 + [True] * 5
    assert [s["psnr_db"] is None for s in record["per_step"]] == [False] * 3 + [True] * 5
    assert all(np.array_equal(frame, result.real_frames[3]) for frame in result.real_frames[4:])
    assert len(result.model_frames) == len(gif_frames(result.video)) == STEPS + 1  # the model plays on


def test_side_by_side_false_shows_the_model_alone_but_still_scores_it(physics, tmp_path: Path) -> None:
    result = run(physics, tmp_path / "play", side_by_side=False)
    assert gif_frames(result.video)[0].shape == (BAND + PANEL, PANEL, 3)
    assert json.loads(result.log.read_text())["summary"]["compared_steps"] == STEPS


def test_a_dataset_context_plays_the_model_without_a_real_env(physics, tmp_path: Path) -> None:
    root, _ = physics
    (tmp_path / "push.py").write_text("def push(observation, info):\n    return [0.5, 0.0, -0.5]\n")
    result = run(physics, tmp_path / "play", dataset=str(root), policy=f"{tmp_path / 'push.py'}:push")
    assert result.real_frames is None
    assert gif_frames(result.video)[0].shape == (BAND + PANEL, PANEL, 3)
    assert np.array_equal(result.actions, np.tile(np.float32([0.5, 0.0, -0.5]), (STEPS, 1)))
    episodes = EpisodeDataset(root, verify=False)
    assert any(
        (episodes.episode(i).frames == result.model_frames[0]).all(axis=(1, 2, 3)).any() for i in range(len(episodes))
    )  # the context ends on a real dataset frame
    record = json.loads(result.log.read_text())
    assert record["context"] == "dataset" and record["summary"]["mean_psnr_db"] is None
    assert all(s["real_reward"] is None for s in record["per_step"])

    with pytest.raises(ValueError, match="policy=scripted reads the real env's state"):
        run(physics, tmp_path / "scripted", dataset=str(root), policy="scripted")


def test_keys_map_to_actions_of_the_space() -> None:
    box = spaces.Box(-1.0, 1.0, (3,), np.float32)
    for key, expected in [
        (ARROW_CODES["right"][0], [1, 0, 0]),
        (ord("a"), [-1, 0, 0]),
        (ord("W"), [0, 1, 0]),
        (ARROW_CODES["down"][1], [0, -1, 0]),
        (ord(" "), [0, 0, 0]),
    ]:
        action = key_action(key, box)
        assert action.dtype == np.float32 and action.tolist() == expected
    assert key_action(ord("x"), box) is None and key_action(ord("5"), box) is None
    assert key_action(ord("w"), spaces.Box(-1.0, 1.0, (1,), np.float32)) is None  # no second dimension
    assert key_action(ord("d"), spaces.Box(0.0, 0.5, (2,), np.float32)).tolist() == [0.5, 0.0]  # clipped in

    discrete = spaces.Discrete(3, start=1)
    assert [key_action(ord(k), discrete) for k in "012 "] == [1, 2, 3, 1]
    assert key_action(ord("3"), discrete) is None and key_action(ord("d"), discrete) is None
    with pytest.raises(
        ValueError,
        match="drives Box and Discrete actions, and worlds that declare a KEYBOARD; this model takes MultiDiscrete",
    ):
        key_action(ord(" "), spaces.MultiDiscrete([2, 2]))


def test_keyboard_without_a_window_is_refused_with_the_fix(
    physics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if sys.platform.startswith("linux"):
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        assert not gui_available()
    monkeypatch.setattr("worldsim.play.gui_available", lambda: False)
    with pytest.raises(RuntimeError, match=r"pip install opencv-python`; headless, use policy=random"):
        run(physics, tmp_path / "play", policy="keyboard")
    assert not (tmp_path / "play").exists()


def test_keyboard_keys_drive_both_worlds_until_q(physics, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window itself cannot open here: OpenCV's window calls are stood in for, the loop is real."""
    keys = iter([ARROW_CODES["right"][0], -1, ord("s"), ord("q")])
    shown: list[np.ndarray] = []
    monkeypatch.setattr("worldsim.play.gui_available", lambda: True)
    monkeypatch.setattr(cv2, "namedWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *args: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, picture: shown.append(picture))
    monkeypatch.setattr(cv2, "waitKeyEx", lambda delay: next(keys))
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *args: 1.0)
    result = run(physics, tmp_path / "play", policy="keyboard")
    assert result.actions.tolist() == [[1, 0, 0], [0, 0, 0], [0, -1, 0]]  # right, no key, down; then q
    assert np.array_equal(result.context_actions, np.zeros((WINDOW - 1, 3)))  # the context: the world left alone
    assert len(shown) == 4 and shown[0].shape == (BAND + PANEL, 2 * PANEL + 2, 3)
    assert len(gif_frames(result.video)) == 4


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"checkpoint": "missing/model.pt"}, "checkpoint missing/model.pt does not exist"),
        ({"checkpoint": "."}, r"checkpoint \. is a directory: pass a model file, e.g. model.pt"),
        ({"policy": "greedy"}, "policy='greedy' is unknown: use random, scripted, mixed, keyboard or module:callable"),
        ({"steps": 0}, "steps=0: it must be at least 1"),
        ({"context_frames": 0}, "context_frames=0: it must be at least 1"),
        ({"format": "avi"}, r"format='avi': use one of \['gif', 'mp4'\]"),
        ({"sampling": {"warm_start": 1.0}}, r"warm_start=1.0 is not in \[0, 1\)"),
    ],
)
def test_bad_settings_are_refused_before_any_work(physics, tmp_path: Path, overrides, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(physics, tmp_path / "play", **overrides)
    assert not (tmp_path / "play").exists()


@pytest.mark.slow
def test_play_help_lists_every_option(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "worldsim.cli", "play", "--help"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "worldsim play:" in result.stdout
    for field in dataclasses.fields(PlayConfig):
        assert f"\n  {field.name}=" in result.stdout
    assert "  format=gif\n      gif (needs Pillow) | mp4" in result.stdout


def test_a_world_that_declares_its_keyboard_is_played_by_its_keys() -> None:
    """BlockWorld (MultiDiscrete): WASD walk, arrows look, space jumps, e/r break and place, digits pick a block."""
    space = spaces.MultiDiscrete([3, 3, 2, 3, 3, 3, 5])
    bindings = world_keyboard("worldsim/BlockWorld-v0", space)
    assert key_action(ord("w"), space, bindings).tolist() == [1, 0, 0, 0, 0, 0, 0]
    assert key_action(ARROW_CODES["left"][0], space, bindings).tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert key_action(ord(" "), space, bindings).tolist() == [0, 0, 1, 0, 0, 0, 0]
    assert key_action(ord("e"), space, bindings).tolist() == [0, 0, 0, 0, 0, 1, 0]
    assert key_action(ord("3"), space, bindings).tolist() == [0, 0, 0, 0, 0, 0, 3]
    assert key_action(ord("x"), space, bindings) is None
    assert world_keyboard("worldsim/Push-v0", spaces.Box(-1.0, 1.0, (2,), np.float32)) is None  # the generic keys
    with pytest.raises(ValueError, match=r"BlockWorld-v0's KEYBOARD\['w'\]"):
        world_keyboard("worldsim/BlockWorld-v0", spaces.MultiDiscrete([3, 3]))
