"""``WorldModel``: a trained world as one object: encode, decode, roll out, or step it batch by batch.

    model = WorldModel.from_checkpoint("runs/default/model.pt")         # the file `worldsim train` exports
    frames = model.rollout(context, actions, ["a red ball"], horizon=16)  # (B, 16, H, W, 3) uint8
    first = model.reset(context, context_actions, ["a red ball"], seed=0)
    out = model.step(actions_now)                                       # frames, latents, reward, terminated

Public boundary: frames are uint8 ``(..., H, W, 3)`` (numpy or torch, as Gymnasium and the evals
hold them) and come back as numpy; latents are float ``(..., C, h, w)`` torch tensors on the
model's device (they only ever go back into the model). Actions follow the datasets:
``actions[:, t]`` is taken at frame t and leads to frame t + 1, so a rollout from T0 context
frames over H new ones takes ``(B, T0 + H - 1, *A)`` actions and ``reset`` takes the ``T0 - 1``
actions between its context frames. Everything runs in ``torch.inference_mode`` with the EMA
weights the export holds.

The stepped API keeps a KV cache of at most ``window`` past frames (default: the ``max_frames - 1``
the DiT trained on), so memory and step time stay flat however long it runs. ``reset(rows=...)``
restarts some rows of the batch while the others keep going (vector-env autoreset): the new rows'
context is written into a cache aligned to the same time positions and spliced in. One cache holds
one frame count for the whole batch, so when the restarted rows bring fewer frames than the others
hold, the others' oldest frames are dropped to match (never, when every reset brings ``window``
frames).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Sequence, Union

import gymnasium
import numpy as np
import torch
from gymnasium import spaces

from worldsim.flow import (CONTEXT_NOISE, WARM_START, guidance_passes, rollout as flow_rollout, sample_next_frame,
                           write_frames)
from worldsim.models.autoencoder import FrameAutoencoder
from worldsim.models.dit import VideoDiT, VideoDiTConfig
from worldsim.models.kv_cache import KVCache
from worldsim.models.text import TextCondition, TextEncoder, TextEncoderConfig
from worldsim.training.checkpoint import (
    CheckpointError,
    autoencoder_config,
    export_checkpoint,
    load_checkpoint,
    part_state_dict,
    worldsim_record,
)
from worldsim.training.dynamics_module import model_actions

PARTS = ("dit", "text", "autoencoder")
ArrayLike = Union[np.ndarray, torch.Tensor]


class StepOutput(NamedTuple):
    """One new frame per row of the batch."""

    frames: Optional[np.ndarray]  # (B, H, W, 3) uint8; None when the step was asked not to decode
    latents: torch.Tensor  # (B, C, h, w) on the model's device
    reward: np.ndarray  # (B,) float32: the reward head's prediction for the transition into the frame
    terminated: np.ndarray  # (B,) bool: sigmoid(termination logit) > 0.5
    termination_probability: np.ndarray  # (B,) float32


@dataclasses.dataclass
class SamplingConfig:
    steps: int = 1  # flow integration steps per new frame (network passes per guidance pass), from warm_start on
    sampler: str = "euler"  # euler | heun (2 * steps - 1 passes)
    cfg_text: float = 1.0  # text guidance scale; 1 is none and costs no extra pass
    cfg_action: float = 1.0  # action guidance scale; 1 is none
    window: Optional[int] = None  # past frames the KV cache holds; None: the DiT's max_frames - 1
    residual: bool = True  # frames = last real context frame + decode(latent) - decode(its latent); False: decode(latent)
    min_change: int = 0  # residual: keep the real pixel where the decoded change is <= this (0-255) in every channel
    warm_start: float = WARM_START  # tau where a frame starts from the previous one (flow.WARM_START); 0: from noise
    first_steps: int = 4  # steps of a frame with no frame before it (imagined from text alone), from pure noise

    def __post_init__(self) -> None:
        if self.sampler not in ("euler", "heun"):
            raise ValueError(f"sampler={self.sampler!r}: use 'euler' or 'heun'")
        for name in ("steps", "first_steps"):
            if not 1 <= int(getattr(self, name)) <= 64:
                raise ValueError(f"{name}={getattr(self, name)} is not in [1, 64]")
        if not 0 <= int(self.min_change) <= 255:
            raise ValueError(f"min_change={self.min_change} is not in [0, 255] (levels of a uint8 pixel)")
        if self.window is not None and self.window < 1:
            raise ValueError(f"window={self.window}: the cache must hold at least 1 past frame")
        if not 0.0 <= self.warm_start < 1.0:
            raise ValueError(f"warm_start={self.warm_start} is not in [0, 1): 0 samples each frame from pure noise")


def space_from_description(description: Optional[Mapping[str, Any]]) -> Optional[gymnasium.Space]:
    """The Gymnasium space a dataset manifest describes (``worldsim.data.recorder.describe_space``)."""
    if not description:
        return None
    kind = description.get("type")
    if kind == "Box":
        shape = tuple(description["shape"])
        dtype = np.dtype(description.get("dtype", "float32"))
        if "low" in description:
            low = np.asarray([float(v) for v in description["low"]], dtype).reshape(shape)
            high = np.asarray([float(v) for v in description["high"]], dtype).reshape(shape)
        else:  # large boxes are stored without bounds
            low, high = np.full(shape, -np.inf, dtype), np.full(shape, np.inf, dtype)
        return spaces.Box(low, high, shape, dtype)
    if kind == "Discrete":
        return spaces.Discrete(int(description["n"]), start=int(description.get("start", 0)))
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(np.asarray(description["nvec"], np.int64))
    if kind == "MultiBinary":
        return spaces.MultiBinary(description["n"])
    raise CheckpointError(f"action space {dict(description)} cannot be rebuilt: worldsim models take Box, "
                          "Discrete, MultiDiscrete or MultiBinary actions")


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class WorldModel:
    """The DiT, its text encoder and the frame autoencoder of one exported model file, for inference.

    Build it with :meth:`from_checkpoint`. ``rollout`` is stateless; ``reset``/``step`` keep one
    batch's KV cache on this object, so give every env its own ``WorldModel``.
    """

    def __init__(self, dit: VideoDiT, text_encoder: TextEncoder, autoencoder: FrameAutoencoder,
                 record: Mapping[str, Any], device: Union[str, torch.device, None] = None) -> None:
        self.device = torch.device(device or default_device())
        self.dit = dit.to(self.device).eval().requires_grad_(False)
        self.text_encoder = text_encoder.to(self.device).eval().requires_grad_(False)
        self.autoencoder = autoencoder.to(self.device).eval().requires_grad_(False)
        self.record = dict(record)
        data = self.record.get("data", {})
        self.data = dict(data)
        self.action_space = space_from_description(data.get("action_space"))
        self._action_description = data.get("action_space")
        frame_shape = data.get("frame_shape") or (data.get("observation_space") or {}).get("shape")
        factor = autoencoder.config.downsample_factor
        latent = dit.cfg.latent_size * factor
        self.frame_shape: tuple[int, int, int] = tuple(frame_shape) if frame_shape else (latent, latent, 3)
        dynamics = self.record.get("configs", {}).get("dynamics", {})
        self.context_noise = float(dynamics.get("flow", {}).get("context_noise", CONTEXT_NOISE))
        self.default_sampling = recorded_sampling(self.record)
        self.sampling = self.default_sampling
        self._cache: Optional[KVCache] = None
        self._batch = 0
        self._stream: Optional[torch.Generator] = None
        self._text: Optional[TextCondition] = None
        self._passes = guidance_passes(1.0, 1.0, False, self.has_actions)
        self._latents: Optional[torch.Tensor] = None
        self._anchor: Optional[ResidualAnchor] = None  # what residual decoding adds each row's new frames to

    # -- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: Union[str, torch.device, None] = None) -> "WorldModel":
        """The model of an exported file (``<run>/model.pt``); ``device`` None picks CUDA when present."""
        device = torch.device(device or default_device())
        checkpoint = load_checkpoint(path, map_location=device)
        record = checkpoint["worldsim"]
        configs = record.get("configs", {})
        held = sorted(checkpoint.get("weights", {})) if record.get("kind") == "export" else sorted(record.get("parts", {}))
        missing = [part for part in PARTS if part not in held or part not in configs]
        if record.get("kind") != "export" or missing:
            raise CheckpointError(
                f"{path} is a {record.get('kind')!r} {record.get('stage')!r} checkpoint holding parts {held}; a "
                f"WorldModel needs an exported file with {list(PARTS)} and their configs: pass the <run>/model.pt "
                "that `worldsim train stage=all` (or stage=dynamics) writes")
        try:
            dit_cfg = VideoDiTConfig(**configs["dit"])
            text_cfg = TextEncoderConfig(**configs["text"])
            dit, text, autoencoder = VideoDiT(dit_cfg), TextEncoder(text_cfg), FrameAutoencoder(autoencoder_config(record))
            for name, module in (("dit", dit), ("text", text), ("autoencoder", autoencoder)):
                module.load_state_dict(part_state_dict(checkpoint, name))
        except (TypeError, RuntimeError, AssertionError) as error:
            raise CheckpointError(f"{path}: its weights or configs do not fit this worldsim's networks ({error}); "
                                  "re-export it with this worldsim") from None
        if autoencoder.config.latent_channels != dit_cfg.latent_channels:
            raise CheckpointError(f"{path}: the autoencoder has {autoencoder.config.latent_channels} latent channels "
                                  f"but the DiT {dit_cfg.latent_channels}: the parts come from different runs")
        return cls(dit, text, autoencoder, record, device)

    # -- facts ---------------------------------------------------------------------------------------

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the world the model was trained on ("" when unknown)."""
        return str(self.data.get("env_id", ""))

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.data.get("env_kwargs") or {})

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.dit.cfg
        return (cfg.latent_channels, cfg.latent_size, cfg.latent_size)

    @property
    def window(self) -> int:
        return self.sampling.window or self.dit.cfg.max_frames - 1

    @property
    def has_actions(self) -> bool:
        return self.dit.cfg.action_kind == "discrete" or self.dit.cfg.action_dim > 0

    # -- boundary conversions ------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, frames: ArrayLike) -> torch.Tensor:
        """uint8 frames (..., H, W, 3), numpy or torch -> normalized latents (..., C, h, w) on the device."""
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        if x.dtype != torch.uint8 or x.ndim < 3 or tuple(x.shape[-3:]) != self.frame_shape:
            raise ValueError(f"frames are {x.dtype} {tuple(x.shape)}; this model reads uint8 (..., "
                             f"{', '.join(map(str, self.frame_shape))}) frames (height, width, RGB)")
        return self.autoencoder.encode_frames(x.to(self.device).movedim(-1, -3))  # (..., C, h, w)

    @torch.inference_mode()
    def decode(self, latents: ArrayLike) -> np.ndarray:
        """Normalized latents (..., C, h, w) -> uint8 frames (..., H, W, 3) as numpy."""
        z = torch.as_tensor(latents, device=self.device, dtype=torch.float32)
        return self.autoencoder.decode_latents(z).movedim(-3, -1).cpu().numpy()  # (..., H, W, 3)

    def encode_text(self, text: Union[str, Sequence[str], None], batch: int) -> Optional[TextCondition]:
        """One caption per row (a str is repeated); an empty caption is the null text; None: no text."""
        if text is None:
            return None
        captions = [text] * batch if isinstance(text, str) else [str(t) for t in text]
        if len(captions) != batch:
            raise ValueError(f"{len(captions)} captions for a batch of {batch}: give one per row or a single str")
        with torch.inference_mode():
            condition = self.text_encoder.encode_text(captions, self.device)
            empty = torch.tensor([not c for c in captions], device=self.device)
            return TextCondition(condition.tokens, condition.mask & ~empty[:, None], condition.pooled)

    def model_actions(self, actions: Optional[ArrayLike], batch: int, frames: int) -> Optional[torch.Tensor]:
        """Dataset actions (B, T, *A) -> what the DiT reads, checked against the action space."""
        if not self.has_actions:
            return None
        if actions is None:
            raise ValueError(f"this model was trained with actions {self.action_space}: pass them")
        a = torch.as_tensor(np.asarray(actions) if not isinstance(actions, torch.Tensor) else actions)
        shape = tuple(self.action_space.shape) if self.action_space is not None else ()
        if tuple(a.shape) != (batch, frames, *shape):
            raise ValueError(f"actions have shape {tuple(a.shape)}; expected (B, T, *A) = {(batch, frames, *shape)} "
                             f"for actions of {self.action_space}")
        return model_actions(a.to(self.device), self._action_description)

    # -- rollout -------------------------------------------------------------------------------------

    def _generator(self, seed: Optional[int], generator: Optional[torch.Generator]) -> Optional[torch.Generator]:
        if generator is not None:
            return generator
        return None if seed is None else torch.Generator(device=self.device).manual_seed(int(seed))

    @torch.inference_mode()
    def sampling_with(self, **settings: Any) -> SamplingConfig:
        """``default_sampling`` with the settings a caller set (those not None), checked."""
        return dataclasses.replace(self.default_sampling, **given_settings(**settings))

    def rollout(self, context_frames: ArrayLike, actions: Optional[ArrayLike], text: Union[str, Sequence[str], None],
                horizon: int, seed: Optional[int] = None, generator: Optional[torch.Generator] = None,
                return_latents: bool = False, **sampling: Any):
        """Frames uint8 (B, horizon, H, W, 3) after context_frames uint8 (B, T0, H, W, 3).

        actions (B, T0 + horizon - 1, *A): ``actions[:, t]`` taken at frame t (None for worlds without
        actions); text: one caption per row, a str for all, or None. T0 may be 0 (text to video).
        ``sampling``: ``SamplingConfig`` fields (``steps``, ``sampler``, ``cfg_text``, ``cfg_action``,
        ``window``, ``residual``, ``min_change``, ``warm_start``, ``first_steps``); unset ones keep
        ``default_sampling``. With
        ``return_latents`` also returns the latents (B, horizon, C, h, w), rewards and termination
        logits (B, horizon).
        """
        s = dataclasses.replace(self.default_sampling, **sampling)
        B, T0 = int(context_frames.shape[0]), int(context_frames.shape[1])
        latents = self.encode(context_frames) if T0 else torch.zeros(B, 0, *self.latent_shape, device=self.device)
        dit_actions = self.model_actions(actions, B, T0 + horizon - 1)
        out = flow_rollout(self.dit, latents, dit_actions, self.encode_text(text, B), horizon, s.steps, s.sampler,
                           s.cfg_text, s.cfg_action, self.context_noise, s.window or self.dit.cfg.max_frames - 1,
                           self._generator(seed, generator), s.warm_start, s.first_steps)
        frames = self.decode(out.latents)
        if s.residual and T0:
            anchor = self.residual_anchor(context_frames[:, -1], latents[:, -1])
            frames = np.stack([anchor.frames(frames[:, t], s.min_change) for t in range(horizon)], axis=1)
        return (frames, out) if return_latents else frames

    def residual_anchor(self, frames: ArrayLike, latents: torch.Tensor) -> "ResidualAnchor":
        """Real frames (B, H, W, 3) uint8 and the decoding of their latents (B, C, h, w), the anchor of
        residual decoding (``ResidualAnchor``)."""
        real = np.asarray(frames.cpu() if isinstance(frames, torch.Tensor) else frames).astype(np.int16)
        return ResidualAnchor(real, self.decode(latents).astype(np.int16), np.ones(len(real), bool))

    # -- stepped world -------------------------------------------------------------------------------

    @property
    def batch_size(self) -> int:
        return self._batch

    @property
    def cache(self) -> Optional[KVCache]:
        """The KV cache of the current batch (None before ``reset``)."""
        return self._cache

    @torch.inference_mode()
    def reset(self, context_frames: Optional[ArrayLike], context_actions: Optional[ArrayLike] = None,
              text: Union[str, Sequence[str], None] = None, *, rows: Optional[ArrayLike] = None, imagine: int = 1,
              seed: Optional[int] = None, generator: Optional[torch.Generator] = None, decode: bool = True,
              **sampling: Any) -> StepOutput:
        """Start (or, with ``rows``, restart part of) a stepped batch; returns its latest frame per row.

        context_frames uint8 (R, T0, H, W, 3), or None / T0 = 0 to imagine ``imagine`` frames from
        the text alone; context_actions (R, T0 - 1, *A), the actions between the context frames;
        text as in ``rollout``. rows: bool mask (B,) or indices of the rows to restart, R of them;
        None restarts the whole batch with B = R. The returned frames are the last context frame
        as given (real pixels), or the last imagined frame decoded; reward is 0 and terminated
        False. ``sampling``: ``SamplingConfig`` fields for the new batch (full resets only).
        """
        if rows is not None and (sampling or seed is not None or generator is not None):
            raise ValueError(f"reset(rows=...) restarts rows of the running batch, which keeps its sampling settings "
                             f"and random stream: drop {sorted(sampling) + (['seed'] if seed is not None else [])}")
        R = int(context_frames.shape[0]) if context_frames is not None else (
            len(text) if text is not None and not isinstance(text, str) else None)
        if R is None:
            raise ValueError("reset needs context frames, or captions (one per row) to imagine from")
        T0 = int(context_frames.shape[1]) if context_frames is not None else 0
        if T0 == 0 and imagine < 1:
            raise ValueError(f"imagine={imagine}: with no context frames at least 1 frame must be imagined")
        latents = self.encode(context_frames) if T0 else None  # (R, T0, C, h, w)
        actions = action_mask = None
        if T0 and self.has_actions:
            if T0 > 1 and context_actions is not None:
                given = self.model_actions(context_actions, R, T0 - 1)
                actions = torch.cat([torch.zeros_like(given[:, :1]), given], dim=1)  # frame 0: none led to it
                action_mask = (torch.arange(T0, device=self.device) > 0).expand(R, T0)
            else:  # unknown actions between the context frames: the learned null action
                cfg = self.dit.cfg
                actions = (torch.zeros(R, T0, dtype=torch.long, device=self.device) if cfg.action_kind == "discrete"
                           else torch.zeros(R, T0, cfg.action_dim, device=self.device))
                action_mask = torch.zeros(R, T0, dtype=torch.bool, device=self.device)
        condition = self.encode_text(text, R)

        if rows is None:
            self.sampling = dataclasses.replace(self.sampling, **sampling)
            self._stream = self._generator(seed, generator)
            self._batch, self._text = R, condition
            self._passes = guidance_passes(self.sampling.cfg_text, self.sampling.cfg_action, condition is not None,
                                           self.has_actions)
            self._cache = self.dit.new_cache(self.window)
            cache, index = self._cache, None
        else:
            if self._cache is None or self._cache.frames == 0:
                raise RuntimeError("reset(rows=...) restarts rows of a running batch: call reset without rows first")
            index = self._row_index(rows)
            if len(index) != R:
                raise ValueError(f"rows selects {len(index)} rows but the context holds {R}")
            if (condition is None) != (self._text is None):
                raise ValueError("the batch was started with text=None; restarted rows must use text=None too"
                                 if self._text is None else "the batch has text: give the restarted rows captions "
                                 "('' for none)")
            if condition is not None:
                self._text = TextCondition(*(t.clone() for t in (self._text.tokens, self._text.mask, self._text.pooled)))
                self._text.tokens[index], self._text.mask[index], self._text.pooled[index] = (
                    condition.tokens, condition.mask, condition.pooled)
            cache = self.dit.new_cache(self.window)
            cache.next_position = self._cache.next_position - (T0 or imagine)  # same time positions as the batch

        if T0:
            write_frames(self.dit, cache, latents, actions, action_mask, condition, self._passes,
                         self.context_noise, self._stream)
            last = latents[:, -1]
        else:
            last = None
            for _ in range(imagine):  # text to video: no context, null actions
                steps = self.sampling.first_steps if last is None else self.sampling.steps
                last = sample_next_frame(self.dit, cache, R, None, None, condition, self._passes, steps,
                                         self.sampling.sampler, self._stream, last, self.sampling.warm_start)
                write_frames(self.dit, cache, last[:, None], None, None, condition, self._passes,
                             self.context_noise, self._stream)
        anchor = (self.residual_anchor(context_frames[:, -1], latents[:, -1]) if T0 and self.sampling.residual
                  else ResidualAnchor.direct(R, self.frame_shape))  # rows imagined from text decode directly
        if index is None:
            self._latents = last.clone()
            self._anchor = anchor
        else:
            self._splice(cache, index)
            self._latents = self._latents.clone()
            self._latents[index] = last
            self._anchor = self._anchor.replaced(index.cpu().numpy(), anchor)
        if not decode:
            frames = None
        elif T0:
            frames = np.array(context_frames[:, -1].cpu() if isinstance(context_frames, torch.Tensor)
                              else context_frames[:, -1], np.uint8)
        else:
            frames = self.decode(last)
        zeros = np.zeros(R, np.float32)
        return StepOutput(frames, last, zeros, np.zeros(R, bool), zeros.copy())

    def _row_index(self, rows: ArrayLike) -> torch.Tensor:
        rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
        index = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64).ravel()
        if rows.dtype == bool and rows.shape != (self._batch,):
            raise ValueError(f"rows mask has shape {rows.shape}; the batch has {self._batch} rows")
        if index.size and (index.min() < 0 or index.max() >= self._batch):
            raise ValueError(f"rows {index.tolist()} are not all in [0, {self._batch})")
        return torch.as_tensor(index, device=self.device)

    def _splice(self, fresh: KVCache, index: torch.Tensor) -> None:
        """Put ``fresh``'s rows (one per restarted row, per guidance pass) into the batch cache at ``index``."""
        main, B, R, G = self._cache, self._batch, len(index), len(self._passes)
        frames = min(main.frames, fresh.frames)
        tokens = frames * self.dit.cfg.tokens_per_frame
        rows = (torch.arange(G, device=self.device)[:, None] * B + index[None]).flatten()  # (G*R,) pass-major
        for layer in range(len(main.keys)):
            for held, new in ((main.keys, fresh.keys), (main.values, fresh.values)):
                merged = held[layer][:, :, -tokens:].clone()
                merged[rows] = new[layer][:, :, -tokens:]
                held[layer] = merged
        main.frames = frames

    @torch.inference_mode()
    def step(self, actions: Optional[ArrayLike] = None, decode: bool = True) -> StepOutput:
        """The next frame of every row for ``actions`` (B, *A), the actions taken at the current frames."""
        if self._cache is None:
            raise RuntimeError("step() before reset(): start a batch with reset(context_frames, ...)")
        B = self._batch
        a = None
        if self.has_actions:
            batched = None if actions is None else (actions[:, None] if isinstance(actions, torch.Tensor)
                                                    else np.asarray(actions)[:, None])
            a = self.model_actions(batched, B, 1)  # (B, 1, A) or (B, 1)
        mask = torch.ones(B, 1, dtype=torch.bool, device=self.device) if a is not None else None
        s = self.sampling
        x = sample_next_frame(self.dit, self._cache, B, a, mask, self._text, self._passes, s.steps, s.sampler,
                              self._stream, self._latents, s.warm_start)  # (B, C, h, w)
        reward, logit = write_frames(self.dit, self._cache, x[:, None], a, mask, self._text, self._passes,
                                     self.context_noise, self._stream)
        self._latents = x
        probability = torch.sigmoid(logit[:, 0].float())
        frames = self._anchor.frames(self.decode(x), s.min_change) if decode else None
        return StepOutput(frames, x, reward[:, 0].float().cpu().numpy(),
                          (probability > 0.5).cpu().numpy(), probability.cpu().numpy())

    @property
    def latents(self) -> Optional[torch.Tensor]:
        """The latest frame of every row (B, C, h, w), or None before ``reset``."""
        return self._latents

    def frames(self) -> np.ndarray:
        """The latest frame of every row (B, H, W, 3) uint8, decoded as ``step`` decodes it."""
        if self._latents is None:
            raise RuntimeError("frames() before reset(): start a batch with reset(context_frames, ...)")
        return self._anchor.frames(self.decode(self._latents), self.sampling.min_change)

    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now (bounded by the window)."""
        if self._cache is None:
            return 0
        return sum(t.numel() * t.element_size() for t in (*self._cache.keys, *self._cache.values) if t is not None)


def given_settings(**settings: Any) -> dict[str, Any]:
    """The sampling settings a caller set (those not None); the rest stay the model's ``default_sampling``."""
    return {name: value for name, value in settings.items() if value is not None}


