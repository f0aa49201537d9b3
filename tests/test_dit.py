"""VideoDiT: shapes, adaLN-Zero start, block-causality, and KV-cached rollout equal to recomputation."""

from __future__ import annotations

import pytest
import torch

from worldsim.models import DIT_PRESETS, TextCondition, VideoDiT, VideoDiTConfig


def tiny_config(**overrides) -> VideoDiTConfig:
    base = dict(
        latent_channels=4,
        latent_size=4,
        width=64,
        depth=2,
        heads=4,
        max_frames=8,
        action_dim=3,
        text_width=32,
        head_width=32,
    )
    return VideoDiTConfig(**{**base, **overrides})


def randomized(cfg: VideoDiTConfig, seed: int = 0) -> VideoDiT:
    """A model with every weight random, so no zero-initialised path hides a bug."""
    torch.manual_seed(seed)
    model = VideoDiT(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model


def inputs(cfg: VideoDiTConfig, B: int = 2, T: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    S = cfg.latent_size
    latents = torch.randn(B, T, cfg.latent_channels, S, S, generator=g)
    noise_level = torch.rand(B, T, generator=g)
    if cfg.action_kind == "discrete":
        actions = torch.randint(0, cfg.num_actions, (B, T), generator=g)
    else:
        actions = torch.randn(B, T, cfg.action_dim, generator=g)
    action_mask = torch.rand(B, T, generator=g) > 0.3
    action_mask[:, 0] = False
    L = 6
    text_mask = torch.arange(L)[None] < torch.tensor([[L], [3]])[:B]
    text = TextCondition(
        torch.randn(B, L, cfg.text_width, generator=g), text_mask, torch.randn(B, cfg.text_width, generator=g)
    )
    return latents, noise_level, actions, action_mask, text


@pytest.mark.parametrize("kind", ["continuous", "discrete"])
def test_output_shapes(kind: str) -> None:
    cfg = tiny_config(action_kind=kind, num_actions=5, patch_size=2)
    model = randomized(cfg)
    latents, noise_level, actions, action_mask, text = inputs(cfg)
    velocity, reward, termination = model(latents, noise_level, actions, action_mask, text, return_heads=True)
    assert velocity.shape == latents.shape
    assert reward.shape == termination.shape == (2, 5)
    assert torch.isfinite(velocity).all()
    assert model(latents, noise_level).shape == latents.shape  # no actions, no text


def test_presets_build_with_their_sizes() -> None:
    with torch.device("meta"):  # count without allocating
        sizes = {name: VideoDiT(VideoDiTConfig.preset(name, action_dim=2)).num_params() for name in DIT_PRESETS}
    assert 1e6 < sizes["tiny"] < 4e6
    assert 15e6 < sizes["small"] < 35e6
    assert sizes["base"] > 4 * sizes["small"]
    with pytest.raises(ValueError, match="not one of"):
        VideoDiTConfig.preset("huge")


def test_adaln_zero_makes_blocks_identity_and_output_zero() -> None:
    cfg = tiny_config()
    model = VideoDiT(cfg)
    latents, noise_level, actions, action_mask, text = inputs(cfg)
    assert torch.equal(model(latents, noise_level, actions, action_mask, text), torch.zeros_like(latents))
    x = torch.randn(2, 5, cfg.tokens_per_frame, cfg.width)
    c = torch.randn(2, 5, cfg.width)
    text_tokens, text_mask = torch.randn(2, 3, cfg.width), torch.ones(2, 3, dtype=torch.bool)
    cos, sin = torch.ones(5 * cfg.tokens_per_frame, 8), torch.zeros(5 * cfg.tokens_per_frame, 8)
    for block in model.blocks:
        assert torch.equal(block(x, c, text_tokens, text_mask, cos, sin, None, None, 0, False), x)


def test_block_causal_future_frames_never_change_the_past() -> None:
    cfg = tiny_config()
    model = randomized(cfg)
    latents, noise_level, actions, action_mask, text = inputs(cfg, T=6)
    before = model(latents, noise_level, actions, action_mask, text, return_heads=True)
    latents[:, 3:] += 5 * torch.randn_like(latents[:, 3:])
    noise_level[:, 4] = 0.123
    actions[:, 5] += 1
    after = model(latents, noise_level, actions, action_mask, text, return_heads=True)
    for old, new in zip(before, after):
        torch.testing.assert_close(new[:, :3], old[:, :3], rtol=0, atol=1e-6)
        assert (new[:, 3:] - old[:, 3:]).abs().max() > 1e-2 * old.abs().max()


def test_text_changes_output_and_all_false_mask_means_no_text() -> None:
    cfg = tiny_config()
    model = randomized(cfg)
    latents, noise_level, actions, action_mask, text = inputs(cfg)
    without = model(latents, noise_level, actions, action_mask, None)
    blank = TextCondition(text.tokens, torch.zeros_like(text.mask), text.pooled)
    torch.testing.assert_close(model(latents, noise_level, actions, action_mask, blank), without, rtol=1e-4, atol=1e-4)
    assert (model(latents, noise_level, actions, action_mask, text) - without).abs().max() > 1e-2


def test_kv_cache_equals_full_recompute() -> None:
    cfg = tiny_config()
    model = randomized(cfg)
    latents, noise_level, actions, action_mask, text = inputs(cfg, T=6)
    full, full_reward, full_term = model(latents, noise_level, actions, action_mask, text, return_heads=True)
    cache = model.new_cache()
    # Two context frames written at once, then one frame at a time, as a rollout does.
    written = model(
        latents[:, :2], noise_level[:, :2], actions[:, :2], action_mask[:, :2], text, cache=cache, update_cache=True
    )
    torch.testing.assert_close(written, full[:, :2], rtol=0, atol=1e-5)
    for t in range(2, 6):
        step = (
            latents[:, t : t + 1],
            noise_level[:, t : t + 1],
            actions[:, t : t + 1],
            action_mask[:, t : t + 1],
            text,
        )
        for _ in range(2):  # denoising steps read the cache without changing it
            velocity, reward, term = model(*step, cache=cache, return_heads=True)
            torch.testing.assert_close(velocity, full[:, t : t + 1], rtol=0, atol=1e-5)
            torch.testing.assert_close(reward, full_reward[:, t : t + 1], rtol=0, atol=1e-5)
            torch.testing.assert_close(term, full_term[:, t : t + 1], rtol=0, atol=1e-5)
        model(*step, cache=cache, update_cache=True)
        assert cache.frames == t + 1


def test_sliding_window_drops_old_frames_and_matches_recompute_over_window() -> None:
    cfg = tiny_config()
    model = randomized(cfg)
    window, T = 3, 9
    latents, noise_level, actions, action_mask, text = inputs(cfg, T=T)
    cache = model.new_cache(window=window)
    N = cfg.tokens_per_frame
    for t in range(T):
        step = (
            latents[:, t : t + 1],
            noise_level[:, t : t + 1],
            actions[:, t : t + 1],
            action_mask[:, t : t + 1],
            text,
        )
        cached = model(*step, cache=cache, update_cache=True)
        lo = max(0, t - window)  # the frame and the `window` frames before it, recomputed from scratch
        recomputed = model(
            latents[:, lo : t + 1], noise_level[:, lo : t + 1], actions[:, lo : t + 1], action_mask[:, lo : t + 1], text
        )[:, -1:]
        torch.testing.assert_close(cached, recomputed, rtol=0, atol=1e-5)
        assert cache.keys[0].shape[2] == min(t + 1, window) * N  # memory bounded by the window
    # Writing the whole clip at once applies the same window frame by frame.
    at_once = model.new_cache(window=window)
    model(latents, noise_level, actions, action_mask, text, cache=at_once, update_cache=True)
    assert (at_once.frames, at_once.next_position) == (cache.frames, cache.next_position) == (window, T)
    for layer in range(cfg.depth):
        torch.testing.assert_close(at_once.keys[layer], cache.keys[layer], rtol=0, atol=1e-5)
        torch.testing.assert_close(at_once.values[layer], cache.values[layer], rtol=0, atol=1e-5)
    # A full forward over a long clip uses the same window (max_frames - 1 past frames).
    long_cfg = tiny_config(max_frames=window + 1)
    long_model = randomized(long_cfg)
    full = long_model(latents, noise_level, actions, action_mask, text)
    last = long_model(
        latents[:, -window - 1 :],
        noise_level[:, -window - 1 :],
        actions[:, -window - 1 :],
        action_mask[:, -window - 1 :],
        text,
    )
    torch.testing.assert_close(full[:, -1], last[:, -1], rtol=0, atol=1e-5)


def test_actions_condition_only_where_masked_in() -> None:
    cfg = tiny_config(action_kind="discrete", num_actions=4)
    model = randomized(cfg)
    latents, noise_level, actions, action_mask, text = inputs(cfg)
    base = model(latents, noise_level, actions, action_mask, text)
    changed = actions.clone()
    changed[~action_mask] = (changed[~action_mask] + 1) % 4
    torch.testing.assert_close(model(latents, noise_level, changed, action_mask, text), base)
    changed[action_mask] = (changed[action_mask] + 1) % 4
    assert (model(latents, noise_level, changed, action_mask, text) - base).abs().max() > 1e-2
