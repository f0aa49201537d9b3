"""Video diffusion transformer: predicts the velocity of every latent frame of a clip.

Tokens are the latent patches of every frame. Space is encoded by a fixed 2D sin-cos embedding
added to the tokens; time by rotary embedding (RoPE) of the frame index in self-attention, which
makes attention depend only on how many frames apart two tokens are. Attention is block-causal
(full within a frame, causal across frames), so a rollout caches the keys/values of past frames
(`KVCache`) and, because RoPE is relative, keeps them valid when the sliding window drops old
frames: a cached rollout past the training length equals a recomputation over the window.

Each frame is modulated (adaLN-Zero) by its own conditioning vector: its noise level, the action
that led to it and the pooled text; text tokens enter by cross-attention. The network knows nothing
about noise schedules: `worldsim.flow` turns it into a training loss and samplers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.models.frame_attention import SeenFrames
from worldsim.models.kv_cache import KVCache
from worldsim.models.memory import MemoryKVCache, memory_visibility
from worldsim.models.rope import rope_frequencies, rotate
from worldsim.models.text import TextCondition


@dataclass
class VideoDiTConfig:
    latent_channels: int = 16  # C of the autoencoder's latent frames
    latent_size: int = 8  # H = W of a latent frame (64x64 pixels compressed 8x)
    patch_size: int = 1  # latent pixels per token side; 1 keeps 8x8 latents at N = 64 tokens per frame
    width: int = 384  # D, the token width
    depth: int = 8  # number of VideoDiTBlocks
    heads: int = 6  # attention heads; width / heads is the head size RoPE rotates
    mlp_ratio: float = 4.0  # MLP hidden width / D
    max_frames: int = 16  # longest clip trained on; a rollout's window holds max_frames - 1 past frames
    action_kind: str = "continuous"  # "continuous": actions (B, T, action_dim); "discrete": (B, T) ids
    action_dim: int = 0  # continuous action size; 0 with "continuous" = a world without actions
    num_actions: int = 0  # discrete action count
    text_width: int = 256  # width of the text encoder's token features and pooled vector
    head_width: int = 256  # hidden width of the reward and termination MLPs
    dropout: float = 0.0  # on attention weights and MLP hidden units; clips are highly redundant
    rope_base: float = 100.0  # slowest RoPE period ~ 2*pi*base frames: windows are tens of frames, not 10k
    # past frames each frame attends to directly; 0: max_frames - 1, the whole training clip. A memory
    # model trains on clips longer than its window, so that frames leave it and the bank has work
    attention_window: int = 0
    # frames kept after they leave the window, attended by every new frame (worldsim.models.memory);
    # 0: no memory, the network of every model file written before memory existed
    memory_slots: int = 0
    # the most frames back a remembered frame reads as (RoPE); 0: max_frames - 1, the longest offset
    # training showed. window + 1 reads every remembered frame as the one just past the window
    memory_offset: int = 0

    def __post_init__(self) -> None:
        if self.latent_size % self.patch_size != 0:
            raise ValueError(f"latent_size {self.latent_size} is not divisible by patch_size {self.patch_size}")
        if self.width % self.heads != 0 or (self.width // self.heads) % 2 != 0:
            raise ValueError(f"width {self.width} / heads {self.heads} must be an even head size for RoPE")
        if self.action_kind not in ("continuous", "discrete"):
            raise ValueError(f"action_kind {self.action_kind!r} is not 'continuous' or 'discrete'")
        if self.action_kind == "discrete" and self.num_actions < 1:
            raise ValueError(f"discrete actions need num_actions >= 1, got {self.num_actions}")
        if self.max_frames < 2:
            raise ValueError(f"max_frames {self.max_frames} must be >= 2 for any dynamics")
        if not 0 <= self.attention_window <= self.max_frames - 1:
            raise ValueError(
                f"attention_window {self.attention_window} is not in [0, max_frames - 1 = {self.max_frames - 1}] "
                "(0: the whole clip)"
            )
        if self.memory_offset and not self.window < self.memory_offset <= self.max_frames - 1:
            raise ValueError(
                f"memory_offset {self.memory_offset} must be past the window ({self.window}) and at most "
                f"max_frames - 1 = {self.max_frames - 1}; 0 reads remembered frames at up to max_frames - 1"
            )
        if self.memory_slots < 0:
            raise ValueError(f"memory_slots {self.memory_slots} is negative: 0 turns memory off")
        if self.memory_slots and self.window >= self.max_frames - 1:
            raise ValueError(
                f"memory_slots={self.memory_slots} with a window of {self.window} past frames in "
                f"{self.max_frames}-frame clips: no frame ever leaves the window, so memory has nothing to "
                "learn; set attention_window below clip_length - 1 (e.g. 7 with 32-frame clips)"
            )

    @property
    def remembered_offset(self) -> int:
        """The most frames back a remembered frame reads as: ``memory_offset``, else the clip length - 1."""
        return self.memory_offset or max(self.max_frames - 1, self.window + 1)

    @property
    def window(self) -> int:
        """Past frames a frame attends to directly (the KV cache's default window)."""
        return self.attention_window or self.max_frames - 1

    @property
    def tokens_per_frame(self) -> int:
        return (self.latent_size // self.patch_size) ** 2

    @classmethod
    def preset(cls, name: str, **overrides) -> VideoDiTConfig:
        """A named size from DIT_PRESETS with data-dependent fields (channels, actions) overridden."""
        if name not in DIT_PRESETS:
            raise ValueError(f"model preset {name!r} is not one of {sorted(DIT_PRESETS)}")
        return cls(**{**DIT_PRESETS[name], **overrides})


# Every size worldsim trains, by name (model=<name>). Parameters as measured with Physics's 16x8x8
# latents and 3-d actions; only the action embedding changes with another action space.
DIT_PRESETS: dict[str, dict] = {
    "tiny": dict(width=128, depth=4, heads=4, text_width=128, head_width=128),  # 1.64M: CPU; Occlusion, Orbit
    "mid": dict(width=256, depth=5, heads=4, text_width=128, head_width=128),  # 7.77M: Physics, Push references
    "small": dict(width=384, depth=6, heads=6),  # 20.8M: GPU runs
    "base": dict(width=768, depth=12, heads=12, text_width=512, head_width=512),  # 161M: larger GPU runs
}


@dataclass(frozen=True)
class CleanHistory:
    """A clip again at the context noise level, the history its frames to predict are conditioned on.

    Diffusion forcing conditions each frame on its neighbours at their own noise levels, so a frame
    far into a clip mostly sees noisy frames, where a rollout's frames only ever see clean ones (the
    context, then what the model wrote). A memory model's bank is then noisy in training and clean in
    use, and the frames it could bring back rarely pay. With a clean history stream every frame to
    predict sees clean frames before it, in its window and its bank, as in a rollout (teacher forcing,
    as WorldMem feeds its memory frames clean), at twice the tokens of a training pass.
    """

    latents: torch.Tensor  # (B, T, C, H, W)
    noise_level: torch.Tensor  # (B, T), the context noise level


def history_visibility(seen: torch.Tensor) -> torch.Tensor:
    """(B, 2T, 2T) [query, key] of a clip followed by its clean history, from what frames see (B, T, T).

    The history frames see each other as the clip's frames would have; each frame of the clip sees
    itself and the history twins of the earlier frames it would have seen.
    """
    B, T, _ = seen.shape
    itself = torch.eye(T, dtype=torch.bool, device=seen.device).expand(B, T, T)
    top = torch.cat([itself, seen & ~itself], dim=2)
    bottom = torch.cat([torch.zeros_like(seen), seen], dim=2)
    return torch.cat([top, bottom], dim=1)


def sincos_features(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features (..., dim) of real values x (...)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=x.device) / half)
    angles = x.float()[..., None] * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def sincos_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed spatial embedding (grid*grid, dim): half the channels encode the row, half the column."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return torch.cat([sincos_features(rows.flatten(), dim // 2), sincos_features(cols.flatten(), dim // 2)], -1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x (B, T, N, D) scaled and shifted per frame by (B, T, D)."""
    return x * (1 + scale[:, :, None]) + shift[:, :, None]


class SelfAttention(nn.Module):
    def __init__(self, cfg: VideoDiTConfig) -> None:
        super().__init__()
        self.heads, self.dropout = cfg.heads, cfg.dropout
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x, cos, sin, mask, cache: KVCache | None, layer: int, update_cache: bool):
        B, S, D = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, S, hd)
        q, k = rotate(q, cos, sin), rotate(k, cos, sin)
        if cache is not None:
            k, v = cache.attend(layer, k, v, write=update_cache)  # (B, h, S_past + S, hd)
        dropout = self.dropout if self.training else 0.0
        if isinstance(mask, SeenFrames):
            y = mask.attend(q, k, v, dropout_p=dropout)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.proj(y.transpose(1, 2).reshape(B, S, D))  # (B, S, D)