def recorded_sampling(record: Mapping[str, Any]) -> SamplingConfig:
    """The sampling a model file asks for (its ``sampling`` record, see ``set_default_sampling``) over
    ``SamplingConfig``'s defaults."""
    fields = dict(record.get("sampling") or {})
    try:
        return SamplingConfig(**fields)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"the model file's default sampling {fields} is invalid ({error}): rewrite it with "
                              "worldsim.world_model.set_default_sampling(path, ...)") from None


def set_default_sampling(path: Union[str, Path], **fields: Any) -> Path:
    """Record in exported model file ``path`` how it samples unless told otherwise.

    ``fields`` are ``SamplingConfig`` fields (e.g. ``steps=2, warm_start=0.0`` for a model that
    samples better from noise); they replace any recorded before, and none clears the record.
    Every consumer of the file (``WorldModel``, the envs, ``worldsim eval``, ``bench``, ``play``,
    ``imagine``) then uses them where its caller sets nothing. The file is rewritten in place,
    atomically.
    """
    SamplingConfig(**fields)  # a misspelt or invalid field fails before the file is touched
    path = Path(path)
    checkpoint = load_checkpoint(path)
    if checkpoint["worldsim"].get("kind") != "export":
        raise CheckpointError(f"{path} is not an exported model file: set the sampling of the model.pt "
                              "that `worldsim train` exports")
    checkpoint["worldsim"] = {**checkpoint["worldsim"], "sampling": dict(fields)}
    tmp = path.with_name(f"{path.name}.tmp-sampling")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
    return path


