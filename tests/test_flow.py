"""Flow matching: noise levels, the loss learns, samplers integrate exactly, guidance and rollout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from worldsim.flow import (
    WARM_START,
    FlowMatching,
    FlowMatchingConfig,
    guidance_passes,
    integrate,
    rollout,
    sample_next_frame,
    write_frames,
)
from worldsim.models import TextCondition, VideoDiT, VideoDiTConfig


def tiny_model(seed: int = 0, random_weights: bool = True, **overrides) -> VideoDiT:
    base = dict(
        latent_channels=4,
        latent_size=4,
        width=64,
        depth=2,
        heads=4,
        max_frames=8,
        action_kind="discrete",
        num_actions=16,
        text_width=32,
        head_width=32,
    )
    torch.manual_seed(seed)
    model = VideoDiT(VideoDiTConfig(**{**base, **overrides}))
    if random_weights:  # so the zero-initialised output does not make every comparison trivial
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0, 0.05)
    return model.eval()


def some_text(B: int, width: int = 32, seed: int = 0) -> TextCondition:
    g = torch.Generator().manual_seed(seed)
    return TextCondition(
        torch.randn(B, 5, width, generator=g), torch.ones(B, 5, dtype=torch.bool), torch.randn(B, width, generator=g)
    )


def test_noise_levels_context_and_future() -> None:
    g = torch.Generator().manual_seed(0)
    flow = FlowMatching(FlowMatchingConfig(context_prob=1.0, context_noise=0.93))
    tau, context = flow.noise_levels(256, 6, "cpu", g)
    assert tau.shape == context.shape == (256, 6)
    assert context[:, 0].all() and not context[:, -1].any()  # 1 <= k <= T - 1 context frames
    assert (context[:, :-1] >= context[:, 1:]).all()  # context is a prefix
    assert torch.equal(tau[context], torch.full_like(tau[context], 0.93))
    assert ((tau[~context] > 0) & (tau[~context] < 1)).all()
    tau, context = FlowMatching(FlowMatchingConfig(context_prob=0.0, shared_future_noise=True)).noise_levels(
        64, 6, "cpu", g
    )
    assert not context.any() and torch.equal(tau, tau[:, :1].expand(-1, 6))


def test_text_only_clips_are_the_ones_that_start_at_their_episodes_first_frame() -> None:
    g = torch.Generator().manual_seed(0)
    flow = FlowMatching(FlowMatchingConfig(context_prob=0.25, text_only_from_start=True))
    from_start = torch.arange(256) % 2 == 0
    _, context = flow.noise_levels(256, 6, "cpu", g, from_start)
    assert context[~from_start, 0].all()  # a mid-episode clip always sees a real frame first
    text_only = ~context[from_start, 0]
    assert 0.6 < text_only.float().mean() < 0.9  # a clip from the start is text-only as context_prob says
    with pytest.raises(ValueError, match="start frame"):
        flow.noise_levels(4, 6, "cpu", g)
    _, context = FlowMatching(FlowMatchingConfig(context_prob=0.0)).noise_levels(64, 6, "cpu", g, from_start[:64])
    assert not context.any()  # off by default: any clip may be imagined from text alone


def test_loss_ignores_context_frames_and_unknown_rewards() -> None:
    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.v = nn.Parameter(torch.zeros(2, 4, 4, 4, 4))
            self.r = nn.Parameter(torch.zeros(2, 4))

        def forward(self, latents, noise_level, actions, action_mask, text, return_heads):
            return self.v, self.r, torch.zeros_like(self.r)

    model = Constant()
    flow = FlowMatching(FlowMatchingConfig(context_prob=1.0))
    g = torch.Generator().manual_seed(0)
    rewards = torch.tensor([[1.0, float("nan"), 2.0, 3.0]] * 2)
    loss, logs = flow.loss(
        model, torch.randn(2, 4, 4, 4, 4), rewards=rewards, terminated=torch.zeros(2, 4, dtype=torch.bool), generator=g
    )
    loss.backward()
    g = torch.Generator().manual_seed(0)
    _, context = flow.noise_levels(2, 4, "cpu", g)
    assert (model.v.grad[context] == 0).all() and (model.v.grad[~context] != 0).all()
    assert torch.isfinite(model.r.grad).all() and (model.r.grad[~context] == 0).all()
    assert set(logs) == {"loss", "loss_velocity", "loss_reward", "loss_termination", "context_fraction"}
    # Logged terms stay detached scalars on the device: reading them would make every step wait for the GPU.
    assert all(value.ndim == 0 and not value.requires_grad for value in logs.values())


def test_rollout_context_is_the_models_own_warm_started_rollout_from_the_first_real_frames() -> None:
    model = tiny_model()
    B, T = 3, 8
    latents, actions = torch.randn(B, T, 4, 4, 4), torch.randint(0, 16, (B, T))
    text = some_text(B)
    tau = torch.rand(B, T)
    context = torch.ones(B, T, dtype=torch.bool)  # every row a context clip, so every row may be rolled
    flow = FlowMatching(FlowMatchingConfig(rollout_prob=1.0, context_noise=0.93))
    out, out_tau, out_context, rolled = flow.rollout_context(
        model, latents, tau, context, actions, text, torch.Generator().manual_seed(0)
    )
    g = torch.Generator().manual_seed(0)  # the same draws, in the documented order: rows, k, r, rollout
    torch.rand(B, generator=g)
    k = int(torch.randint(2, T, (1,), generator=g))
    r = int(torch.randint(1, k, (1,), generator=g))
    expected = rollout(
        model,
        latents[:, :r],
        actions[:, 1:k],
        text,
        k - r,
        steps=1,
        context_noise=0.93,
        generator=g,
        warm_start=WARM_START,
    ).latents
    assert rolled.all()
    assert torch.equal(out[:, :r], latents[:, :r]) and torch.equal(out[:, k:], latents[:, k:])
    assert torch.allclose(out[:, r:k], expected, atol=1e-6)
    assert (out_context == (torch.arange(T) < k)).all()
    assert (out_tau[out_context] == 0.93).all() and (out_tau[~out_context] < 1).all()


def test_rollout_context_is_off_by_default_and_in_validation() -> None:
    model = tiny_model()
    latents, actions, mask = (
        torch.randn(2, 6, 4, 4, 4),
        torch.randint(0, 16, (2, 6)),
        torch.ones(2, 6, dtype=torch.bool),
    )
    losses = []
    for prob, self_rollout in ((0.0, True), (1.0, False)):
        flow = FlowMatching(FlowMatchingConfig(rollout_prob=prob, context_prob=1.0))
        loss, logs = flow.loss(
            model,
            latents,
            actions,
            mask,
            some_text(2),
            generator=torch.Generator().manual_seed(0),
            self_rollout=self_rollout,
        )
        assert "rollout_fraction" not in logs
        losses.append(loss)
    assert torch.equal(losses[0], losses[1])
    flow = FlowMatching(FlowMatchingConfig(rollout_prob=1.0, context_prob=1.0))
    _, logs = flow.loss(model, latents, actions, mask, some_text(2), generator=torch.Generator().manual_seed(0))
    assert logs["rollout_fraction"] == 1.0


@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_clips() -> None:
    torch.manual_seed(0)
    model = tiny_model(random_weights=False, max_frames=4).train()
    latents = torch.randn(4, 4, 4, 4, 4)  # 4 clips of 4 frames of 4x4x4 latents
    actions = torch.arange(16).view(4, 4)  # every frame identifiable by its action
    mask = torch.ones(4, 4, dtype=torch.bool)
    text = some_text(4)
    flow = FlowMatching(FlowMatchingConfig(text_drop_prob=0.0, action_drop_prob=0.0))
    rewards, terminated = torch.randn(4, 4), torch.rand(4, 4) > 0.5

    def evaluate() -> float:
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return sum(flow.loss(model, latents, actions, mask, text, generator=g)[1]["loss"] for _ in range(16)) / 16

    before = evaluate()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 3x faster than 2 threads for ops this small on a busy machine
    try:
        for _ in range(700):
            loss, logs = flow.loss(model, latents, actions, mask, text, rewards, terminated, generator=g)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    after = evaluate()
    assert after < before / 10, f"velocity loss {before:.3f} -> {after:.3f} fell less than 10x"
    assert logs["loss_reward"] < 0.5 and logs["loss_termination"] < 0.5


def test_samplers_reach_the_target_of_a_perfect_velocity_field() -> None:
    """Data N(mu, s^2) per value: the exact marginal velocity maps noise z to mu + s * z."""
    g = torch.Generator().manual_seed(0)
    mu, s = torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g) + 0.2
    z = torch.randn(3, 4, generator=g)

    def velocity(x: torch.Tensor, tau: float) -> torch.Tensor:
        posterior_mean = mu + tau * s**2 / (tau**2 * s**2 + (1 - tau) ** 2) * (x - tau * mu)
        return (posterior_mean - x) / (1 - tau)

    target = mu + s * z
    for sampler in ("euler", "heun"):  # a point mass (s -> 0) is reached in one step
        point = integrate(lambda x, tau: (mu - x) / (1 - tau), z, 1, sampler)
        torch.testing.assert_close(point, mu)
    euler = (integrate(velocity, z, 8, "euler") - target).abs().max()
    heun = (integrate(velocity, z, 8, "heun") - target).abs().max()
    assert heun < 0.05 and heun < euler / 3, f"Heun error {heun:.4f}, Euler error {euler:.4f}"
    assert (integrate(velocity, z, 64, "euler") - target).abs().max() < euler / 4  # Euler converges


def test_integration_from_a_warm_start_covers_only_the_rest_of_the_way() -> None:
    seen = []

    def velocity(x: torch.Tensor, tau: float) -> torch.Tensor:
        seen.append(round(tau, 6))
        return torch.zeros_like(x)

    integrate(velocity, torch.zeros(2), 4, "heun", start=0.2)
    assert seen == [0.2, 0.4, 0.4, 0.6, 0.6, 0.8, 0.8]  # Heun: 2 * 4 - 1 passes, none at tau = 1
    mu, x = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])
    torch.testing.assert_close(integrate(lambda x, tau: (mu - x) / (1 - tau), x, 1, start=0.6), mu)
    with pytest.raises(AssertionError, match="start"):
        integrate(velocity, x, 1, start=1.0)


def test_warm_start_samples_from_the_previous_frame_noised_to_its_level() -> None:
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    B, T0, w = 2, 3, WARM_START
    context = torch.randn(B, T0, 4, 4, 4, generator=g)
    actions = torch.randint(0, 16, (B, T0 + 1), generator=g)
    action_mask = torch.arange(T0 + 1).expand(B, -1) > 0
    text = some_text(B)
    passes = guidance_passes(1.0, 1.0, True, True)
    cache = model.new_cache()
    write_frames(model, cache, context, actions[:, :T0], action_mask[:, :T0], text, passes, context_noise=1.0)

    def sample(**kwargs) -> torch.Tensor:
        return sample_next_frame(
            model,
            cache,
            B,
            actions[:, T0:],
            action_mask[:, T0:],
            text,
            passes,
            steps=1,
            generator=torch.Generator().manual_seed(7),
            **kwargs,
        )

    warm = sample(previous=context[:, -1], warm_start=w)
    start = w * context[:, -1:] + (1 - w) * torch.randn(B, 1, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    tau = torch.cat([torch.ones(B, T0), torch.full((B, 1), w)], 1)
    with torch.no_grad():
        v = model(torch.cat([context, start], 1), tau, actions, action_mask, text)[:, -1]
    torch.testing.assert_close(warm, start[:, 0] + (1 - w) * v, rtol=0, atol=1e-5)
    # No previous frame, or warm_start 0: sampling from pure noise, as without the option.
    cold = sample()
    assert torch.equal(sample(previous=None, warm_start=w), cold)
    assert torch.equal(sample(previous=context[:, -1], warm_start=0.0), cold)


def test_guidance_passes_merge_absent_conditions_and_skip_unit_scales() -> None:
    assert guidance_passes(1.0, 1.0, True, True) == [(True, True, 1.0)]
    assert guidance_passes(3.0, 2.0, False, True) == [(False, True, 2.0), (False, False, -1.0)]
    assert guidance_passes(3.0, 1.0, True, True) == [(True, True, 3.0), (False, True, -2.0)]
    for scales in [(3.0, 2.0), (1.5, 1.0), (1.0, 4.0)]:
        for flags in [(True, True), (True, False), (False, True), (False, False)]:
            passes = guidance_passes(*scales, *flags)
            assert abs(sum(p.weight for p in passes) - 1.0) < 1e-9 and len(set(passes)) == len(passes)


@pytest.mark.parametrize("cfg_text,cfg_action", [(1.0, 1.0), (3.0, 2.0), (1.0, 2.5)])
def test_guided_cached_step_equals_the_formula_over_full_recomputes(cfg_text: float, cfg_action: float) -> None:
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    B, T0 = 2, 3
    context = torch.randn(B, T0, 4, 4, 4, generator=g)
    actions = torch.randint(0, 16, (B, T0 + 1), generator=g)
    action_mask = torch.arange(T0 + 1).expand(B, -1) > 0
    text = some_text(B)
    passes = guidance_passes(cfg_text, cfg_action, True, True)
    cache = model.new_cache()
    write_frames(model, cache, context, actions[:, :T0], action_mask[:, :T0], text, passes, context_noise=1.0)
    guided = sample_next_frame(
        model,
        cache,
        B,
        actions[:, T0:],
        action_mask[:, T0:],
        text,
        passes,
        steps=1,
        generator=torch.Generator().manual_seed(7),
    )
    noise = torch.randn(B, 1, 4, 4, 4, generator=torch.Generator().manual_seed(7))
    clip = torch.cat([context, noise], 1)
    tau = torch.cat([torch.ones(B, T0), torch.zeros(B, 1)], 1)
    blank = TextCondition(text.tokens, torch.zeros_like(text.mask), text.pooled)
    no_action = action_mask.clone()
    no_action[:, -1] = False
    with torch.no_grad():
        v_at = model(clip, tau, actions, action_mask, text)[:, -1]
        v_a = model(clip, tau, actions, action_mask, blank)[:, -1]
        v_0 = model(clip, tau, actions, no_action, blank)[:, -1]
    expected = noise[:, 0] + v_0 + cfg_action * (v_a - v_0) + cfg_text * (v_at - v_a)
    torch.testing.assert_close(guided, expected, rtol=0, atol=1e-5)
    if (cfg_text, cfg_action) == (1.0, 1.0):
        torch.testing.assert_close(guided, noise[:, 0] + v_at, rtol=0, atol=1e-5)


def test_rollout_shapes_and_determinism_under_a_seed() -> None:
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    context = torch.randn(2, 3, 4, 4, 4, generator=g)
    actions = torch.randint(0, 16, (2, 3 + 5 - 1), generator=g)
    text = some_text(2)

    def run(seed: int, **kwargs):
        return rollout(
            model,
            context,
            actions,
            text,
            horizon=5,
            steps=2,
            sampler="heun",
            cfg_text=2.0,
            cfg_action=1.5,
            window=4,
            generator=torch.Generator().manual_seed(seed),
            **kwargs,
        )

    first, again, other = run(0), run(0), run(1)
    assert first.latents.shape == (2, 5, 4, 4, 4) and first.reward.shape == first.termination_logit.shape == (2, 5)
    for a, b in zip(first, again):
        assert torch.equal(a, b)
    assert not torch.equal(first.latents, other.latents)
    assert not torch.equal(run(0, warm_start=WARM_START).latents, first.latents)
    # Text to video: no context frames, no actions.
    for warm_start in (0.0, WARM_START):  # the first frame has no previous one and starts from noise
        video = rollout(
            model,
            context[:, :0],
            None,
            text,
            horizon=3,
            generator=torch.Generator().manual_seed(0),
            warm_start=warm_start,
        )
        assert video.latents.shape == (2, 3, 4, 4, 4) and torch.isfinite(video.latents).all()
    passes: list[float] = []  # noise level of the new frame in every network pass
    model.register_forward_hook(lambda module, args, output: passes.append(round(float(args[1][0, -1]), 6)))
    rollout(model, context[:, :0], None, text, horizon=3, steps=1, first_steps=3, warm_start=WARM_START)
    first = [0.0, 0.333333, 0.666667, 0.9]  # 3 steps from noise, then written at the context noise level
    assert passes == first + [WARM_START, 0.9] * 2  # later frames: 1 step from the previous frame
