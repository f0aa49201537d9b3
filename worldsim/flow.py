"""Rectified flow with an independent noise level per frame (diffusion forcing), and its samplers.

Convention: x_tau = tau * x_data + (1 - tau) * noise, so tau = 1 is clean data and tau = 0 pure
noise; the network predicts the velocity dx/dtau = x_data - noise. Any network with VideoDiT's
forward signature works: the objective and the samplers take it as an argument.

Rollout: context frames are written once into the model's KV cache at a small noise level
(`context_noise`, as in training, so a rollout does not drift on its own small errors); each new
frame is integrated from noise with Euler or Heun while reading the cache, then written into it.
A stepped world (one frame per action) uses the same three calls as `rollout`:

    passes = guidance_passes(cfg_text, cfg_action, text is not None, actions is not None)
    cache = model.new_cache()                      # holds len(passes) copies of the batch
    write_frames(model, cache, context, context_actions, context_mask, text, passes)
    frame = sample_next_frame(model, cache, B, action, action_mask, text, passes, steps=4)
    reward, termination_logit = write_frames(model, cache, frame[:, None], action, action_mask, text, passes)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.config_checks import check_at_least, check_within
from worldsim.models.dit import CleanHistory
from worldsim.models.text import TextCondition
from worldsim.sampling import WARM_START

CONTEXT_NOISE = 0.9  # tau of context frames at train and rollout time: a little noise, most signal


@dataclass
class FlowMatchingConfig:
    noise_sampling: str = "logit_normal"  # "logit_normal" spends most steps mid-way (SD3) | "uniform"
    logit_mean: float = 0.0  # logit-normal location; < 0 shifts training towards noisier frames
    logit_std: float = 1.0  # logit-normal scale
    context_noise: float = CONTEXT_NOISE  # tau of context frames; rollouts must use the same value
    context_prob: float = 0.5  # chance a clip is split into context + noisy future: the rollout case
    shared_future_noise: bool = False  # future frames of such a clip share one tau instead of each own
    rollout_prob: float = 0.0  # chance a context clip's later context frames are the model's own rollout
    # every frame to predict sees the clip's frames before it clean (at context_noise), as in a rollout,
    # instead of at their own noise levels: a memory model's bank then holds what it holds in use
    # (worldsim.models.dit.CleanHistory); twice the tokens a step
    clean_history: bool = False
    # only clips that start at their episode's first frame are imagined from text alone; the others
    # always get context: a caption says how an episode begins, not what its 40th frame shows
    text_only_from_start: bool = False
    text_drop_prob: float = 0.1  # chance a clip trains with null text, for text guidance
    action_drop_prob: float = 0.1  # chance a frame trains with the null action, for action guidance
    reward_weight: float = 1.0  # reward-head MSE weight in the total loss
    termination_weight: float = 1.0  # termination-head BCE weight in the total loss

    def __post_init__(self) -> None:
        if self.noise_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"dynamics.flow.noise_sampling={self.noise_sampling!r}: use 'logit_normal' or 'uniform'")
        check_at_least(self, "dynamics.flow", logit_std=1e-6, context_noise=1e-6, reward_weight=0, termination_weight=0)
        check_within(
            self,
            "dynamics.flow",
            context_noise=(0, 1),
            context_prob=(0, 1),
            rollout_prob=(0, 1),
            text_drop_prob=(0, 1),
            action_drop_prob=(0, 1),
        )


class FlowMatching:
    """The training objective; `loss` takes the network as an argument."""

    def __init__(self, cfg: FlowMatchingConfig | None = None) -> None:
        self.cfg = cfg or FlowMatchingConfig()

    def future_noise_levels(self, B: int, T: int, device, generator=None) -> torch.Tensor:
        """tau (B, T) of frames to predict, drawn from the configured distribution."""
        cfg = self.cfg
        shape = (B, 1 if cfg.shared_future_noise else T)
        if cfg.noise_sampling == "logit_normal":
            z = torch.randn(shape, device=device, generator=generator)
            return torch.sigmoid(cfg.logit_mean + cfg.logit_std * z).expand(B, T)
        return torch.rand(shape, device=device, generator=generator).expand(B, T)

    def noise_levels(
        self, B: int, T: int, device, generator=None, from_start: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tau (B, T) of every frame and which frames are context (B, T) bool.

        from_start (B,) bool: which clips start at their episode's first frame; needed by
        ``text_only_from_start``, which gives every other clip context.
        """
        cfg = self.cfg
        tau = self.future_noise_levels(B, T, device, generator)
        # Context clips: the first k in [1, T-1] frames are context, the rest are to be predicted.
        k = torch.randint(1, max(T, 2), (B, 1), device=device, generator=generator)
        is_context_clip = torch.rand(B, 1, device=device, generator=generator) < cfg.context_prob
        if cfg.text_only_from_start:
            if from_start is None:
                raise ValueError(
                    "dynamics.flow.text_only_from_start needs each clip's start frame: pass from_start "
                    "(ClipDataset batches carry it as 'start')"
                )
            is_context_clip = is_context_clip | ~from_start.to(device=device, dtype=torch.bool)[:, None]
        context = (torch.arange(T, device=device) < k) & is_context_clip & (T > 1)
        return torch.where(context, torch.full_like(tau, cfg.context_noise), tau), context

    @torch.no_grad()
    def rollout_context(self, model, latents, tau, context, actions, text, generator=None):
        """Replace some clips' later context frames with the model's own rollout from their first ones.

        A rollout conditions every frame after its real context on frames the model generated, whose
        small errors (a faded static patch, a blurred edge) it never saw in training, so they compound
        step after step. Here a share ``rollout_prob`` of the context clips become: r real frames,
        then k - r frames generated from them (one warm-started Euler step each, as ``WorldModel``
        samples, with the clip's own actions and text), then the true future to predict, so the
        model learns to pull a drifted history back to the truth (scheduled sampling / self forcing).
        One (r, k) per call keeps it one batched rollout. Returns latents, tau, context and which
        rows were rolled (B,) bool.
        """
        cfg = self.cfg
        B, T = latents.shape[:2]
        device = latents.device
        rows = context[:, 0] & (torch.rand(B, device=device, generator=generator) < cfg.rollout_prob)
        k = int(torch.randint(2, T, (1,), device=device, generator=generator))
        r = int(torch.randint(1, k, (1,), device=device, generator=generator))
        if not rows.any():
            return latents, tau, context, rows
        index = rows.nonzero()[:, 0]
        rolled_actions = None if actions is None else actions[index, 1:k]  # actions[:, t] led to frame t
        rolled_text = None if text is None else text.select(index)
        generated = rollout(
            model,
            latents[index, :r],
            rolled_actions,
            rolled_text,
            k - r,
            steps=1,
            context_noise=cfg.context_noise,
            generator=generator,
            warm_start=WARM_START,
        ).latents
        latents = latents.clone()
        latents[index, r:k] = generated.to(latents.dtype)
        context = context.clone()
        context[index] = torch.arange(T, device=device) < k
        tau = tau.clone()
        tau[index] = self.future_noise_levels(len(index), T, device, generator)  # frames a shorter context frees
        tau = torch.where(context, torch.full_like(tau, cfg.context_noise), tau)
        return latents, tau, context, rows

    def loss(
        self,
        model: nn.Module,
        latents: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        text: TextCondition | None = None,
        rewards: torch.Tensor | None = None,
        terminated: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        self_rollout: bool = True,
        from_start: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Velocity MSE on the frames to predict, plus head losses on context frames when targets are given.

        latents (B, T, C, H, W) clean; actions/action_mask/text as for VideoDiT.forward;
        rewards (B, T) float, NaN where unknown; terminated (B, T) bool: of the transition into frame t.
        Heads are trained on context frames only: that is where a rollout reads them, when it writes a
        finished frame into the cache at the context noise level. ``self_rollout``: allow
        ``rollout_prob``'s self-generated context (off for a validation loss that must compare).
        from_start (B,) bool: which clips start at their episode's first frame (``noise_levels``).
        """
        cfg = self.cfg
        B, T = latents.shape[:2]
        device = latents.device
        tau, context = self.noise_levels(B, T, device, generator, from_start)
        rolling = self_rollout and cfg.rollout_prob > 0
        rolled = torch.zeros(B, dtype=torch.bool, device=device)
        if rolling and T >= 3:
            latents, tau, context, rolled = self.rollout_context(model, latents, tau, context, actions, text, generator)
        noise = torch.randn(latents.shape, device=device, generator=generator, dtype=latents.dtype)
        t = tau.to(latents.dtype)[..., None, None, None]
        x_tau = t * latents + (1 - t) * noise  # (B, T, C, H, W)

        if action_mask is None:
            action_mask = torch.ones(B, T, dtype=torch.bool, device=device)
        action_mask = action_mask & (torch.rand(B, T, device=device, generator=generator) >= cfg.action_drop_prob)
        if text is not None:
            keep = torch.rand(B, 1, device=device, generator=generator) >= cfg.text_drop_prob
            text = TextCondition(text.tokens, text.mask.bool() & keep, text.pooled)

        # A memory network picks what each frame remembers from the clean clip, as a rollout's bank does.
        seen = {"memory_from": latents} if getattr(model, "remembers", False) else {}
        if cfg.clean_history:
            history_noise = torch.randn(latents.shape, device=device, generator=generator, dtype=latents.dtype)
            seen["history"] = CleanHistory(
                cfg.context_noise * latents + (1 - cfg.context_noise) * history_noise,
                torch.full_like(tau, cfg.context_noise),
            )
        velocity, reward, termination_logit = model(x_tau, tau, actions, action_mask, text, return_heads=True, **seen)
        predicted = ~context
        per_frame = (velocity.float() - (latents - noise).float()).pow(2).mean(dim=(2, 3, 4))  # (B, T)
        velocity_loss = (per_frame * predicted).sum() / predicted.sum().clamp(min=1)
        loss = velocity_loss
        logs = {"loss_velocity": velocity_loss.detach(), "context_fraction": context.float().mean()}
        if rolling:
            logs["rollout_fraction"] = rolled.float().mean()
        if rewards is not None:
            known = context & torch.isfinite(rewards)
            error = (reward.float() - torch.nan_to_num(rewards.float())).pow(2)
            reward_loss = (error * known).sum() / known.sum().clamp(min=1)
            loss = loss + cfg.reward_weight * reward_loss
            logs["loss_reward"] = reward_loss.detach()
        if terminated is not None:
            bce = F.binary_cross_entropy_with_logits(termination_logit.float(), terminated.float(), reduction="none")
            termination_loss = (bce * context).sum() / context.sum().clamp(min=1)
            loss = loss + cfg.termination_weight * termination_loss
            logs["loss_termination"] = termination_loss.detach()
        logs["loss"] = loss.detach()
        return loss, logs


# ---------------------------------------------------------------------------------------------
# Sampling


class GuidancePass(NamedTuple):
    text: bool  # this pass sees the text (else the null text for every frame)
    action: bool  # this pass sees the new frame's action (else the null action; context keeps its own)
    weight: float  # its coefficient in the guided velocity; the weights of all passes sum to 1


def guidance_passes(cfg_text: float, cfg_action: float, has_text: bool, has_actions: bool) -> list[GuidancePass]:
    """The distinct model passes of v = v(0,0) + s_a (v(a,0) - v(0,0)) + s_t (v(a,t) - v(a,0)).

    A pass whose condition is absent is the same pass as its unconditioned twin and is merged into
    it; passes of weight 0 (a scale of 1) are skipped, so no guidance costs one pass.
    """
    terms = [((True, True), cfg_text), ((False, True), cfg_action - cfg_text), ((False, False), 1.0 - cfg_action)]
    merged: dict[tuple[bool, bool], float] = {}
    for (text_on, action_on), weight in terms:
        key = (text_on and has_text, action_on and has_actions)
        merged[key] = merged.get(key, 0.0) + weight
    return [GuidancePass(t, a, w) for (t, a), w in merged.items() if w != 0.0]


def integrate(
    velocity: Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    steps: int,
    sampler: str = "euler",
    start: float = 0.0,
) -> torch.Tensor:
    """Integrate dx/dtau = velocity(x, tau) from tau = start (x at that noise level) to 1 in `steps` uniform steps.

    Heun corrects every step but the last (as EDM does): the velocity at tau = 1 is never needed,
    so Heun costs 2 * steps - 1 network passes.
    """
    assert 1 <= steps <= 64, f"steps {steps} is not in [1, 64]"
    assert sampler in ("euler", "heun"), f"sampler {sampler!r} is not 'euler' or 'heun'"
    assert 0.0 <= start < 1.0, f"start {start} is not in [0, 1)"
    taus = torch.linspace(start, 1.0, steps + 1).tolist()
    for i in range(steps):
        dt = taus[i + 1] - taus[i]
        v = velocity(x, taus[i])
        if sampler == "heun" and i < steps - 1:
            v = 0.5 * (v + velocity(x + dt * v, taus[i + 1]))
        x = x + dt * v
    return x


def _per_pass(passes: list[GuidancePass], actions, action_mask, text, drop_actions: bool):
    """Inputs stacked pass after pass along the batch: (G*B, ...)."""
    G = len(passes)
    if actions is not None:
        B, T = action_mask.shape
        keep = torch.tensor([p.action or not drop_actions for p in passes], device=action_mask.device)
        action_mask = (action_mask[None] & keep[:, None, None]).reshape(G * B, T)  # (G*B, T)
        actions = actions.repeat(G, *([1] * (actions.dim() - 1)))
    if text is not None:
        keep = torch.tensor([p.text for p in passes], device=text.mask.device)
        mask = (text.mask[None] & keep[:, None, None]).flatten(0, 1)  # (G*B, L)
        text = TextCondition(text.tokens.repeat(G, 1, 1), mask, text.pooled.repeat(G, 1))
    return actions, action_mask, text


#: The noise of a sampling call: one generator for the whole batch, or one per row. Per row, each row
#: draws its noise from its own seed alone, so it samples the same frames whatever rows are batched
#: beside it (``WorldModel.generate`` batches many seeds). None: torch's global generator.
Generators = Union[torch.Generator, Sequence[torch.Generator], None]


def sample_noise(shape: tuple[int, ...], device, dtype, generator: Generators) -> torch.Tensor:
    """Standard normal noise of ``shape`` (B, ...), row b from ``generator[b]`` when given one per row."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)
    assert len(generator) == shape[0], f"{len(generator)} generators for a batch of {shape[0]} rows"
    return torch.stack([torch.randn(shape[1:], device=device, dtype=dtype, generator=g) for g in generator])


@torch.no_grad()
def write_frames(
    model, cache, latents, actions, action_mask, text, passes, context_noise=CONTEXT_NOISE, generator=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise frames (B, T, C, H, W) to context_noise and write them into every pass's cache rows.

    Returns the reward and termination logit (B, T) the heads read from these frames (first pass).
    actions (B, T, A) or (B, T), action_mask (B, T): the actions that led to these frames, kept in
    every pass: guidance drops only the action of the frame being generated.
    """
    B, T = latents.shape[:2]
    cache.observe(latents)  # a memory cache compares frames by their clean latents
    noise = sample_noise(latents.shape, latents.device, latents.dtype, generator)
    noisy = context_noise * latents + (1 - context_noise) * noise
    actions, action_mask, text = _per_pass(passes, actions, action_mask, text, drop_actions=False)
    G = len(passes)
    tau = torch.full((G * B, T), context_noise, device=latents.device)
    _, reward, termination_logit = model(
        noisy.repeat(G, 1, 1, 1, 1),
        tau,
        actions,
        action_mask,
        text,
        cache=cache,
        update_cache=True,
        return_heads=True,
    )
    return reward[:B], termination_logit[:B]


@torch.no_grad()
def sample_next_frame(
    model,
    cache,
    batch: int,
    actions,
    action_mask,
    text,
    passes,
    steps: int = 4,
    sampler: str = "euler",
    generator=None,
    previous: torch.Tensor | None = None,
    warm_start: float = 0.0,
) -> torch.Tensor:
    """The next latent frame (batch, C, H, W), integrated from noise while reading the cache.

    actions (B, 1, A) or (B, 1) and action_mask (B, 1): the action that leads to it (or None).
    previous (B, C, H, W), the latest frame, and warm_start > 0: integrate from tau = warm_start,
    starting at the previous frame noised to that level (see ``WARM_START``); else from pure noise.
    """
    cfg, B, G = model.cfg, batch, len(passes)
    actions, action_mask, text = _per_pass(passes, actions, action_mask, text, drop_actions=True)
    weights = torch.tensor([p.weight for p in passes])
    shape = (B, 1, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    device = next(model.parameters()).device

    def velocity(x: torch.Tensor, tau: float) -> torch.Tensor:
        noise_level = torch.full((G * B, 1), tau, device=device)
        v = model(x.repeat(G, 1, 1, 1, 1), noise_level, actions, action_mask, text, cache=cache)
        v = v.view(G, *shape)  # (G, B, 1, C, H, W)
        return (weights.to(v)[:, None, None, None, None, None] * v).sum(0)  # (B, 1, C, H, W)

    x = sample_noise(shape, device, None, generator)
    start = warm_start if previous is not None else 0.0
    if start > 0:
        x = start * previous[:, None].to(x) + (1 - start) * x
    return integrate(velocity, x, steps, sampler, start)[:, 0]


class RolloutOutput(NamedTuple):
    latents: torch.Tensor  # (B, horizon, C, H, W) generated frames
    reward: torch.Tensor  # (B, horizon) predicted reward of the transition into each frame
    termination_logit: torch.Tensor  # (B, horizon)


@torch.no_grad()
def rollout(
    model,
    context_latents: torch.Tensor,
    actions: torch.Tensor | None,
    text,
    horizon: int,
    steps: int = 4,
    sampler: str = "euler",
    cfg_text: float = 1.0,
    cfg_action: float = 1.0,
    context_noise: float = CONTEXT_NOISE,
    window: int | None = None,
    generator: Generators = None,
    warm_start: float = 0.0,
    first_steps: int | None = None,
    memory: bool = True,
    generated_noise: float | None = None,
) -> RolloutOutput:
    """Generate `horizon` frames after context_latents (B, T0, C, H, W); T0 may be 0 (text to video).

    actions (B, T0 + horizon - 1, A) or (B, T0 + horizon - 1): actions[:, t - 1] leads to frame t,
    the first frame having none; None for worlds without actions. window: past frames attended
    (default max_frames - 1, as trained). warm_start: see ``sample_next_frame``; the first frame of a
    text-to-video rollout has no previous frame and integrates from noise in ``first_steps`` steps
    (None: ``steps``), the later ones start from their previous frame. memory: False rolls a memory
    network out on its window alone (the ablation); a network without memory ignores it.
    generated_noise: tau at which each generated frame is written into the cache (None:
    ``context_noise``, as trained); lower hides more of its small errors from the frames after it.
    """
    B, T0 = context_latents.shape[:2]
    total = T0 + horizon
    device = context_latents.device
    action_mask = None
    if actions is not None:
        assert actions.shape[:2] == (B, total - 1), (
            f"actions {tuple(actions.shape)} must be (B, T0 + horizon - 1) = {(B, total - 1)} along (B, T)"
        )
        actions = torch.cat([torch.zeros_like(actions[:, :1]), actions], dim=1)  # frame 0: null action
        action_mask = torch.arange(total, device=device).expand(B, total) > 0
    passes = guidance_passes(cfg_text, cfg_action, text is not None, actions is not None)
    cache = model.new_cache(window, memory=memory)

    def frame_slice(lo: int, hi: int):
        return (None, None) if actions is None else (actions[:, lo:hi], action_mask[:, lo:hi])

    if T0:
        write_frames(model, cache, context_latents, *frame_slice(0, T0), text, passes, context_noise, generator)
    generated_noise = context_noise if generated_noise is None else generated_noise
    frames, rewards, terminations = [], [], []
    previous = context_latents[:, -1] if T0 else None
    for t in range(T0, total):
        n = steps if previous is not None or first_steps is None else first_steps
        x = sample_next_frame(
            model, cache, B, *frame_slice(t, t + 1), text, passes, n, sampler, generator, previous, warm_start
        )
        previous = x
        reward, termination_logit = write_frames(
            model, cache, x[:, None], *frame_slice(t, t + 1), text, passes, generated_noise, generator
        )
        frames.append(x)
        rewards.append(reward)
        terminations.append(termination_logit)
    return RolloutOutput(torch.stack(frames, 1), torch.cat(rewards, 1), torch.cat(terminations, 1))