@dataclasses.dataclass
class ResidualAnchor:
    """Per row, the last real context frame and the decoding of its latent: residual decoding's anchor.

    A new frame is the real context frame plus the decoded change, ``decode(latent) - decoded``.
    Where the scene does not change, the decoded future equals the decoded context frame, so the
    frame keeps the real context pixels rather than the autoencoder's approximation of them; where
    it changes, the frame gets the new decoded content plus the autoencoder's small error on the
    old. A tiny autoencoder loses a few dB on every frame, which direct decoding pays even on still
    background. ``min_change`` drops decoded changes of at most that many levels in every channel.
    """

    real: np.ndarray  # (B, H, W, 3) int16
    decoded: np.ndarray  # (B, H, W, 3) int16
    anchored: np.ndarray  # (B,) bool; False: the row decodes directly (imagined from text, no real frame)

    @classmethod
    def direct(cls, rows: int, frame_shape: Sequence[int]) -> "ResidualAnchor":
        zeros = np.zeros((rows, *frame_shape[:2], 3), np.int16)
        return cls(zeros, zeros.copy(), np.zeros(rows, bool))

    def replaced(self, index: np.ndarray, rows: "ResidualAnchor") -> "ResidualAnchor":
        """A copy with ``rows``'s anchors at ``index`` (the rows a partial reset restarted)."""
        new = ResidualAnchor(self.real.copy(), self.decoded.copy(), self.anchored.copy())
        new.real[index], new.decoded[index], new.anchored[index] = rows.real, rows.decoded, rows.anchored
        return new

    def frames(self, decoded: np.ndarray, min_change: int = 0) -> np.ndarray:
        """uint8 frames (B, H, W, 3) from the decoded new frames (B, H, W, 3) uint8."""
        change = decoded.astype(np.int16) - self.decoded
        if min_change:
            size = np.abs(change)  # channel by channel: a reduction over an axis of 3 is slow in numpy
            moved = (size[..., 0] > min_change) | (size[..., 1] > min_change) | (size[..., 2] > min_change)
            change *= (moved | ~self.anchored[:, None, None])[..., None]
        return np.clip(self.real + change, 0, 255).astype(np.uint8)


