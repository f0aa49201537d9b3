"""`worldsim generate` and `WorldModel.generate`: seeded videos from text (alone or after a context),
one noise stream per seed, the files it writes read back, prompts files, and one-line refusals."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_play import gif_frames, mp4_frames
from test_world_model import WINDOW, build_model_file, clip, one_thread, physics  # noqa: F401  (fixtures)

from worldsim.generate import GenerateConfig, every_kth, generate
from worldsim.world_model import MAX_GENERATED_FRAMES, WorldModel

PROMPTS = ["a red ball is dropped", "a blue box slides to the left"]
FRAMES, SCALE = 5, 2
BAND = 12 + 4 * SCALE  # the title band over every video frame


@pytest.fixture(scope="module")
def model(physics) -> WorldModel:
    return WorldModel.from_checkpoint(physics[1], device="cpu")


def config(physics, out: Path, **overrides) -> GenerateConfig:
    cfg = GenerateConfig(
        checkpoint=str(physics[1]), prompt=PROMPTS[0], frames=FRAMES, n=2, scale=SCALE, progress=False, out=str(out)
    )
    return dataclasses.replace(cfg, **overrides)


def test_a_seed_fixes_the_video_whatever_is_generated_beside_it(model) -> None:
    videos = model.generate(PROMPTS, FRAMES, n=3, seed=5)
    assert videos.shape == (6, FRAMES, 64, 64, 3) and videos.dtype == np.uint8
    assert np.array_equal(videos, model.generate(PROMPTS, FRAMES, n=3, seed=5))
    # Row i * n + j is prompt i with seed seed + j, drawn from its own noise: alone, in a batch of
    # one, or in batches of another size it is the same video.
    alone = model.generate(PROMPTS[1], FRAMES, n=1, seed=6)[0]
    assert np.abs(videos[4].astype(int) - alone).max() <= 1
    assert np.abs(videos - model.generate(PROMPTS, FRAMES, n=3, seed=5, batch_size=4).astype(int)).max() <= 1
    # Other seeds are other samples; other prompts other videos.
    assert np.abs(videos[0].astype(int) - videos[1]).mean() > 0.5
    assert np.abs(videos[0].astype(int) - videos[3]).mean() > 0.5


def test_a_context_is_continued_with_its_actions(physics, model) -> None:
    frames, actions, caption = clip(physics[0], WINDOW)
    context, context_actions = frames[0], actions[0]
    future = np.zeros((FRAMES, 3), np.float32)
    video = model.generate(caption, FRAMES, seed=1, context=context, actions=np.concatenate([context_actions, future]))
    # The same as a rollout of that context with row 0's own noise stream.
    rolled = model.rollout(
        context[None],
        np.concatenate([context_actions, future])[None],
        [caption],
        FRAMES,
        generator=[model.generator(1)],
    )
    assert np.array_equal(video, rolled)
    # Without actions every one is the zero action, between the context frames too; the context matters.
    zeros = np.zeros((WINDOW - 1 + FRAMES, 3), np.float32)
    assert np.array_equal(
        model.generate(caption, FRAMES, seed=1, context=context), model.generate(caption, FRAMES, 1, 1, context, zeros)
    )
    assert np.abs(video.astype(int) - model.generate(caption, FRAMES, seed=1)).mean() > 0.5


def test_the_command_writes_videos_sheets_and_a_manifest_per_prompt(physics, model, tmp_path: Path) -> None:
    prompts_file = tmp_path / "prompts.txt"
    prompts_file.write_text(f"{PROMPTS[0]}\n\n  {PROMPTS[1]}  \n")
    result = generate(config(physics, tmp_path / "out", prompt=None, prompts_file=str(prompts_file), seed=3))
    assert result.prompts == PROMPTS and result.seeds == [3, 4]
    assert np.array_equal(result.videos, model.generate(PROMPTS, FRAMES, n=2, seed=3))

    manifest = json.loads(result.manifest.read_text())
    assert manifest["checkpoint_sha256"] == hashlib.sha256(physics[1].read_bytes()).hexdigest()
    assert manifest["sampling"] == model.default_sampling.given() and manifest["context"] == "none"
    assert [entry["prompt"] for entry in manifest["prompts"]] == PROMPTS
    root = result.manifest.parent
    for i, entry in enumerate(manifest["prompts"]):
        assert [v["seed"] for v in entry["videos"]] == [3, 4]
        for j, video in enumerate(entry["videos"]):
            gif = gif_frames(root / video["gif"])
            assert len(gif) == FRAMES and gif[0].shape == (BAND + 64 * SCALE, 64 * SCALE, 3)
            # Below the title band: the frame itself, enlarged (a GIF palette may shift a colour slightly).
            shown = gif[-1][BAND::SCALE, ::SCALE].astype(int)
            assert np.abs(shown - result.videos[2 * i + j, -1]).mean() < 8
            assert len(mp4_frames(root / video["mp4"])) == FRAMES
        sheet = np.asarray(Image.open(root / entry["sheet"]))
        columns = -(-FRAMES // 4)  # every 4th frame
        assert sheet.shape[0] > 2 * 64 * SCALE and sheet.shape[1] == 64 + columns * (64 * SCALE + 2) - 2


def test_a_dataset_or_real_env_context_starts_every_video(physics, model, tmp_path: Path) -> None:
    frames, _, caption = clip(physics[0], 2)
    result = generate(
        config(physics, tmp_path / "d", n=1, context="dataset", dataset=str(physics[0]), episode=0, context_frames=2)
    )
    manifest = json.loads(result.manifest.read_text())
    assert manifest["context_caption"] == caption and manifest["context_frames"] == 2
    real = generate(config(physics, tmp_path / "e", n=1, context="env", context_frames=2))
    assert json.loads(real.manifest.read_text())["context_caption"].startswith("a")
    assert not np.array_equal(result.videos, real.videos)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"prompt": "  "}, "prompt is empty"),
        ({"prompts_file": "x.txt"}, "exactly one of them"),
        ({"prompt": None, "prompts_file": "nowhere.txt"}, "prompts_file nowhere.txt does not exist"),
        ({"checkpoint": "missing.pt"}, "checkpoint missing.pt does not exist"),
        ({"context": "video"}, "context='video' is not one of"),
        ({"context": "dataset"}, "context=dataset needs dataset="),
        ({"frames": MAX_GENERATED_FRAMES + 1}, f"at most {MAX_GENERATED_FRAMES} frames"),
        ({"context": "env", "context_frames": WINDOW + 1}, f"at most {WINDOW} past frames"),
    ],
)
def test_settings_that_cannot_generate_are_refused_in_one_line(physics, tmp_path, overrides, message) -> None:
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        generate(config(physics, tmp_path, **overrides))
    assert "\n" not in str(error.value)


def test_sizes_are_checked_when_the_config_is_built(physics, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="frames=0: it must be at least 1"):
        config(physics, tmp_path, frames=0)


def test_a_model_that_never_read_captions_is_refused(physics, tmp_path: Path) -> None:
    untexted = build_model_file(physics[0], tmp_path / "untexted.pt", dynamics={"flow": {"text_drop_prob": 1.0}})
    with pytest.raises(ValueError, match="trained with every caption dropped"):
        generate(config(physics, tmp_path, checkpoint=str(untexted)))


def test_the_cli_generates_and_reports_a_bad_prompt_in_one_line(physics, tmp_path: Path) -> None:
    def run(*overrides: str) -> subprocess.CompletedProcess[str]:
        args = ["generate", f"checkpoint={physics[1]}", "frames=2", "n=1", "progress=false", "out=out", *overrides]
        return subprocess.run(
            [sys.executable, "-m", "worldsim.cli", *args], cwd=tmp_path, capture_output=True, text=True
        )

    ok = run(f"prompt='{PROMPTS[0]}'", "sampling.cfg_text=2")
    assert ok.returncode == 0, ok.stderr
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["sampling"]["cfg_text"] == 2.0
    assert len(gif_frames(tmp_path / "out" / manifest["prompts"][0]["videos"][0]["gif"])) == 2
    bad = run("prompt=''")
    assert bad.returncode == 1
    assert (
        bad.stderr.splitlines()[0]
        == "worldsim generate: error: prompt is empty: give the caption to imagine, e.g. prompt='a red ball is dropped'"
    )


def test_the_contact_sheet_says_which_frames_it_shows_in_english() -> None:
    said = [every_kth(k) for k in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101)]
    assert said == [
        "every frame",
        "every 2nd frame",
        "every 3rd frame",
        "every 4th frame",
        "every 11th frame",
        "every 12th frame",
        "every 13th frame",
        "every 21st frame",
        "every 22nd frame",
        "every 23rd frame",
        "every 101st frame",
    ]
