"""WorldModel and WorldBatch: loading exports, the uint8 boundary, rollout vs stepping, bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from worldsim.checkpoint import CheckpointError, dataset_meta, export_modules, weights_digest
from worldsim.data.collect import CollectConfig, collect
from worldsim.data.dataset import EpisodeDataset
from worldsim.models.actions import action_fields
from worldsim.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from worldsim.models.dit import VideoDiT, VideoDiTConfig
from worldsim.models.text import ByteTokenizer, TextEncoder, TextEncoderConfig, WordTokenizer
from worldsim.sampling import SamplingConfig
from worldsim.world_batch import WorldBatch
from worldsim.world_model import ResidualAnchor, WorldModel

WINDOW = 3  # max_frames 4: rollouts below run past it, so the cache slides


def build_model_file(
    root: Path,
    out: Path,
    seed: int = 0,
    dynamics: dict | None = None,
    dit: dict | None = None,
    text: dict | None = None,
) -> Path:
    """A tiny model file of the real export format for the world recorded in ``root``; ``dit`` and
    ``text`` override VideoDiTConfig and TextEncoderConfig fields (a memory model's window and
    slots, a tokenizer).

    Weights are random but nudged off adaLN-Zero's exact zeros, so frames depend on the context,
    the actions and the noise the way a trained model's do (a fresh DiT predicts zero velocity).
    """
    torch.manual_seed(seed)
    meta = dataset_meta(root)
    autoencoder = FrameAutoencoder(AutoencoderConfig(base_channels=8, num_groups=4, latent_channels=4))
    network = VideoDiT(
        VideoDiTConfig(
            latent_channels=4,
            latent_size=8,
            width=32,
            depth=1,
            heads=2,
            text_width=32,
            head_width=32,
            **{"max_frames": WINDOW + 1, **(dit or {})},
            **action_fields(meta["action_space"]),
        )
    )
    text_encoder = TextEncoder(
        TextEncoderConfig(**{"width": 32, "depth": 1, "heads": 2, "max_length": 32, **(text or {})})
    )
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return export_modules(
        out, network, text_encoder, autoencoder, {**meta, "latent_channels": 4, "latent_size": 8}, dynamics
    )


@pytest.fixture(scope="module")
def one_thread():
    # Two cores shared with other jobs: a second intra-op thread only spins against them.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def physics(tmp_path_factory: pytest.TempPathFactory, one_thread) -> tuple[Path, Path]:
    """(dataset, model file) of worldsim/Physics-v0."""
    root = tmp_path_factory.mktemp("world") / "physics"
    collect(
        CollectConfig(
            env="worldsim/Physics-v0", episodes=2, max_steps=8, policy="scripted", progress=False, out=str(root)
        )
    )
    return root, build_model_file(root, root.parent / "model.pt")


@pytest.fixture
def model(physics: tuple[Path, Path]) -> WorldModel:
    return WorldModel.from_checkpoint(physics[1], device="cpu")


def clip(root: Path, frames: int) -> tuple[np.ndarray, np.ndarray, str]:
    episode = EpisodeDataset(root, verify=False).episode(0)
    return episode.frames[None, :frames], episode.actions[None, : frames - 1], episode.caption


def test_from_checkpoint_rebuilds_the_world_and_refuses_other_files(physics, model, tmp_path: Path) -> None:
    from gymnasium import spaces

    assert model.env_id == "worldsim/Physics-v0"
    assert model.action_space == spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert model.frame_shape == (64, 64, 3) and model.latent_shape == (4, 8, 8)
    assert model.window(model.default_sampling) == WINDOW
    assert not model.dit.training and not any(p.requires_grad for p in model.dit.parameters())

    export = torch.load(physics[1], weights_only=True)
    no_dit = {**export, "weights": {k: v for k, v in export["weights"].items() if k != "dit"}}
    no_dit["worldsim"] = {**export["worldsim"], "weights_sha256": weights_digest(no_dit["weights"])}
    torch.save(no_dit, tmp_path / "no_dit.pt")
    with pytest.raises(CheckpointError, match=r"holding parts \['autoencoder', 'text'\].*pass the <run>/model.pt"):
        WorldModel.from_checkpoint(tmp_path / "no_dit.pt")
    wider = {
        **export,
        "worldsim": {
            **export["worldsim"],
            "configs": {**export["worldsim"]["configs"], "dit": {**export["worldsim"]["configs"]["dit"], "width": 64}},
        },
    }
    torch.save(wider, tmp_path / "wider.pt")
    with pytest.raises(CheckpointError, match="do not fit this worldsim's networks"):
        WorldModel.from_checkpoint(tmp_path / "wider.pt")
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="no 'worldsim' record"):
        WorldModel.from_checkpoint(tmp_path / "foreign.pt")


def with_text_config(path: Path, out: Path, change) -> Path:
    """A copy of model file ``path`` whose text encoder config is ``change(config)``."""
    export = torch.load(path, weights_only=True)
    configs = export["worldsim"]["configs"]
    record = {**export["worldsim"], "configs": {**configs, "text": change(dict(configs["text"]))}}
    torch.save({**export, "worldsim": record}, out)
    return out


def test_a_model_file_keeps_its_tokenizer_and_an_unknown_one_is_refused(physics, tmp_path: Path) -> None:
    words = WorldModel.from_checkpoint(build_model_file(physics[0], tmp_path / "words.pt", text={"tokenizer": "words"}))
    assert isinstance(words.text_encoder.tokenizer, WordTokenizer)
    ids, _ = words.text_encoder.tokenizer.encode(["a red ball"], 8)
    assert ids[0, :5].tolist() == [1, *(WordTokenizer().word_id(w) for w in ("a", "red", "ball")), 2]
    # Files written before the field existed read bytes, as they were trained to.
    older = with_text_config(
        physics[1], tmp_path / "older.pt", lambda text: {k: v for k, v in text.items() if k != "tokenizer"}
    )
    assert isinstance(WorldModel.from_checkpoint(older).text_encoder.tokenizer, ByteTokenizer)
    unknown = with_text_config(physics[1], tmp_path / "unknown.pt", lambda text: {**text, "tokenizer": "pickle"})
    with pytest.raises(CheckpointError, match="tokenizer 'pickle' is not one of"):
        WorldModel.from_checkpoint(unknown)


def test_encode_and_decode_take_uint8_hwc_frames(physics, model, monkeypatch) -> None:
    frames, _, _ = clip(physics[0], 3)  # (1, 3, 64, 64, 3)
    latents = model.encode(frames)
    assert latents.shape == (1, 3, 4, 8, 8) and latents.dtype == torch.float32
    assert torch.equal(model.encode(torch.from_numpy(frames)), latents)
    # torch warns on a read-only array once a process, so check what it would be handed
    handed, as_tensor = [], torch.as_tensor
    monkeypatch.setattr(
        torch, "as_tensor", lambda data, *args, **kwargs: handed.append(data) or as_tensor(data, *args, **kwargs)
    )
    frames.flags.writeable = False  # as a dataset's memory-mapped clips come
    assert torch.equal(model.encode(frames), latents)
    assert handed and all(array.flags.writeable for array in handed if isinstance(array, np.ndarray))
    monkeypatch.undo()
    decoded = model.decode(latents)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    with pytest.raises(ValueError, match=r"float32 \(1, 3, 64, 64, 3\); this model reads uint8"):
        model.encode(frames.astype(np.float32))
    with pytest.raises(ValueError, match=r"reads uint8 \(\.\.\., 64, 64, 3\)"):
        model.encode(np.moveaxis(frames, -1, 2))  # CHW is not accepted


def test_stepping_with_the_kv_cache_equals_a_rollout_with_the_same_seed(physics, model) -> None:
    context, horizon = 2, 6  # 8 frames through a 3-frame window
    frames, _, caption = clip(physics[0], context)
    actions = np.random.default_rng(0).uniform(-1, 1, (1, context + horizon - 1, 3)).astype(np.float32)
    expected, out = model.rollout(frames, actions, caption, horizon, seed=7, return_latents=True)
    assert expected.shape == (1, horizon, 64, 64, 3) and expected.dtype == np.uint8

    batch = WorldBatch(model)
    first = batch.start(frames, actions[:, : context - 1], caption, seed=7)
    assert np.array_equal(first.frames, frames[:, -1])
    stepped = [batch.step(actions[:, context - 1 + h]) for h in range(horizon)]
    latents = torch.stack([s.latents for s in stepped], dim=1)
    torch.testing.assert_close(latents, out.latents, rtol=1e-5, atol=1e-5)
    assert np.abs(np.stack([s.frames for s in stepped], 1).astype(int) - expected).max() <= 1
    torch.testing.assert_close(torch.from_numpy(np.stack([s.reward for s in stepped], 1)), out.reward)
    # Different actions give a different world: the model is conditioned on them.
    moved = model.rollout(frames, -actions, caption, horizon, seed=7, return_latents=True)[1].latents
    assert not torch.allclose(moved, out.latents)


def test_generated_noise_sets_the_tau_of_the_models_own_frames_only(physics, model, tmp_path: Path) -> None:
    import shutil

    from worldsim.checkpoint import set_default_sampling

    context, horizon = 2, 4
    frames, _, caption = clip(physics[0], context)
    actions = np.random.default_rng(1).uniform(-1, 1, (1, context + horizon - 1, 3)).astype(np.float32)

    def latents(**sampling) -> torch.Tensor:
        _, out = model.rollout(frames, actions, caption, horizon, seed=5, sampling=sampling, return_latents=True)
        return out.latents

    default = latents()
    assert torch.equal(latents(generated_noise=model.context_noise), default)
    noisier = latents(generated_noise=0.5)
    # The first frame reads only the real context, written as before; every later one reads generated frames.
    assert torch.equal(noisier[:, 0], default[:, 0])
    assert all(not torch.allclose(noisier[:, h], default[:, h]) for h in range(1, horizon))

    batch = WorldBatch(model, {"generated_noise": 0.5})
    batch.start(frames, actions[:, : context - 1], caption, seed=5)
    stepped = torch.stack([batch.step(actions[:, context - 1 + h]).latents for h in range(horizon)], dim=1)
    torch.testing.assert_close(stepped, noisier, rtol=1e-5, atol=1e-5)
    path = Path(shutil.copy(physics[1], tmp_path / "model.pt"))
    set_default_sampling(path, generated_noise=0.5)  # a model file can record it
    carrying = WorldModel.from_checkpoint(path, device="cpu")
    recorded = carrying.rollout(frames, actions, caption, horizon, seed=5, return_latents=True)[1].latents
    assert torch.equal(recorded, noisier)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=rf"generated_noise={bad} is not in \(0, 1\]"):
            model.rollout(frames, actions, caption, horizon, sampling={"generated_noise": bad})


def test_residual_decoding_keeps_the_real_pixels_the_model_leaves_unchanged(physics, model) -> None:
    context, horizon = 2, 3
    frames, _, caption = clip(physics[0], context)
    actions = np.zeros((1, context + horizon - 1, 3), np.float32)
    direct, out = model.rollout(
        frames, actions, caption, horizon, seed=3, sampling={"residual": False}, return_latents=True
    )
    assert np.array_equal(direct, model.decode(out.latents))
    residual = model.rollout(frames, actions, caption, horizon, seed=3)
    last = frames[:, -1].astype(int)
    offset = last - model.decode(model.encode(frames[:, -1])).astype(int)
    assert np.array_equal(residual, np.clip(direct.astype(int) + offset[:, None], 0, 255))
    # A future latent equal to the context's decodes to the real context frame, not its approximation.
    same = model.decode(model.encode(frames[:, -1])).astype(int) + offset
    assert np.array_equal(np.clip(same, 0, 255), last)
    # The stepped API decodes the same way; rows imagined from text have no real frame and decode directly.
    batch = WorldBatch(model)
    batch.start(frames, None, caption, seed=3)
    stepped = batch.step(actions[:, context - 1])
    assert np.array_equal(stepped.frames, np.clip(model.decode(stepped.latents).astype(int) + offset, 0, 255))
    batch.start(None, None, ["a red ball"], seed=0)
    imagined = batch.step(np.zeros((1, 3), np.float32))
    assert np.array_equal(imagined.frames, model.decode(imagined.latents))


def test_min_change_keeps_the_real_pixel_where_the_decoded_change_is_small(physics, model) -> None:
    real = torch.full((2, 2, 2, 3), 100, dtype=torch.int16)
    direct = ResidualAnchor.direct(2, (2, 2))  # rows with no real frame (imagined from text)
    anchor = direct.replaced(torch.tensor([0]), ResidualAnchor(real[:1], real[:1] - 4, torch.tensor([True])))
    assert not direct.anchored.any()  # replaced() leaves the original as it was
    decoded = (real - 4).to(torch.uint8)
    decoded[:, 0, 0] += torch.tensor([3, 0, 0], dtype=torch.uint8)  # a faint change: kept only with min_change 0
    decoded[:, 0, 1] += torch.tensor([3, 40, 0], dtype=torch.uint8)  # one channel changes a lot: kept
    exact = anchor.frames(decoded)
    assert exact.dtype == torch.uint8
    assert exact[0, 0, 0].tolist() == [103, 100, 100] and exact[0, 0, 1].tolist() == [103, 140, 100]
    banded = anchor.frames(decoded, min_change=3)
    assert banded[0, 0, 0].tolist() == [100, 100, 100] and banded[0, 0, 1].tolist() == [103, 140, 100]
    assert torch.equal(banded[0, 1], real[0, 1].to(torch.uint8))  # unchanged pixels stay the real ones either way
    assert torch.equal(banded[1], decoded[1])  # a row without a real frame decodes directly
    restarted = anchor.replaced(torch.tensor([1]), ResidualAnchor(real[:1] + 50, real[:1] - 4, torch.tensor([True])))
    assert restarted.anchored.all() and torch.equal(restarted.frames(decoded)[0], exact[0])
    assert restarted.frames(decoded)[1, 0, 0].tolist() == [153, 150, 150]  # row 1 now adds to its new frame
    assert restarted.frames(decoded, min_change=3)[1, 0, 0].tolist() == [150, 150, 150]

    # Every change is at most 255 levels: the whole rollout is the last context frame, stepped or not.
    frames, _, caption = clip(physics[0], 2)
    actions = np.zeros((1, 4, 3), np.float32)
    still = model.rollout(frames, actions, caption, 3, seed=3, sampling={"min_change": 255})
    assert np.array_equal(still, np.repeat(frames[:, -1:], 3, axis=1))
    batch = WorldBatch(model, SamplingConfig(min_change=255))
    batch.start(frames, actions[:, :1], caption, seed=3)
    assert np.array_equal(batch.step(actions[:, 1]).frames, frames[:, -1])
    with pytest.raises(ValueError, match=r"min_change=256 is not in \[0, 255\]"):
        model.rollout(frames, actions, caption, 3, sampling={"min_change": 256})


def test_cache_memory_stays_bounded_by_the_window(physics, model) -> None:
    frames, actions, caption = clip(physics[0], 3)
    batch = WorldBatch(model, {"window": 2})
    batch.start(np.repeat(frames, 2, 0), np.repeat(actions, 2, 0), caption, seed=0)
    sizes = []
    for _ in range(30):
        batch.step(np.zeros((2, 3), np.float32), decode=False)
        sizes.append(batch.cache_bytes())
        assert batch.cache.frames == 2
    assert len(set(sizes)) == 1  # flat: 2 frames x 64 tokens x keys and values, whatever the step
    assert batch.cache.next_position == 3 + 30


def test_restarting_some_rows_keeps_the_others_cached_frames(physics, model) -> None:
    frames, actions, caption = clip(physics[0], WINDOW)
    batch = WorldBatch(model)
    with pytest.raises(RuntimeError, match="call start"):
        batch.restart([0], frames, None, caption)
    batch.start(np.repeat(frames, 3, 0), np.repeat(actions, 3, 0), caption, seed=1)
    batch.step(np.zeros((3, 3), np.float32))
    before = [k.clone() for k in batch.cache.keys]
    other, other_actions, _ = clip(physics[0], WINDOW + 2)
    first = batch.restart(np.array([0, 1, 0], bool), other[:, 2:], other_actions[:, 2:], ["a new episode"])
    assert np.array_equal(first.frames[0], other[0, -1])
    assert batch.cache.frames == WINDOW and batch.size == 3
    for old, new in zip(before, batch.cache.keys):
        assert torch.equal(old[[0, 2]], new[[0, 2]])  # the running rows keep every cached key
        assert not torch.allclose(old[1], new[1])
    torch.testing.assert_close(batch.latents[1], model.encode(other[0, -1]), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"rows selects 2 rows but the context holds 1"):
        batch.restart([0, 2], frames, None, caption)


def test_text_only_reset_imagines_its_first_frames(model) -> None:
    batch = WorldBatch(model)
    first = batch.start(None, None, ["a red ball bounces", "a blue box"], imagine=2, seed=0)
    assert first.frames.shape == (2, 64, 64, 3) and batch.cache.frames == 2 and batch.size == 2
    out = batch.step(np.zeros((2, 3), np.float32))
    assert out.frames.shape == (2, 64, 64, 3) and out.reward.shape == out.terminated.shape == (2,)


def test_a_model_file_can_carry_the_sampling_it_is_stepped_with(physics, model, tmp_path: Path) -> None:
    import shutil

    from worldsim.checkpoint import set_default_sampling
    from worldsim.envs.world_model import WorldModelEnv

    path = Path(shutil.copy(physics[1], tmp_path / "model.pt"))
    with pytest.raises(ValueError, match="stepz"):
        set_default_sampling(path, stepz=2)  # refused before the file is touched
    before = path.read_bytes()
    set_default_sampling(path, steps=2, warm_start=0.0)
    assert abs(path.stat().st_size - len(before)) < 1024  # the weights are kept as stored
    carrying = WorldModel.from_checkpoint(path, device="cpu")
    assert (carrying.default_sampling.steps, carrying.default_sampling.warm_start) == (2, 0.0)

    frames, actions, caption = clip(physics[0], 6)
    context, actions = frames[:, :3], actions[:, :5]
    assert np.array_equal(
        carrying.rollout(context, actions, caption, 3, seed=0),
        model.rollout(context, actions, caption, 3, seed=0, sampling={"steps": 2, "warm_start": 0.0}),
    )
    assert np.array_equal(
        carrying.rollout(context, actions, caption, 3, seed=0, sampling={"steps": 1, "warm_start": 0.3}),
        model.rollout(context, actions, caption, 3, seed=0),
    )  # what a caller sets wins
    assert WorldModelEnv(carrying).batch.sampling.steps == 2
    assert WorldModelEnv(carrying, sampling={"steps": 1}).batch.sampling.steps == 1

    set_default_sampling(path)  # no fields: back to SamplingConfig's defaults
    assert WorldModel.from_checkpoint(path, device="cpu").default_sampling == model.default_sampling


def test_an_invalid_recorded_sampling_is_refused_with_the_fix(physics, tmp_path: Path) -> None:
    checkpoint = torch.load(physics[1], weights_only=True)
    checkpoint["worldsim"]["sampling"] = {"steps": 0}
    torch.save(checkpoint, tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match=r"default sampling \{'steps': 0\} is invalid.*set_default_sampling"):
        WorldModel.from_checkpoint(tmp_path / "model.pt", device="cpu")


def test_batches_on_one_model_step_independently(physics, model) -> None:
    frames, actions, caption = clip(physics[0], 2)
    zero = np.zeros((1, 3), np.float32)
    alone = WorldBatch(model)
    alone.start(frames, actions, caption, seed=5)
    expected = [alone.step(zero).latents.clone() for _ in range(3)]

    first, second = WorldBatch(model), WorldBatch(model, {"steps": 2})
    first.start(frames, actions, caption, seed=5)
    second.start(frames[:, :1], None, "another world", seed=9)
    for latents in expected:  # interleaved with another batch on the same weights, the first is unchanged
        second.step(zero)
        torch.testing.assert_close(first.step(zero).latents, latents, rtol=0, atol=0)
    assert second.sampling.steps == 2 and first.sampling.steps == model.default_sampling.steps


def test_sampling_settings_are_checked_once_with_the_rule() -> None:
    with pytest.raises(ValueError, match=r"steps=0 is not in \[1, 64\]; warm_start=1.0 is not in \[0, 1\)"):
        SamplingConfig(steps=0, warm_start=1.0)
    with pytest.raises(ValueError, match=r"sampling has no fields \['stepz'\]"):
        SamplingConfig.of({"stepz": 2})
    assert SamplingConfig(steps=2).over(SamplingConfig(steps=1, sampler="heun")) == SamplingConfig(
        steps=2, sampler="heun"
    )
    assert SamplingConfig(steps=2, cfg_text=3.0).given() == {"steps": 2, "cfg_text": 3.0}


@pytest.mark.slow
def test_inference_imports_no_lightning_and_no_training_code() -> None:
    import subprocess
    import sys

    code = (
        "import sys, worldsim; worldsim.WorldModel; worldsim.WorldBatch; import worldsim.envs.world_model; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lightning' or m.startswith('worldsim.training')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