def export_modules(path: Union[str, Path], dit: VideoDiT, text_encoder: TextEncoder, autoencoder: FrameAutoencoder,
                   data: Mapping[str, Any], dynamics: Optional[Mapping[str, Any]] = None) -> Path:
    """Write networks (e.g. freshly built ones, for benchmarks and tests) as an exported model file.

    Goes through ``export_checkpoint`` from a minimal training-checkpoint layout, so the file is the
    one ``worldsim train`` writes. data: the meta a trained model records (``env_id``,
    ``env_kwargs``, ``action_space``, ``frame_shape``, ...).
    """
    configs = {"dit": dit.cfg, "text": text_encoder.config, "dynamics": dict(dynamics or {})}
    state = {**{f"dit.{k}": v for k, v in dit.state_dict().items()},
             **{f"text.{k}": v for k, v in text_encoder.state_dict().items()}}
    record = worldsim_record("dynamics", configs, data, parts={"dit": "dit.", "text": "text."})
    with tempfile.TemporaryDirectory(prefix="worldsim-export-") as tmp:
        ckpt = Path(tmp) / "modules.ckpt"
        torch.save({"worldsim": record, "state_dict": state, "global_step": 0}, ckpt)
        return export_checkpoint(ckpt, path, extra_parts={"autoencoder": autoencoder.state_dict()},
                                 extra_configs={"autoencoder": autoencoder.config})
