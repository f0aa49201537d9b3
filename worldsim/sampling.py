"""How a learned world samples its frames: one config for every command, env and Python call.

Every consumer takes the same ``SamplingConfig``: ``worldsim eval sampling.steps=2``, ``worldsim
play sampling.warm_start=0``, ``gymnasium.make("worldsim/WorldModel-v0", ..., sampling={"steps":
2})``, ``WorldModel.rollout(..., sampling=SamplingConfig(steps=2))``. A field left ``None`` is not
set: it takes the model file's recorded default (``worldsim.checkpoint.set_default_sampling``),
else the library's ``DEFAULT_SAMPLING``. Values are checked here, once, when a config is built,
so a bad setting fails before any work starts. Plain Python: importing it costs nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Union

SAMPLERS = ("euler", "heun")

#: tau at which sampling a new frame starts from the previous frame noised to that level, instead
#: of from pure noise at tau 0 (SDEdit's idea, applied along time). Consecutive frames differ by a
#: few pixels, so at this noise level the previous frame passes for a noisy copy of the next one:
#: what is left to integrate is the change, and still regions no longer pick up the sampling noise
#: of a whole integration. On the tiny CPU Physics model's tuning scenarios (docs/sampling.md) it
#: turned a horizon-1 loss to copy-last into a win and cut misses at horizon 4 from 12% to 3%.
WARM_START = 0.3


@dataclass
class SamplingConfig:
    steps: Optional[int] = None  # flow integration steps per new frame, from warm_start on (default 1)
    sampler: Optional[str] = None  # euler | heun (heun: 2 * steps - 1 network passes) (default euler)
    cfg_text: Optional[float] = None  # text guidance scale; 1 is none and costs no extra pass (default 1)
    cfg_action: Optional[float] = None  # action guidance scale; 1 is none (default 1)
    window: Optional[int] = None  # past frames the KV cache holds; None: the DiT's window, as trained
    residual: Optional[bool] = None  # last real frame + decoded change; False: decode directly (default true)
    min_change: Optional[int] = None  # residual: keep the real pixel where no channel changes more (default 0)
    warm_start: Optional[float] = None  # tau a frame starts at from the previous one; 0: pure noise (default 0.3)
    first_steps: Optional[int] = None  # steps of a frame with none before it (text alone), from noise (default 4)
    memory: Optional[bool] = None  # a memory model's bank of frames past the window; false: window only (default true)
    generated_noise: Optional[float] = None  # tau its own frames enter the KV cache at; None: the model's context noise

    def __post_init__(self) -> None:
        problems = []
        if self.sampler is not None and self.sampler not in SAMPLERS:
            problems.append(f"sampler={self.sampler!r} is not one of {SAMPLERS}")
        for name in ("steps", "first_steps"):
            value = getattr(self, name)
            if value is not None and not 1 <= int(value) <= 64:
                problems.append(f"{name}={value} is not in [1, 64]")
        if self.min_change is not None and not 0 <= int(self.min_change) <= 255:
            problems.append(f"min_change={self.min_change} is not in [0, 255] (levels of a uint8 pixel)")
        for name in ("cfg_text", "cfg_action"):
            value = getattr(self, name)
            if value is not None and not float(value) >= 0:
                problems.append(f"{name}={value} is negative: 1 is no guidance, 0 ignores the condition")
        if self.window is not None and int(self.window) < 1:
            problems.append(f"window={self.window}: the cache must hold at least 1 past frame")
        if self.warm_start is not None and not 0.0 <= float(self.warm_start) < 1.0:
            problems.append(f"warm_start={self.warm_start} is not in [0, 1): 0 samples each frame from pure noise")
        if self.generated_noise is not None and not 0.0 < float(self.generated_noise) <= 1.0:
            problems.append(
                f"generated_noise={self.generated_noise} is not in (0, 1]: it is the tau (1 clean, 0 pure noise) "
                "at which generated frames enter the cache"
            )
        if problems:
            raise ValueError(f"sampling: {'; '.join(problems)}")

    @classmethod
    def of(cls, value: Union["SamplingConfig", Mapping[str, Any], None]) -> "SamplingConfig":
        """``value`` as a SamplingConfig: a config, a dict of its fields, or None (nothing set)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"sampling={value!r}: give a SamplingConfig or a dict of its fields")
        unknown = sorted(set(value) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"sampling has no fields {unknown}: use {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**value)

    def given(self) -> dict[str, Any]:
        """The fields that are set (not None)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def over(self, base: "SamplingConfig") -> "SamplingConfig":
        """``base`` with this config's set fields in place of its own."""
        return dataclasses.replace(base, **self.given())


#: What a model samples with when neither its file nor its caller says otherwise. The warm start
#: suits the CPU-sized models (docs/sampling.md); larger models record their own default.
DEFAULT_SAMPLING = SamplingConfig(
    steps=1,
    sampler="euler",
    cfg_text=1.0,
    cfg_action=1.0,
    window=None,
    residual=True,
    min_change=0,
    warm_start=WARM_START,
    first_steps=4,
    memory=True,
    generated_noise=None,
)