class CrossAttention(nn.Module):
    def __init__(self, cfg: VideoDiTConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.q = nn.Linear(cfg.width, cfg.width)
        self.kv = nn.Linear(cfg.width, 2 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        (B, S, D), L, h = x.shape, text.shape[1], self.heads
        q = self.q(x).view(B, S, h, D // h).transpose(1, 2)  # (B, h, S, hd)
        k, v = self.kv(text).view(B, L, 2, h, D // h).permute(2, 0, 3, 1, 4)  # (B, h, L, hd)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=text_mask[:, None, None, :])
        return self.proj(y.transpose(1, 2).reshape(B, S, D))  # (B, S, D)


class VideoDiTBlock(nn.Module):
    """Block-causal self-attention, cross-attention to text, MLP; adaLN-Zero modulated per frame."""

    def __init__(self, cfg: VideoDiTConfig) -> None:
        super().__init__()
        D, hidden = cfg.width, int(cfg.width * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn = SelfAttention(cfg)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.cross = CrossAttention(cfg)
        self.norm3 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(D, hidden), nn.GELU(approximate="tanh"), nn.Dropout(cfg.dropout), nn.Linear(hidden, D)
        )
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(self, x, c, text, text_mask, cos, sin, mask, cache, layer, update_cache):
        """x (B, T, N, D) tokens, c (B, T, D) per-frame conditioning, text (B, 1+L, D)."""
        B, T, N, D = x.shape
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.adaLN_modulation(c).chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift_a, scale_a).reshape(B, T * N, D)  # (B, T*N, D)
        h = self.attn(h, cos, sin, mask, cache, layer, update_cache).view(B, T, N, D)  # (B, T, N, D)
        x = x + gate_a[:, :, None] * h
        x = x + self.cross(self.norm2(x).reshape(B, T * N, D), text, text_mask).view(B, T, N, D)  # (B, T, N, D)
        return x + gate_m[:, :, None] * self.mlp(modulate(self.norm3(x), shift_m, scale_m))


class FinalLayer(nn.Module):
    def __init__(self, cfg: VideoDiTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(cfg.width, cfg.patch_size**2 * cfg.latent_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cfg.width, 2 * cfg.width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, T, N, p*p*C)


class TransitionHeads(nn.Module):
    """Reward and termination logit of the transition that produced each frame, from its pooled tokens."""

    def __init__(self, cfg: VideoDiTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.reward = nn.Sequential(nn.Linear(cfg.width, cfg.head_width), nn.SiLU(), nn.Linear(cfg.head_width, 1))
        self.termination = nn.Sequential(nn.Linear(cfg.width, cfg.head_width), nn.SiLU(), nn.Linear(cfg.head_width, 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.norm(x.mean(dim=2))  # (B, T, D)
        return self.reward(pooled)[..., 0], self.termination(pooled)[..., 0]  # (B, T) each


class VideoDiT(nn.Module):
    def __init__(self, cfg: VideoDiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, p, C = cfg.width, cfg.patch_size, cfg.latent_channels
        self.patch_embed = nn.Linear(p * p * C, D)
        self.register_buffer("pos_embed", sincos_2d(D, cfg.latent_size // p), persistent=False)
        self.noise_embed = nn.Sequential(nn.Linear(256, D), nn.SiLU(), nn.Linear(D, D))
        if cfg.action_kind == "discrete":
            self.action_embed = nn.Embedding(cfg.num_actions, D)
        else:
            self.action_embed = nn.Sequential(nn.Linear(max(cfg.action_dim, 1), D), nn.SiLU(), nn.Linear(D, D))
        self.null_action = nn.Parameter(torch.zeros(D))  # first frame, dropped (CFG) or absent actions
        self.text_proj = nn.Linear(cfg.text_width, D)
        self.pooled_text_proj = nn.Sequential(nn.Linear(cfg.text_width, D), nn.SiLU(), nn.Linear(D, D))
        self.null_pooled_text = nn.Parameter(torch.zeros(D))
        self.null_text_token = nn.Parameter(torch.zeros(D))  # always attendable: no text = only this key
        self.blocks = nn.ModuleList([VideoDiTBlock(cfg) for _ in range(cfg.depth)])
        self.heads = TransitionHeads(cfg)
        self.final_layer = FinalLayer(cfg)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def xavier(module: nn.Module) -> None:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

        self.apply(xavier)
        for embedding in (self.noise_embed[0], self.noise_embed[2]):
            nn.init.normal_(embedding.weight, std=0.02)
        if isinstance(self.action_embed, nn.Embedding):
            nn.init.normal_(self.action_embed.weight, std=0.02)
        for null in (self.null_action, self.null_pooled_text, self.null_text_token):
            nn.init.normal_(null, std=0.02)
        # adaLN-Zero: every block starts as the identity and the output as exactly zero.
        for block in self.blocks:
            nn.init.zeros_(block.adaLN_modulation[-1].weight)
            nn.init.zeros_(block.adaLN_modulation[-1].bias)
            nn.init.zeros_(block.cross.proj.weight)
            nn.init.zeros_(block.cross.proj.bias)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def num_params(self, trainable_only: bool = True) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @property
    def remembers(self) -> bool:
        """Whether the network reads a memory bank (memory_slots > 0): its training passes need ``memory_from``."""
        return self.cfg.memory_slots > 0

    def new_cache(self, window: int | None = None, memory: bool = True) -> KVCache:
        """An empty rollout cache of ``window`` past frames (default the window trained with); with the
        network's memory unless ``memory`` is False (the ablation: the same weights, window only)."""
        cfg = self.cfg
        window = window or cfg.window
        if memory and cfg.memory_slots:
            offset = max(cfg.remembered_offset, window + 1)
            return MemoryKVCache(cfg.depth, window, cfg.memory_slots, offset, cfg.rope_base)
        return KVCache(cfg.depth, window)

    def embed_actions(self, actions, action_mask, B: int, T: int) -> torch.Tensor:
        """(B, T, D): the embedding of each frame's action, the null action where action_mask is False."""
        null = self.null_action.expand(B, T, -1)
        if actions is None:
            return null
        if action_mask is None:
            action_mask = torch.ones(B, T, dtype=torch.bool, device=actions.device)
        if self.cfg.action_kind == "discrete":
            assert actions.shape == (B, T), f"discrete actions {tuple(actions.shape)} are not (B, T) = {(B, T)}"
            embedded = self.action_embed(actions.masked_fill(~action_mask, 0))
        else:
            A = self.cfg.action_dim
            assert actions.shape == (B, T, A), f"actions {tuple(actions.shape)} are not (B, T, A) = {(B, T, A)}"
            # Masked slots may hold NaN padding; zero them so no NaN reaches the gradient.
            embedded = self.action_embed(actions.masked_fill(~action_mask[..., None], 0).to(null.dtype))
        return torch.where(action_mask[..., None], embedded, null)

    def embed_text(self, text: TextCondition | None, B: int) -> tuple[torch.Tensor, ...]:
        """Pooled text (B, D), text tokens (B, 1+L, D) led by the null token, and their mask (B, 1+L)."""
        null_token = self.null_text_token.expand(B, 1, -1)
        if text is None:
            mask = torch.ones(B, 1, dtype=torch.bool, device=null_token.device)
            return self.null_pooled_text.expand(B, -1), null_token, mask
        assert text.tokens.shape[0] == B and text.tokens.shape[-1] == self.cfg.text_width, (
            f"text tokens {tuple(text.tokens.shape)} are not (B={B}, L, text_width={self.cfg.text_width})"
        )
        has_text = text.mask.any(dim=1, keepdim=True)  # (B, 1)
        pooled = torch.where(has_text, self.pooled_text_proj(text.pooled), self.null_pooled_text)
        tokens = torch.cat([null_token, self.text_proj(text.tokens)], dim=1)  # (B, 1+L, D)
        return pooled, tokens, torch.cat([torch.ones_like(has_text), text.mask.bool()], dim=1)

    def forward(
        self,
        latents: torch.Tensor,
        noise_level: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        text: TextCondition | None = None,
        *,
        cache: KVCache | None = None,
        update_cache: bool = False,
        return_heads: bool = False,
        memory_from: torch.Tensor | None = None,
        history: CleanHistory | None = None,
    ):
        """Velocity (B, T, C, H, W) of every frame; with return_heads also reward and termination logit (B, T).

        latents: (B, T, C, H, W) frames at their own noise levels.
        noise_level: (B, T) in [0, 1], 1 = clean data (the flow's tau).
        actions: (B, T, A) float ("continuous") or (B, T) long ("discrete"); actions[:, t] led to frame t.
        action_mask: (B, T) bool; False gives frame t the learned null action (first frame, CFG drop).
        text: tokens (B, L, text_width), mask (B, L), pooled (B, text_width); None = null text for all.
        cache: frames already seen (a rollout): these T frames come after them and attend to them too.
        update_cache: also write these T frames into the cache (context, or a finished frame).
        memory_from: clean latents (B, T, C, H, W) of a whole clip (no cache), from which a memory network
        picks what each frame sees beyond its window (``memory_visibility``); a cache keeps its own bank.
        history: the same clip at the context noise level (no cache): each frame of ``latents`` then sees
        itself and, of the frames before it, only their history twins, as a rollout sees the frames it
        wrote (``history_visibility``). Outputs are of ``latents``' frames only.
        """
        cfg = self.cfg
        B, T, C, H, W = latents.shape
        p, N = cfg.patch_size, cfg.tokens_per_frame
        expected = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
        assert (C, H, W) == expected, f"latent frames (C, H, W) = {(C, H, W)} are not the configured {expected}"
        assert noise_level.shape == (B, T), f"noise_level {tuple(noise_level.shape)} is not (B, T) = {(B, T)}"
        past = cache.frames if cache is not None else 0
        clip = T  # frames whose outputs are returned; a history stream follows them
        if history is not None:
            assert cache is None, "a clean history stream is a training pass over a whole clip, not a cached rollout"
            assert history.latents.shape == latents.shape, (
                f"history latents {tuple(history.latents.shape)} are not the clip's {tuple(latents.shape)}"
            )
            latents = torch.cat([latents, history.latents], dim=1)
            noise_level = torch.cat([noise_level, history.noise_level.to(noise_level.dtype)], dim=1)
            actions = None if actions is None else torch.cat([actions, actions], dim=1)
            action_mask = None if action_mask is None else torch.cat([action_mask, action_mask], dim=1)
            T = 2 * clip

        x = latents.reshape(B, T, C, H // p, p, W // p, p).permute(0, 1, 3, 5, 2, 4, 6)  # (B, T, H/p, W/p, C, p, p)
        x = self.patch_embed(x.reshape(B, T, N, C * p * p)) + self.pos_embed  # (B, T, N, D)
        pooled, text_tokens, text_mask = self.embed_text(text, B)
        c = self.noise_embed(sincos_features(noise_level * 1000, 256).to(x.dtype))  # (B, T, D)
        c = c + self.embed_actions(actions, action_mask, B, T) + pooled[:, None]

        # Time: RoPE angles of the new frames' absolute indices, in float64 so they stay exact however
        # long a rollout runs (not a buffer: model.to(bfloat16) would round it); keys keep them cached.
        start = cache.next_position if cache is not None else 0
        freqs = rope_frequencies(cfg.width // cfg.heads, cfg.rope_base, x.device)
        positions = torch.arange(start, start + clip, device=x.device, dtype=torch.float64)
        if history is not None:  # the history twin of a frame is at the same time
            positions = positions.repeat(2)
        angles = (positions[:, None] * freqs).repeat_interleave(N, dim=0)  # (T*N, hd/2)
        cos, sin = angles.cos().float(), angles.sin().float()
        mask = None  # one new frame sees all held frames and itself
        if T > 1:  # block-causal, and no frame sees more than the window behind it
            keys = torch.arange(start - past, start + clip, device=x.device)
            offset = positions[:clip].long()[:, None] - keys[None, :]  # (clip, past + clip) frames back
            window = cache.window if cache is not None else cfg.window
            frames_seen = (offset >= 0) & (offset <= window)  # (clip, past + clip)
            if cache is None and self.remembers and clip > window + 1:
                if memory_from is None:
                    raise ValueError(
                        f"a memory network given a {clip}-frame clip (window {window}) needs memory_from=<the "
                        "clip's clean latents> to choose what each frame remembers (FlowMatching.loss passes it)"
                    )
                frames_seen = frames_seen | memory_visibility(memory_from, window, cfg.memory_slots)  # (B, T, T)
            if history is not None:
                frames_seen = history_visibility(frames_seen.expand(B, -1, -1))  # (B, 2T, 2T)
            if cache is None and clip > window + 1:  # a long clip: each frame over the few it sees, not a dense mask
                mask = SeenFrames.from_visibility(frames_seen, B, width=window + 1 + cfg.memory_slots)
                if self.remembers and cfg.remembered_offset < clip - 1:
                    mask = mask.read_within(cfg.remembered_offset, positions.long(), freqs)
            else:
                mask = frames_seen.repeat_interleave(N, -2).repeat_interleave(N, -1)
                if mask.dim() == 3:
                    mask = mask[:, None]  # (B, 1, T*N, T*N): each row its own memory
        if cache is not None:
            mask = cache.with_memory(mask, start, T, N)

        for layer, block in enumerate(self.blocks):
            x = block(x, c, text_tokens, text_mask, cos, sin, mask, cache, layer, update_cache)
        if cache is not None and update_cache:
            cache.advance(T, N)

        x, c = x[:, :clip], c[:, :clip]
        T = clip
        out = self.final_layer(x, c).view(B, T, H // p, W // p, C, p, p)  # (B, T, H/p, W/p, C, p, p)
        velocity = out.permute(0, 1, 4, 2, 5, 3, 6).reshape(B, T, C, H, W)  # (B, T, C, H, W)
        if not return_heads:
            return velocity
        reward, termination_logit = self.heads(x)
        return velocity, reward, termination_logit
