"""Per-frame convolutional VAE: 64x64x3 frames <-> 8x8xC latents, the unit the world model predicts.

Every eval tracks small colored objects in *decoded* frames, so the objective weights object pixels
(`object_weight_map`): with a plain reconstruction loss, 4-6 px balls faded to gray blobs (10.6 dB
around them) while whole-frame PSNR read 25 dB. The decoder is also trained on slightly noised
latents so it tolerates the imperfect latents a diffusion model produces.

Frames cross the boundary once: uint8 (..., 3, H, W) in, `encode_frames` -> normalized latents
(..., C, H/8, W/8) with roughly zero mean and unit variance per channel; `decode_latents` -> uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.metrics import psnr_from_mse, weighted_mse


@dataclass
class AutoencoderConfig:
    in_channels: int = 3  # RGB frames
    base_channels: int = 32  # width at full resolution; cost on CPU grows with its square
    # Width multiplier per resolution level; len - 1 levels are reached by downsampling, so it
    # holds num_downsamplings + 1 entries. Wider at low resolution, where convs are cheap.
    channel_multipliers: tuple[int, ...] = (1, 2, 4, 4)
    num_downsamplings: int = 3  # 2**3 = 8x spatial compression: 64x64 frames -> 8x8 latents
    num_res_blocks: int = 1  # residual blocks per level (encoder and decoder alike)
    latent_channels: int = 16  # 8x8x16 = 1024 numbers per 64x64 frame: room for several objects
    num_groups: int = 8  # GroupNorm groups; every level's width must divide by it
    # KL on per-element means: small, so reconstruction wins, yet large enough that latents stay
    # O(1) and smooth for diffusion instead of drifting to arbitrary scales.
    kl_weight: float = 1e-4
    # Loss weight of object pixels relative to background; 10-30x stops small balls fading to gray.
    object_weight: float = 20.0
    # A pixel counts as object by how far its color sits from the local background, ramping from
    # low to high (max over channels, [0, 1] color units). Scenery is gray and objects saturated
    # (envs/colors.py), so 0.08..0.25 separates them even in shadow, yet ignores soft shading.
    object_threshold_low: float = 0.08
    object_threshold_high: float = 0.25
    # Local background = per-channel median over a background_window^2 neighbourhood of
    # background_pool^2 average-pooled cells (4 * 5 = 20 px): wider than the largest object
    # (~10 px) so objects never hold the majority, yet local, so walls, tables and lighting
    # gradients count as background instead of a frame-wide median color.
    background_pool: int = 4
    background_window: int = 5
    # Dilate the object map by this many pixels so anti-aliased rims, which carry an object's
    # outline for the tracker, are weighted too.
    object_dilation: int = 1
    l2_weight: float = 1.0  # MSE alongside L1: L1 keeps edges sharp, MSE punishes big color errors
    # Gaussian noise added to latents before decoding while training, in units of each channel's
    # batch std (the unit-variance space the DiT works in): the decoder learns to forgive the
    # small errors of sampled latents.
    latent_noise_std: float = 0.1

    def __post_init__(self) -> None:
        if len(self.channel_multipliers) != self.num_downsamplings + 1:
            raise ValueError(
                f"channel_multipliers {self.channel_multipliers} has {len(self.channel_multipliers)} "
                f"entries; num_downsamplings={self.num_downsamplings} needs {self.num_downsamplings + 1}"
            )
        for m in self.channel_multipliers:
            width = self.base_channels * m
            if width % self.num_groups != 0:
                raise ValueError(f"level width {width} is not divisible by num_groups={self.num_groups}")
        if not (0.0 <= self.object_threshold_low < self.object_threshold_high):
            raise ValueError(
                f"object thresholds ({self.object_threshold_low}, {self.object_threshold_high}) must "
                "satisfy 0 <= low < high"
            )

    @property
    def downsample_factor(self) -> int:
        return 2**self.num_downsamplings


AUTOENCODER_PRESETS: dict[str, AutoencoderConfig] = {
    # 0.65M: CPU quickstart, tests, and every shipped reference (model=tiny and model=mid).
    "tiny": AutoencoderConfig(base_channels=16, channel_multipliers=(1, 2, 4, 4), num_res_blocks=1),
    # 11.0M: GPU runs (model=small and model=base).
    "small": AutoencoderConfig(base_channels=64, channel_multipliers=(1, 2, 2, 4), num_res_blocks=2),
}


class LatentDistribution:
    """Diagonal Gaussian posterior q(z | x) over latents of shape (B, C, h, w)."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        # Clamped so an untrained or diverging encoder cannot produce inf/0 variances.
        self.logvar = logvar.clamp(-30.0, 20.0)

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        eps = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per element, averaged to a scalar."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar).mean()


class ResBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Encoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        layers: list[nn.Module] = []
        width = widths[0]
        for level, level_width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(width, level_width, config.num_groups))
                width = level_width
            if level < config.num_downsamplings:
                layers.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        layers.append(ResBlock(width, width, config.num_groups))
        self.blocks = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(config.num_groups, width)
        self.conv_out = nn.Conv2d(width, 2 * config.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, 3, H, W) -> mean and logvar stacked on channels, (B, 2C, H/8, W/8)."""
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))


class Decoder(nn.Module):
    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_multipliers]
        width = widths[-1]
        self.conv_in = nn.Conv2d(config.latent_channels, width, 3, padding=1)
        layers: list[nn.Module] = [ResBlock(width, width, config.num_groups)]
        for level in reversed(range(len(widths))):
            for _ in range(config.num_res_blocks):
                layers.append(ResBlock(width, widths[level], config.num_groups))
                width = widths[level]
            if level > 0:
                # Nearest upsampling + conv instead of transposed conv: no checkerboard artifacts,
                # which would read as speckle around small objects.
                layers.append(nn.Upsample(scale_factor=2.0, mode="nearest"))
                layers.append(nn.Conv2d(width, width, 3, padding=1))
        self.blocks = nn.Sequential(*layers)
        self.norm_out = nn.GroupNorm(config.num_groups, width)
        self.conv_out = nn.Conv2d(width, config.in_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z: (B, C, h, w) -> frames (B, 3, 8h, 8w), unbounded (about [-1, 1])."""
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(z)))))


