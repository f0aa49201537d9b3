"""Networks: the video diffusion transformer (and, beside it, the autoencoder and text encoder)."""

from worldsim.models.dit import DIT_PRESETS, VideoDiT, VideoDiTConfig
from worldsim.models.kv_cache import KVCache
