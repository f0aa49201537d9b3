"""Latent cache: round trip, reuse, staleness; LatentClipDataModule: shapes, split, alignment."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worldsim.data.collect import CollectConfig, collect
from worldsim.data.dataset import EpisodeDataset
from worldsim.data.latents import LatentCache, LatentCacheError, cache_latents
from worldsim.models.autoencoder import AutoencoderConfig, FrameAutoencoder
from worldsim.training.autoencoder_module import AutoencoderStageConfig
from worldsim.training.datamodules import FrameDataModule, LatentClipDataConfig, LatentClipDataModule

STEPS = 12  # steps per episode: 13 frames


def tiny_autoencoder(seed: int, dataset: Path) -> FrameAutoencoder:
    torch.manual_seed(seed)
    ae = FrameAutoencoder(
        AutoencoderConfig(base_channels=8, channel_multipliers=(1, 1, 2, 2), latent_channels=4, num_groups=4)
    ).eval()
    frames = torch.from_numpy(np.array(EpisodeDataset(dataset).episode(0).frames)).permute(0, 3, 1, 2)
    with torch.no_grad():
        ae.set_latent_statistics(ae.encode(frames.float() / 127.5 - 1).mean)
    return ae


def record(out: Path, episodes: int) -> Path:
    collect(
        CollectConfig(
            env="worldsim/Physics-v0",
            episodes=episodes,
            max_steps=STEPS,
            shard_episodes=2,
            progress=False,
            out=str(out),
        )
    )
    return out


def interrupt_after_first_shard(root: Path) -> None:
    """Leave ``root`` as a collection killed after committing its first shard leaves it."""
    manifest = json.loads((root / "manifest.json").read_text())
    for shard in manifest["shards"][1:]:
        shutil.rmtree(root / shard["name"])
    manifest["shards"] = manifest["shards"][:1]
    lengths = manifest["shards"][0]["lengths"]
    manifest.update(episodes=len(lengths), steps=sum(lengths), frames=sum(lengths) + len(lengths))
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record(tmp_path_factory.mktemp("physics") / "data", 4)


def test_cached_latents_equal_direct_encoding(dataset: Path) -> None:
    ae = tiny_autoencoder(0, dataset)
    path = Path(cache_latents(str(dataset), ae, batch_size=5))
    assert path.parent == dataset and path.name.startswith("latents-")
    cache = LatentCache(path, verify=True)
    episodes = EpisodeDataset(dataset)
    assert cache.latent_shape == (4, 8, 8) and len(cache) == len(episodes) == 4
    for index in range(len(episodes)):
        frames = torch.from_numpy(np.array(episodes.episode(index).frames)).permute(0, 3, 1, 2)
        direct = ae.encode_frames(frames)  # (L+1, C, h, w)
        cached = torch.from_numpy(cache.clip(index, 0, STEPS + 1).astype(np.float32))
        assert cached.shape == direct.shape
        torch.testing.assert_close(cached, direct, atol=2e-3, rtol=1e-3)  # float16 storage
    meta = cache.meta()
    assert meta["latent_channels"] == 4 and meta["latent_size"] == 8
    assert meta["action_space"]["type"] == "Box" and meta["env_id"] == "worldsim/Physics-v0"
    stats = json.loads((path / "manifest.json").read_text())["statistics"]
    assert np.allclose(stats["mean"], 0, atol=0.5) and np.allclose(stats["std"], 1, atol=0.5)


def test_second_call_is_a_no_op(dataset: Path) -> None:
    ae = tiny_autoencoder(0, dataset)
    path = Path(cache_latents(str(dataset), ae))
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    assert cache_latents(str(dataset), ae) == str(path)
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


def test_another_autoencoder_gets_its_own_cache_or_rebuilds_an_explicit_one(dataset: Path, tmp_path: Path) -> None:
    first, second = tiny_autoencoder(0, dataset), tiny_autoencoder(1, dataset)
    assert cache_latents(str(dataset), first) != cache_latents(str(dataset), second)
    out = tmp_path / "cache"
    cache_latents(str(dataset), first, out=str(out))
    with pytest.warns(UserWarning, match="another autoencoder"):
        cache_latents(str(dataset), second, out=str(out))
    frames = torch.from_numpy(np.array(EpisodeDataset(dataset).episode(1).frames)).permute(0, 3, 1, 2)
    cached = torch.from_numpy(LatentCache(out).clip(1, 0, STEPS + 1).astype(np.float32))
    torch.testing.assert_close(cached, second.encode_frames(frames), atol=2e-3, rtol=1e-3)


def test_decoder_changes_keep_the_cache(dataset: Path) -> None:
    ae = tiny_autoencoder(0, dataset)
    path = cache_latents(str(dataset), ae)
    with torch.no_grad():
        ae.decoder.conv_out.bias.add_(1.0)
    assert cache_latents(str(dataset), ae) == path


@pytest.mark.filterwarnings("ignore:.*planned episodes")
def test_a_grown_dataset_is_stale_until_recached_and_only_new_shards_are_encoded(tmp_path: Path) -> None:
    root = record(tmp_path / "data", 4)
    interrupt_after_first_shard(root)
    ae = tiny_autoencoder(0, root)
    path = Path(cache_latents(str(root), ae))
    first_shard = path / "shard-00000.npy"
    written = first_shard.stat().st_mtime_ns
    record(root, 4)  # the same command resumes the collection: one new shard
    module = LatentClipDataModule(LatentClipDataConfig(root=str(root), latents=str(path), clip_length=4))
    with pytest.raises(LatentCacheError, match="stale"):
        module.setup("fit")
    assert cache_latents(str(root), ae) == str(path)
    assert first_shard.stat().st_mtime_ns == written  # reused, not re-encoded
    assert sorted(p.name for p in path.glob("shard-*.npy")) == ["shard-00000.npy", "shard-00001.npy"]
    assert len(LatentCache(path)) == 4


def test_a_damaged_cache_is_refused_and_rebuilt(dataset: Path, tmp_path: Path) -> None:
    ae = tiny_autoencoder(0, dataset)
    out = tmp_path / "cache"
    cache_latents(str(dataset), ae, out=str(out))
    with open(out / "shard-00001.npy", "ab") as f:
        f.write(b"junk")
    with pytest.raises(LatentCacheError, match="damaged"):
        LatentCache(out)
    cache_latents(str(dataset), ae, out=str(out))
    LatentCache(out, verify=True)


def test_a_foreign_directory_is_refused(dataset: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(LatentCacheError, match="not latent-cache files"):
        cache_latents(str(dataset), tiny_autoencoder(0, dataset), out=str(tmp_path))


def test_clips_have_latents_the_autoencoder_stage_split_and_aligned_steps(dataset: Path) -> None:
    ae = tiny_autoencoder(0, dataset)
    cfg = LatentClipDataConfig(
        root=str(dataset),
        latents=cache_latents(str(dataset), ae),
        clip_length=6,
        batch_size=4,
        val_fraction=0.25,
        rollout_clips=2,
        rollout_length=20,
    )
    module = LatentClipDataModule(cfg)
    module.setup("fit")
    frames_module = FrameDataModule(str(dataset), AutoencoderStageConfig(val_fraction=0.25), seed=0)
    frames_module.setup("fit")
    assert np.array_equal(module.val_set.indices, frames_module.val_set.indices)  # stage 1 held out the same episodes
    assert np.array_equal(module.train_set.indices, frames_module.train_set.indices)
    # A clip may end on the final frame: L + 2 - T starts per episode of L steps.
    assert len(module.train_set) == len(module.train_set.indices) * (STEPS + 2 - 6)

    batch = next(iter(module.train_dataloader()))
    assert batch["latents"].shape == (4, 6, 4, 8, 8) and batch["latents"].dtype == torch.float32
    assert batch["actions"].shape == (4, 6, 3) and batch["rewards"].shape == (4, 6)
    assert batch["terminated"].dtype == torch.bool and len(batch["caption"]) == 4 and "frames" not in batch
    episodes = EpisodeDataset(dataset)
    for k in range(4):
        episode, start = int(batch["episode"][k]), int(batch["start"][k])
        steps = episodes.episode(episode)
        assert episode in module.train_set.indices
        n = min(6, STEPS - start)
        assert np.array_equal(batch["actions"][k, :n].numpy(), steps.actions[start : start + n])
        assert np.array_equal(batch["rewards"][k, :n].numpy(), steps.rewards[start : start + n])
        assert torch.isnan(batch["rewards"][k, n:]).all() and not batch["terminated"][k, n:].any()

    loaders = module.val_dataloader()
    assert len(loaders) == 2
    rollout_batch = next(iter(loaders[1]))
    assert rollout_batch["latents"].shape[:2] == (1, STEPS + 1)  # cut to what the val episode holds
    assert rollout_batch["frames"].shape == (1, STEPS + 1, 3, 64, 64)
    final = module.train_set[len(module.train_set) - 1]
    assert final["start"] == STEPS + 1 - 6 and final["steps"] == 5
    assert module.meta["latent_channels"] == 4


def test_start_prob_draws_clips_from_their_episodes_first_frame(dataset: Path) -> None:
    latents = cache_latents(str(dataset), tiny_autoencoder(0, dataset))

    def starts(start_prob: float) -> np.ndarray:
        cfg = LatentClipDataConfig(
            root=str(dataset), latents=latents, clip_length=4, batch_size=64, start_prob=start_prob
        )
        module = LatentClipDataModule(cfg)
        module.setup("fit")
        return next(iter(module.train_dataloader()))["start"].numpy()

    # STEPS + 2 - 4 = 10 starts an episode: 1 clip in 10 starts at frame 0 when drawn uniformly.
    assert (starts(1.0) == 0).all()
    assert 0.4 < (starts(0.5) == 0).mean() < 0.8
    assert (starts(0.0) == 0).mean() < 0.3
    with pytest.raises(ValueError, match="start_prob"):
        LatentClipDataConfig(root="unused", start_prob=1.5)


def test_missing_cache_path_is_explained(dataset: Path) -> None:
    with pytest.raises(ValueError, match="cache_latents"):
        LatentClipDataModule(LatentClipDataConfig(root=str(dataset))).setup("fit")


def test_batches_are_pinned_by_default_only_where_cuda_is() -> None:
    config = LatentClipDataConfig(root="unused")
    assert LatentClipDataModule(config).pin_memory == torch.cuda.is_available()
    for setting in (True, False):
        assert LatentClipDataModule(dataclasses.replace(config, pin_memory=setting)).pin_memory is setting


def test_a_latent_shard_changed_in_place_is_refused_by_default_and_the_message_repairs_it(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worldsim.data import checksums

    monkeypatch.setattr(checksums, "SETTLED_NS", 0)  # remember results, so .verified.json is written into the cache
    ae = tiny_autoencoder(0, dataset)
    out = tmp_path / "cache"
    cache_latents(str(dataset), ae, out=str(out))
    monkeypatch.setattr(checksums, "_hashed", {})  # a new run
    LatentCache(out)
    assert (out / checksums.VERIFIED_NAME).is_file()
    shard = out / "shard-00001.npy"
    time.sleep(0.05)  # past the filesystem's timestamp tick
    latents = np.load(shard)
    with open(shard, "r+b") as handle:  # same size, other finite values
        np.save(handle, latents + np.float16(1))
    with pytest.raises(
        LatentCacheError, match=rf"{shard} does not match the sha256 .*delete {shard} and run cache_latents"
    ):
        LatentCache(out)
    shard.unlink()
    cache_latents(str(dataset), ae, out=str(out))  # the cache's own .verified.json is not a foreign file
    LatentCache(out)