class FrameAutoencoder(nn.Module):
    """Frames in [-1, 1] <-> latents; `latent_shift`/`latent_scale` normalize latents for the DiT."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        # Per-channel latent statistics, set from data by `set_latent_statistics`; buffers so they
        # travel with the state_dict and the device. Identity until set.
        self.register_buffer("latent_shift", torch.zeros(config.latent_channels))
        self.register_buffer("latent_scale", torch.ones(config.latent_channels))

    def _check_frames(self, x: torch.Tensor) -> None:
        f = self.config.downsample_factor
        assert x.ndim == 4 and x.shape[1] == self.config.in_channels, (
            f"frames of shape {tuple(x.shape)}: expected (B, {self.config.in_channels}, H, W)"
        )
        assert x.shape[-2] % f == 0 and x.shape[-1] % f == 0, (
            f"frame size {tuple(x.shape[-2:])} must divide by the downsample factor {f}"
        )

    def encode(self, x: torch.Tensor) -> LatentDistribution:
        """x: (B, 3, H, W) float in [-1, 1] -> posterior over raw latents (B, C, H/8, W/8)."""
        self._check_frames(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)  # 2 x (B, C, h, w)
        return LatentDistribution(mean, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z: raw latents (B, C, h, w) -> frames (B, 3, 8h, 8w), about [-1, 1] (not clamped)."""
        assert z.ndim == 4 and z.shape[1] == self.config.latent_channels, (
            f"latents of shape {tuple(z.shape)}: expected (B, {self.config.latent_channels}, h, w)"
        )
        return self.decoder(z)

    def forward(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, LatentDistribution]:
        """x: (B, 3, H, W) in [-1, 1] -> (reconstruction (B, 3, H, W), posterior).

        In training mode the decoder sees a posterior sample plus `latent_noise_std` extra noise;
        in eval mode the posterior mean.
        """
        posterior = self.encode(x)
        if not self.training:
            return self.decode(posterior.mode()), posterior
        z = posterior.sample(generator)
        if self.config.latent_noise_std > 0:
            channel_std = z.detach().std(dim=(0, 2, 3), keepdim=True)  # (1, C, 1, 1)
            noise = torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
            z = z + self.config.latent_noise_std * channel_std * noise
        return self.decode(z), posterior

    # --- latent normalization -------------------------------------------------------------------

    def _channel_view(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return t.to(like.dtype).view(-1, 1, 1)  # (C, 1, 1): broadcasts over (..., C, h, w)

    def normalize(self, z: torch.Tensor) -> torch.Tensor:
        """Raw latents (..., C, h, w) -> about zero-mean, unit-variance latents for the DiT."""
        return (z - self._channel_view(self.latent_shift, z)) / self._channel_view(self.latent_scale, z)

    def denormalize(self, z: torch.Tensor) -> torch.Tensor:
        """Inverse of `normalize`."""
        return z * self._channel_view(self.latent_scale, z) + self._channel_view(self.latent_shift, z)

    @torch.no_grad()
    def set_latent_statistics(self, latents: torch.Tensor, eps: float = 1e-6) -> None:
        """Set shift/scale to the per-channel mean/std of raw latents (B, C, h, w) from data."""
        assert latents.ndim == 4 and latents.shape[1] == self.config.latent_channels, (
            f"latents of shape {tuple(latents.shape)}: expected (B, {self.config.latent_channels}, h, w)"
        )
        self.latent_shift.copy_(latents.mean(dim=(0, 2, 3)))
        self.latent_scale.copy_(latents.std(dim=(0, 2, 3)).clamp_min(eps))

    # --- uint8 boundary -------------------------------------------------------------------------

    @torch.no_grad()
    def encode_frames(
        self, frames: torch.Tensor, generator: torch.Generator | None = None, sample: bool = False
    ) -> torch.Tensor:
        """uint8 frames (..., 3, H, W) -> normalized latents (..., C, H/8, W/8).

        Any leading dims (e.g. (B, T)) are kept. `sample=True` draws from the posterior instead of
        taking its mean.
        """
        lead = frames.shape[:-3]
        x = uint8_to_unit(frames).flatten(0, -4) if lead else uint8_to_unit(frames)[None]  # (B*, 3, H, W)
        posterior = self.encode(x.to(self.latent_shift.device))
        z = posterior.sample(generator) if sample else posterior.mode()
        z = self.normalize(z)
        return z.reshape(*lead, *z.shape[1:])  # (..., C, h, w)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalized latents (..., C, h, w) -> uint8 frames (..., 3, 8h, 8w)."""
        lead = latents.shape[:-3]
        z = latents.flatten(0, -4) if lead else latents[None]  # (B*, C, h, w)
        x = self.decode(self.denormalize(z))
        return unit_to_uint8(x).reshape(*lead, *x.shape[1:])  # (..., 3, H, W)


def uint8_to_unit(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) in [0, 255] -> float32 in [-1, 1]."""
    assert frames.dtype == torch.uint8, f"frames have dtype {frames.dtype}: expected torch.uint8"
    return frames.float() / 127.5 - 1.0


def unit_to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float (..., 3, H, W) in [-1, 1] -> uint8 in [0, 255], clamped and rounded."""
    return ((x.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


@torch.no_grad()
def local_background(frames: torch.Tensor, config: AutoencoderConfig) -> torch.Tensor:
    """Per-pixel background color (B, 3, H, W): a coarse local median, blind to small objects."""
    B, C, H, W = frames.shape
    pool, window = config.background_pool, config.background_window
    assert H % pool == 0 and W % pool == 0, f"frame size {(H, W)} must divide by background_pool={pool}"
    cells = F.avg_pool2d(frames, pool)  # (B, 3, H/p, W/p)
    padded = F.pad(cells, (window // 2,) * 4, mode="replicate")
    patches = F.unfold(padded, window)  # (B, 3*k*k, H/p * W/p)
    patches = patches.view(B, C, window * window, H // pool, W // pool)  # (B, 3, k*k, H/p, W/p)
    background = patches.median(dim=2).values  # (B, 3, H/p, W/p)
    return F.interpolate(background, scale_factor=pool, mode="nearest")  # (B, 3, H, W)


@torch.no_grad()
def object_weight_map(frames: torch.Tensor, config: AutoencoderConfig) -> torch.Tensor:
    """Soft object mask (B, 1, H, W) in [0, 1] from frames (B, 3, H, W) in [-1, 1], no labels.

    A pixel is object-like when its color is far from the local background (`local_background`).
    No masks needed, so the same loss works on any episode data, and colored backgrounds (a brown
    table) are not mistaken for objects the way a saturation measure would.
    """
    rgb = (frames + 1.0) / 2.0  # (B, 3, H, W) in [0, 1]
    distance = (rgb - local_background(rgb, config)).abs().amax(dim=1, keepdim=True)  # (B, 1, H, W)
    low, high = config.object_threshold_low, config.object_threshold_high
    mask = ((distance - low) / (high - low)).clamp(0.0, 1.0)
    if config.object_dilation > 0:
        k = 2 * config.object_dilation + 1
        mask = F.max_pool2d(mask, kernel_size=k, stride=1, padding=config.object_dilation)
    return mask


def psnr(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR in dB of reconstructions x against frames y (B, 3, H, W) in [-1, 1] (peak-to-peak 2),
    pooled over the batch, optionally weighted per pixel (B, 1, H, W); see ``worldsim.metrics``."""
    return psnr_from_mse(weighted_mse(x.clamp(-1.0, 1.0), y, weight), peak=2.0)


def autoencoder_loss(
    model: FrameAutoencoder, frames: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Object-weighted L1 + L2 reconstruction + KL for frames (B, 3, H, W) in [-1, 1].

    Pixel weights are 1 on background and `object_weight` on object pixels, normalized by their
    sum so the loss scale does not depend on how many objects a batch holds.
    """
    config = model.config
    recon, posterior = model(frames, generator=generator)
    mask = object_weight_map(frames, config)  # (B, 1, H, W)
    weight = 1.0 + (config.object_weight - 1.0) * mask
    err = recon - frames
    per_pixel = err.abs().mean(dim=1, keepdim=True) + config.l2_weight * err.square().mean(
        dim=1, keepdim=True
    )  # (B, 1, H, W)
    rec = (per_pixel * weight).sum() / weight.sum()
    kl = posterior.kl()
    loss = rec + config.kl_weight * kl
    with torch.no_grad():
        has_objects = mask.sum() > 0
        logs = {
            "loss": loss.detach(),
            "recon": rec.detach(),
            "kl": kl.detach(),
            "psnr": psnr(recon.detach(), frames),
            # NaN when no pixel of the batch looks like an object, rather than a misleading number
            # (chosen on the device: branching on has_objects would make the step wait for the GPU).
            "object_psnr": torch.where(has_objects, psnr(recon.detach(), frames, mask), float("nan")),
            "latent_std": posterior.mean.detach().std(),
        }
    return loss, logs
