"""Networks: the video diffusion transformer (and, beside it, the autoencoder and text encoder)."""

from worldsim.models.autoencoder import AUTOENCODER_PRESETS, AutoencoderConfig, FrameAutoencoder, autoencoder_loss
from worldsim.models.dit import DIT_PRESETS, VideoDiT, VideoDiTConfig
from worldsim.models.kv_cache import KVCache
from worldsim.models.text import (
    TEXT_ENCODER_PRESETS,
    ByteTokenizer,
    TextCondition,
    TextEncoder,
    TextEncoderConfig,
    WordTokenizer,
)

__all__ = [
    "AUTOENCODER_PRESETS",
    "DIT_PRESETS",
    "TEXT_ENCODER_PRESETS",
    "AutoencoderConfig",
    "ByteTokenizer",
    "WordTokenizer",
    "FrameAutoencoder",
    "KVCache",
    "TextCondition",
    "TextEncoder",
    "TextEncoderConfig",
    "VideoDiT",
    "VideoDiTConfig",
    "autoencoder_loss",
]
