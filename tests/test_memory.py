"""World memory: the bank's rule, training equal to stepping, bounded cost, the off switch, model files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_dit import inputs, randomized, tiny_config
from test_world_model import build_model_file, clip

from worldsim.checkpoint import load_checkpoint
from worldsim.data.collect import CollectConfig, collect
from worldsim.flow import FlowMatching, FlowMatchingConfig, write_frames
from worldsim.models.dit import CleanHistory, VideoDiT
from worldsim.models.kv_cache import KVCache
from worldsim.models.memory import MemoryKVCache, dropped_slot, memory_visibility
from worldsim.models.rope import rope_frequencies, rotate
from worldsim.training.dynamics_module import DynamicsConfig, MemoryConfig, build_networks, networks_of
from worldsim.world_batch import WorldBatch
from worldsim.world_model import WorldModel

MEMORY = dict(max_frames=14, attention_window=3, memory_slots=2)


def stepped(model: VideoDiT, cache: KVCache, latents, noise_level, actions, action_mask, text) -> torch.Tensor:
    """Velocity of every frame written one at a time through ``cache``, as a rollout writes them."""
    out = []
    for t in range(latents.shape[1]):
        cache.observe(latents[:, t : t + 1])
        frame = (latents[:, t : t + 1], noise_level[:, t : t + 1], actions[:, t : t + 1], action_mask[:, t : t + 1])
        out.append(model(*frame, text, cache=cache, update_cache=True))
    return torch.cat(out, dim=1)


def test_a_full_bank_drops_an_empty_slot_first_then_the_older_of_the_closest_pair() -> None:
    keys = torch.tensor([[[0.0, 0.0], [5.0, 5.0], [0.1, 0.0]], [[0.0, 0.0], [5.0, 5.0], [0.1, 0.0]]])
    positions = torch.tensor([[3, 7, 9], [9, 7, 3]])
    valid = torch.tensor([[True, True, True], [True, True, True]])
    # Slots 0 and 2 are the closest pair: row 0 drops slot 0 (position 3), row 1 slot 2 (position 3).
    assert dropped_slot(keys, positions, valid).tolist() == [0, 2]
    valid[1, 1] = False
    assert dropped_slot(keys, positions, valid).tolist() == [0, 1]


def test_a_clip_sees_only_frames_past_its_window_at_most_slots_of_them_and_keeps_a_rare_view() -> None:
    B, T, window, slots = 1, 20, 3, 2
    latents = torch.zeros(B, T, 4, 2, 2)
    latents[:, 0] = 3.0  # a view seen once, then a still scene with faint noise
    latents[:, 1:] += 0.01 * torch.randn(B, T - 1, 4, 2, 2, generator=torch.Generator().manual_seed(0))
    visible = memory_visibility(latents, window, slots)
    assert visible.shape == (B, T, T)
    query, key = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    assert not visible[:, key >= query - window].any()  # the window and the future are the mask's job
    assert visible.sum(-1).max() == slots
    assert visible[0, window + 1 :, 0].all()  # the rare view is never the one dropped
    assert visible[0, window + 1].nonzero().flatten().tolist() == [0]


@pytest.mark.parametrize("offset", [0, 4, 9])  # 0: the clip's longest; 4: just past the 3-frame window
def test_stepping_with_memory_equals_the_full_clip_forward_training_sees(offset: int) -> None:
    model = randomized(tiny_config(**MEMORY, memory_offset=offset))
    latents, noise_level, actions, action_mask, text = inputs(model.cfg, T=14)
    full = model(latents, noise_level, actions, action_mask, text, memory_from=latents)
    cache = model.new_cache()
    assert isinstance(cache, MemoryKVCache)
    torch.testing.assert_close(
        stepped(model, cache, latents, noise_level, actions, action_mask, text), full, rtol=0, atol=1e-5
    )
    # The memory is read: without it every frame past the first window + 1 changes, none before.
    without = stepped(model, model.new_cache(memory=False), latents, noise_level, actions, action_mask, text)
    window = model.cfg.window
    torch.testing.assert_close(without[:, : window + 1], full[:, : window + 1], rtol=0, atol=1e-5)
    assert (without[:, window + 1 :] - full[:, window + 1 :]).flatten(2).abs().amax(
        -1
    ).min() > 5e-5  # float noise is ~1e-7
    with pytest.raises(ValueError, match="memory_from"):
        model(latents, noise_level, actions, action_mask, text)


@pytest.mark.parametrize("config", [MEMORY, dict(max_frames=14, attention_window=3), dict(max_frames=14)])
def test_with_a_clean_history_each_frame_sees_what_a_rollout_wrote_before_it(config) -> None:
    model = randomized(tiny_config(**config))
    latents, noise_level, actions, action_mask, text = inputs(model.cfg, T=14)
    clean = torch.randn(latents.shape, generator=torch.Generator().manual_seed(1))
    history = CleanHistory(clean, torch.full_like(noise_level, 0.9))
    memory = {"memory_from": clean} if model.remembers else {}
    full = model(latents, noise_level, actions, action_mask, text, history=history, **memory)
    cache, out = model.new_cache(), []
    for t in range(latents.shape[1]):
        now = slice(t, t + 1)
        out.append(model(latents[:, now], noise_level[:, now], actions[:, now], action_mask[:, now], text, cache=cache))
        cache.observe(clean[:, now])
        model(
            clean[:, now],
            history.noise_level[:, now],
            actions[:, now],
            action_mask[:, now],
            text,
            cache=cache,
            update_cache=True,
        )
    torch.testing.assert_close(torch.cat(out, dim=1), full, rtol=0, atol=1e-5)
    # Without it, frames see the noisy frames before them: every frame but the first changes.
    noisy = model(latents, noise_level, actions, action_mask, text, **memory)
    torch.testing.assert_close(noisy[:, :1], full[:, :1], rtol=0, atol=1e-5)
    assert (noisy[:, 1:] - full[:, 1:]).flatten(2).abs().amax(-1).min() > 5e-5


def test_remembered_frames_read_as_at_most_the_memory_offset_back() -> None:
    model = randomized(tiny_config(**MEMORY))
    near = VideoDiT(dataclasses.replace(model.cfg, memory_offset=4)).eval()
    near.load_state_dict(model.state_dict())
    latents, noise_level, actions, action_mask, text = inputs(model.cfg, T=14)
    far_out = model(latents, noise_level, actions, action_mask, text, memory_from=latents)
    near_out = near(latents, noise_level, actions, action_mask, text, memory_from=latents)
    # Frame 4 first remembers frame 0, 4 back; from frame 5 on, remembered frames are more than 4 back.
    torch.testing.assert_close(near_out[:, :5], far_out[:, :5], rtol=0, atol=1e-6)
    assert (near_out[:, 5:] - far_out[:, 5:]).flatten(2).abs().amax(-1).min() > 2e-6  # float noise is ~1e-7
    with pytest.raises(ValueError, match="memory_offset 3 must be past the window"):
        dataclasses.replace(model.cfg, memory_offset=3)


def test_memory_off_is_the_plain_network_bit_for_bit() -> None:
    memory = randomized(tiny_config(**MEMORY))
    plain = VideoDiT(dataclasses.replace(memory.cfg, memory_slots=0)).eval()
    plain.load_state_dict(memory.state_dict())  # memory adds no weight
    latents, noise_level, actions, action_mask, text = inputs(memory.cfg, T=10)
    assert torch.equal(
        stepped(memory, memory.new_cache(memory=False), latents, noise_level, actions, action_mask, text),
        stepped(plain, plain.new_cache(), latents, noise_level, actions, action_mask, text),
    )
    short = (latents[:, :4], noise_level[:, :4], actions[:, :4], action_mask[:, :4], text)
    assert torch.equal(memory(*short, memory_from=latents[:, :4]), plain(*short))


def test_keys_moved_in_time_are_the_keys_of_the_later_frame() -> None:
    freqs = rope_frequencies(16, 100.0)
    x = torch.randn(1, 2, 3, 16)

    def at(frames: float) -> tuple[torch.Tensor, torch.Tensor]:
        angles = (torch.full((3, 1), frames, dtype=torch.float64) * freqs).float()
        return angles.cos(), angles.sin()

    torch.testing.assert_close(rotate(rotate(x, *at(5)), *at(37)), rotate(x, *at(42)), rtol=0, atol=1e-5)


def test_the_bank_stays_within_its_slots_and_far_frames_sit_at_the_longest_trained_offset() -> None:
    model = randomized(tiny_config(**MEMORY))
    cfg, N = model.cfg, model.cfg.tokens_per_frame
    latents, noise_level, actions, action_mask, text = inputs(cfg, T=1)
    cache = model.new_cache()
    held = []
    for t in range(120):
        g = torch.Generator().manual_seed(t)
        frame = torch.randn(latents.shape, generator=g) * (10.0 if t == 0 else 1.0)  # frame 0: a rare view
        velocity = stepped(model, cache, frame, noise_level, actions, action_mask, text)
        assert torch.isfinite(velocity).all()
        assert cache.frames <= cfg.window and cache.bank_keys[0] is None or cache.bank_keys[0].shape[2] == 2 * N
        held.append(sum(k.numel() for k in cache.keys if k is not None) + cache.bank_bytes())
    assert len(set(held[20:])) == 1  # flat once the window and bank are full
    assert cache.bank_valid.all() and cache.bank_positions.shape == (2, cfg.memory_slots)
    newest = cache.next_position
    mask = cache.with_memory(None, newest, 1, N)
    assert mask.shape == (2, 1, N, (cfg.memory_slots + cfg.window + 1) * N)
    # A slot far in the past is read as if it were max_frames - 1 frames back, never further.
    oldest = int(cache.bank_positions.min())
    assert newest - oldest > cfg.max_frames
    slot = int((cache.bank_positions[0] == cache.bank_positions[0].min()).nonzero()[0])
    shift = newest - (cfg.max_frames - 1) - int(cache.bank_positions[0, slot])
    angles = (torch.full((N, 1), float(shift), dtype=torch.float64) * rope_frequencies(16, cfg.rope_base)).float()
    moved = rotate(cache.bank_keys[0][:1, :, slot * N : (slot + 1) * N], angles.cos(), angles.sin())
    torch.testing.assert_close(cache._memory[0][0][:1, :, slot * N : (slot + 1) * N], moved, rtol=0, atol=1e-5)


def test_write_frames_feeds_the_bank_for_every_guidance_pass() -> None:
    from worldsim.flow import guidance_passes

    model = randomized(tiny_config(**MEMORY))
    latents, _, actions, action_mask, text = inputs(model.cfg, T=9)
    passes = guidance_passes(2.0, 1.0, True, True)  # two passes: the cache holds 2 x B rows
    cache = model.new_cache()
    write_frames(model, cache, latents, actions, action_mask, text, passes)
    assert cache.frames == 3 and cache.bank_valid.tolist() == [[True, True], [True, True]]
    assert cache.bank_keys[0].shape[0] == 2 * len(passes)
    assert sorted(cache.bank_positions[0].tolist()) in ([3, 5], [4, 5], [3, 4], [2, 5], [2, 4], [2, 3])


def test_the_training_loss_reads_memory_and_a_plain_network_ignores_it() -> None:
    model = randomized(tiny_config(**MEMORY))
    latents, _, actions, action_mask, text = inputs(model.cfg, T=14)
    flow = FlowMatching(FlowMatchingConfig(context_prob=1.0))
    loss, _ = flow.loss(model, latents, actions, action_mask, text, generator=torch.Generator().manual_seed(0))
    plain = VideoDiT(dataclasses.replace(model.cfg, memory_slots=0)).eval()
    plain.load_state_dict(model.state_dict())
    same, _ = flow.loss(plain, latents, actions, action_mask, text, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and abs(float(loss) - float(same)) > 1e-5  # float noise is ~1e-7
    # With a clean history the network sees the clip again at the context noise level, seeded like the rest.
    given = []
    model.register_forward_pre_hook(lambda _, args, kwargs: given.append(kwargs["history"]), with_kwargs=True)
    teacher = FlowMatching(FlowMatchingConfig(context_prob=1.0, clean_history=True))
    clean = [
        float(teacher.loss(model, latents, actions, action_mask, text, generator=torch.Generator().manual_seed(0))[0])
        for _ in range(2)
    ]
    assert clean[0] == clean[1] and np.isfinite(clean[0])
    assert (given[0].noise_level == teacher.cfg.context_noise).all()
    assert (given[0].latents - teacher.cfg.context_noise * latents).abs().max() < 0.1 * 6  # 0.1 of a normal draw


def test_the_memory_node_sets_the_network_and_refuses_what_cannot_work() -> None:
    meta = {"latent_channels": 4, "latent_size": 8, "action_space": None}
    cfg = DynamicsConfig(clip_length=32, memory=MemoryConfig(slots=8, window=7))
    dit, _ = build_networks(cfg, meta)
    assert (dit.max_frames, dit.window, dit.memory_slots) == (32, 7, 8)
    off, _ = build_networks(DynamicsConfig(clip_length=32, memory=MemoryConfig(slots=0, window=7)), meta)
    assert (off.window, off.memory_slots) == (7, 0)
    with pytest.raises(ValueError, match="no frame ever leaves the window"):
        build_networks(DynamicsConfig(clip_length=8, memory=MemoryConfig(slots=8)), meta)
    with pytest.raises(ValueError, match="dynamics.memory"):
        DynamicsConfig(dit={"memory_slots": 4})
    with pytest.raises(ValueError, match="dynamics.memory.slots=-1"):
        MemoryConfig(slots=-1)
    assert DynamicsConfig(memory={"slots": 4, "window": 3}).memory == MemoryConfig(4, 3)  # from a model file


@pytest.fixture(scope="module")
def physics_memory(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset, memory model file) of worldsim/Physics-v0: window 3, 2 slots, 8-frame clips."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("world") / "physics"
    collect(
        CollectConfig(
            env="worldsim/Physics-v0", episodes=2, max_steps=12, policy="scripted", progress=False, out=str(root)
        )
    )
    path = build_model_file(
        root, root.parent / "memory.pt", dit={"max_frames": 8, "attention_window": 3, "memory_slots": 2}
    )
    yield root, path
    torch.set_num_threads(threads)


def test_a_model_file_with_memory_round_trips_and_fine_tunes_keep_or_drop_it(physics_memory, tmp_path: Path) -> None:
    root, path = physics_memory
    model = WorldModel.from_checkpoint(path, device="cpu")
    assert (model.dit.cfg.memory_slots, model.dit.cfg.window, model.dit.cfg.max_frames) == (2, 3, 8)
    stored = load_checkpoint(path)
    for name, tensor in model.dit.state_dict().items():
        assert torch.equal(tensor, stored["weights"]["dit"][name].float())
    meta = {"latent_channels": 4, "latent_size": 8, "action_space": stored["worldsim"]["data"]["action_space"]}
    kept, _ = networks_of(stored, meta, 8)
    assert kept == model.dit.cfg
    longer, _ = networks_of(stored, meta, 24, MemoryConfig(slots=4))
    assert (longer.max_frames, longer.window, longer.memory_slots) == (24, 3, 4)
    with pytest.raises(ValueError, match="clip_length=24"):
        networks_of(stored, meta, 24)


def test_rollouts_with_memory_are_seeded_and_the_off_switch_changes_them(physics_memory) -> None:
    root, path = physics_memory
    model = WorldModel.from_checkpoint(path, device="cpu")
    frames, actions, caption = clip(root, 12)
    context, future = frames[:, :2], actions[:, :11]
    first = model.rollout(context, future, caption, 10, seed=4)
    assert np.array_equal(first, model.rollout(context, future, caption, 10, seed=4))
    assert not np.array_equal(first, model.rollout(context, future, caption, 10, seed=5))
    off = model.rollout(context, future, caption, 10, seed=4, sampling={"memory": False})
    window = model.dit.cfg.window  # frames 0 .. window + 1 of the whole sequence see no memory
    assert np.array_equal(off[:, : window + 1 - 2], first[:, : window + 1 - 2])
    assert not np.array_equal(off, first)


def test_stepping_a_memory_model_equals_its_rollout_and_restarts_forget_the_rows(physics_memory) -> None:
    root, path = physics_memory
    model = WorldModel.from_checkpoint(path, device="cpu")
    frames, actions, caption = clip(root, 12)
    rolled, out = model.rollout(frames[:, :2], actions[:, :11], caption, 10, seed=2, return_latents=True)
    batch = WorldBatch(model)
    batch.start(frames[:, :2], actions[:, :1], caption, seed=2)
    for t in range(10):  # as for a plain model: equal up to the float rounding of batched arithmetic
        step = batch.step(actions[:, 1 + t])
        torch.testing.assert_close(step.latents, out.latents[:, t], rtol=1e-5, atol=1e-5)
        assert np.abs(step.frames.astype(int) - rolled[:, t]).max() <= 1
    assert batch.cache.bank_valid.all()
    two = WorldBatch(model)
    two.start(np.repeat(frames[:, :2], 2, 0), np.repeat(actions[:, :1], 2, 0), caption, seed=2)
    for t in range(10):
        two.step(np.repeat(actions[:, 1 + t], 2, 0))
    two.restart([1], frames[:, 5:7], actions[:, 5:6], caption)
    assert two.cache.bank_valid.tolist() == [[True, True], [False, False]]
    assert two.cache.window_frame_keys.shape[1] == two.cache.frames
    two.step(np.repeat(actions[:, 7], 2, 0))


def test_a_checkpoint_written_before_memory_resumes_as_a_network_without_it() -> None:
    from worldsim.training.dynamics_module import DynamicsModule, _plain
    from worldsim.training.optim import OptimConfig

    meta = {"latent_channels": 4, "latent_size": 8, "action_space": None}
    module = DynamicsModule(DynamicsConfig(clip_length=4), OptimConfig(), 10, meta)
    before = {name: _plain(config) for name, config in (("dit", module.dit_config), ("text", module.text_config))}
    for field in ("memory_slots", "attention_window"):
        del before["dit"][field]
    module.on_load_checkpoint({"worldsim": {"dynamics": before}})  # no error: the fields take their defaults
    before["dit"]["width"] += 32
    with pytest.raises(ValueError, match="differs from this run's"):
        module.on_load_checkpoint({"worldsim": {"dynamics": before}})


def test_the_env_bench_times_a_memory_model_and_its_step_cost_and_bank_stay_flat(physics_memory) -> None:
    from worldsim.bench_env import EnvBenchConfig, bench_env

    _, path = physics_memory
    cfg = EnvBenchConfig(checkpoint=str(path), batch_sizes=[1], seconds=0.01, contexts=[8], memory_steps=40)
    report = bench_env(cfg)
    context = report["kv_cache"][0]
    assert context["context"] == 8 and context["cached_step_ms"] > 0 and context["recompute_step_ms"] > 0
    first, last = report["memory"]["cache_mb_first_last"]
    assert 0 < first <= last  # the bank fills, then holds
    assert [s["cache_mb"] for s in report["memory"]["samples"][-3:]] == [last] * 3
    assert set(report["memory"]["step_ms_at_frame"]) == {"16", "40"}
