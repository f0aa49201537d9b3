"""``WorldModel``: a trained world as one stateless object: load it, encode, decode, roll out.

    model = WorldModel.from_checkpoint("runs/default/model.pt")         # the file `worldsim train` exports
    frames = model.rollout(context, actions, ["a red ball"], horizon=16)  # (B, 16, H, W, 3) uint8
    videos = model.generate(["a red ball is dropped"], frames=48, n=4)    # (4, 48, H, W, 3) uint8

To step it frame by frame, start a ``worldsim.WorldBatch`` on it: the batch owns the KV cache, so
several batches (envs) share one model's weights.

Public boundary: frames are uint8 ``(..., H, W, 3)`` (numpy or torch, as Gymnasium and the evals
hold them) and come back as numpy; latents are float ``(..., C, h, w)`` torch tensors on the
model's device (they only ever go back into the model). Actions follow the datasets:
``actions[:, t]`` is taken at frame t and leads to frame t + 1, so a rollout from T0 context
frames over H new ones takes ``(B, T0 + H - 1, *A)`` actions. Everything runs in
``torch.inference_mode`` with the EMA weights the export holds.

Inference imports no Lightning and no training code: only the networks, the flow samplers, the
checkpoint reader and the sampling config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import gymnasium
import numpy as np
import torch

from worldsim.checkpoint import (
    CheckpointError,
    autoencoder_config,
    load_checkpoint,
    part_state_dict,
    recorded_sampling,
)
from worldsim.flow import CONTEXT_NOISE, Generators, RolloutOutput
from worldsim.flow import rollout as flow_rollout
from worldsim.models.actions import model_actions
from worldsim.models.autoencoder import FrameAutoencoder
from worldsim.models.dit import VideoDiT, VideoDiTConfig
from worldsim.models.text import TextCondition, TextEncoder, TextEncoderConfig
from worldsim.sampling import SamplingConfig
from worldsim.spaces import check_action, space_from_description, zero_action

PARTS = ("dit", "text", "autoencoder")
ArrayLike = Union[np.ndarray, torch.Tensor]
SamplingLike = Union[SamplingConfig, Mapping[str, Any], None]

#: The longest video ``generate`` makes. The model itself sets no limit (the KV cache keeps a
#: window of past frames and RoPE positions grow without bound); this bounds the memory every video
#: holds, and nothing longer than the long suite's 600 frames has been looked at.
MAX_GENERATED_FRAMES = 1000


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class WorldModel:
    """The DiT, its text encoder and the frame autoencoder of one exported model file, for inference.

    Build it with :meth:`from_checkpoint`. It holds no per-rollout state: ``rollout`` is a pure
    function of its arguments and seed, and ``WorldBatch`` keeps what stepping needs.
    """

    def __init__(
        self,
        dit: VideoDiT,
        text_encoder: TextEncoder,
        autoencoder: FrameAutoencoder,
        record: Mapping[str, Any],
        device: Union[str, torch.device, None] = None,
    ) -> None:
        self.device = torch.device(device or default_device())
        self.dit = dit.to(self.device).eval().requires_grad_(False)
        self.text_encoder = text_encoder.to(self.device).eval().requires_grad_(False)
        self.autoencoder = autoencoder.to(self.device).eval().requires_grad_(False)
        self.record = dict(record)
        self.data = dict(self.record.get("data", {}))
        self.action_description = self.data.get("action_space")
        self.action_space: Optional[gymnasium.Space] = space_from_description(self.action_description)
        frame_shape = self.data.get("frame_shape") or (self.data.get("observation_space") or {}).get("shape")
        latent = dit.cfg.latent_size * autoencoder.config.downsample_factor
        self.frame_shape: tuple[int, int, int] = tuple(frame_shape) if frame_shape else (latent, latent, 3)
        dynamics = self.record.get("configs", {}).get("dynamics", {})
        self.context_noise = float(dynamics.get("flow", {}).get("context_noise", CONTEXT_NOISE))
        #: How this model samples unless its caller says otherwise: the file's record over DEFAULT_SAMPLING.
        self.default_sampling = recorded_sampling(self.record)

    # -- loading -----------------------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: Union[str, Path], device: Union[str, torch.device, None] = None) -> "WorldModel":
        """The model of an exported file (``<run>/model.pt``); ``device`` None picks CUDA when present."""
        device = torch.device(device or default_device())
        checkpoint = load_checkpoint(path, map_location=device)
        record = checkpoint["worldsim"]
        configs = record.get("configs", {})
        held = (
            sorted(checkpoint.get("weights", {})) if record.get("kind") == "export" else sorted(record.get("parts", {}))
        )
        missing = [part for part in PARTS if part not in held or part not in configs]
        if record.get("kind") != "export" or missing:
            raise CheckpointError(
                f"{path} is a {record.get('kind')!r} {record.get('stage')!r} checkpoint holding parts {held}; a "
                f"WorldModel needs an exported file with {list(PARTS)} and their configs: pass the <run>/model.pt "
                "that `worldsim train stage=all` (or stage=dynamics) writes"
            )
        try:
            dit_cfg = VideoDiTConfig(**configs["dit"])
            text_cfg = TextEncoderConfig(**configs["text"])
            dit, text, autoencoder = (
                VideoDiT(dit_cfg),
                TextEncoder(text_cfg),
                FrameAutoencoder(autoencoder_config(record)),
            )
            for name, module in (("dit", dit), ("text", text), ("autoencoder", autoencoder)):
                module.load_state_dict(part_state_dict(checkpoint, name))
        except (TypeError, ValueError, RuntimeError, AssertionError) as error:
            raise CheckpointError(
                f"{path}: its weights or configs do not fit this worldsim's networks ({error}); "
                "re-export it with this worldsim"
            ) from None
        if autoencoder.config.latent_channels != dit_cfg.latent_channels:
            raise CheckpointError(
                f"{path}: the autoencoder has {autoencoder.config.latent_channels} latent channels "
                f"but the DiT {dit_cfg.latent_channels}: the parts come from different runs"
            )
        try:
            return cls(dit, text, autoencoder, record, device)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None

    # -- facts ---------------------------------------------------------------------------------------

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the world the model was trained on ("" when unknown)."""
        return str(self.data.get("env_id", ""))

    def real_env_id(self, instead: str = "") -> str:
        """The recorded env id, safe to hand to ``gymnasium.make``: a registered id, never a module to import.

        A model file is data, so the id it records must not choose code: ``gymnasium.make("pkg:Id-v0")``
        would import ``pkg`` (from the working directory too). The module prefix is dropped, and the
        bare id must already be registered (worldsim's worlds are; for another package's env, import
        that package first). ``instead`` ends the error with what else the caller can do.
        """
        recorded = self.env_id
        if not recorded:
            raise ValueError(f"the checkpoint records no env id{'; ' + instead if instead else ''}")
        module, _, bare = recorded.rpartition(":")
        if bare not in gymnasium.registry:
            fix = (
                f"worldsim never imports a module a file names: `import {module}` yourself first, so it registers {bare!r}"
                if module
                else f"import the package that registers {bare!r} first"
            )
            raise ValueError(
                f"the checkpoint records env id {recorded!r}, which is not registered: {fix}"
                f"{'; or ' + instead if instead else ''}"
            )
        return bare

    @property
    def env_kwargs(self) -> dict[str, Any]:
        return dict(self.data.get("env_kwargs") or {})

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        cfg = self.dit.cfg
        return (cfg.latent_channels, cfg.latent_size, cfg.latent_size)

    @property
    def has_actions(self) -> bool:
        return self.dit.cfg.action_kind == "discrete" or self.dit.cfg.action_dim > 0

    @property
    def reads_text(self) -> bool:
        """Whether the model learned from captions: False when every training clip had its text dropped."""
        flow = self.record.get("configs", {}).get("dynamics", {}).get("flow", {})
        return float(flow.get("text_drop_prob", 0.0)) < 1.0

    def sampling_for(self, sampling: SamplingLike = None) -> SamplingConfig:
        """``default_sampling`` with the fields ``sampling`` sets (a SamplingConfig or a dict of its fields)."""
        return SamplingConfig.of(sampling).over(self.default_sampling)

    def window(self, sampling: SamplingConfig) -> int:
        """Past frames a KV cache holds under ``sampling``: its window, else the window the DiT trained on."""
        return sampling.window or self.dit.cfg.window

    def generated_noise(self, sampling: SamplingConfig) -> float:
        """tau at which a frame the model generated enters its KV cache: ``sampling``'s, else the context noise."""
        return self.context_noise if sampling.generated_noise is None else float(sampling.generated_noise)

    # -- boundary conversions ------------------------------------------------------------------------

    @torch.inference_mode()
    def encode(self, frames: ArrayLike) -> torch.Tensor:
        """uint8 frames (..., H, W, 3), numpy or torch -> normalized latents (..., C, h, w) on the device.

        Read-only arrays (a dataset's memory-mapped clips) are copied first: torch warns on them.
        """
        if not isinstance(frames, torch.Tensor):
            frames = np.asarray(frames)
            frames = frames if frames.flags.writeable else frames.copy()
        x = torch.as_tensor(frames)
        if x.dtype != torch.uint8 or x.ndim < 3 or tuple(x.shape[-3:]) != self.frame_shape:
            raise ValueError(
                f"frames are {x.dtype} {tuple(x.shape)}; this model reads uint8 (..., "
                f"{', '.join(map(str, self.frame_shape))}) frames (height, width, RGB)"
            )
        return self.autoencoder.encode_frames(x.to(self.device).movedim(-1, -3))  # (..., C, h, w)

    @torch.inference_mode()
    def decode(self, latents: ArrayLike) -> np.ndarray:
        """Normalized latents (..., C, h, w) -> uint8 frames (..., H, W, 3) as numpy."""
        return self.decode_on_device(latents).cpu().numpy()

    @torch.inference_mode()
    def decode_on_device(self, latents: ArrayLike) -> torch.Tensor:
        """Normalized latents (..., C, h, w) -> uint8 frames (..., H, W, 3), left on the model's device."""
        z = torch.as_tensor(latents, device=self.device, dtype=torch.float32)
        return self.autoencoder.decode_latents(z).movedim(-3, -1)

    @torch.inference_mode()
    def encode_text(self, text: Union[str, Sequence[str], None], batch: int) -> Optional[TextCondition]:
        """One caption per row (a str is repeated); an empty caption is the null text; None: no text."""
        if text is None:
            return None
        captions = [text] * batch if isinstance(text, str) else [str(t) for t in text]
        if len(captions) != batch:
            raise ValueError(f"{len(captions)} captions for a batch of {batch}: give one per row or a single str")
        condition = self.text_encoder.encode_text(captions, self.device)
        empty = torch.tensor([not c for c in captions], device=self.device)
        return TextCondition(condition.tokens, condition.mask & ~empty[:, None], condition.pooled)

    def model_actions(self, actions: Optional[ArrayLike], batch: int, frames: int) -> Optional[torch.Tensor]:
        """Actions (B, T, *A) -> what the DiT reads, checked as every env checks them (``check_action``)."""
        if not self.has_actions:
            return None
        if actions is None:
            raise ValueError(f"this model was trained with actions {self.action_space}: pass them")
        given = actions.detach().cpu() if isinstance(actions, torch.Tensor) else actions
        if self.action_space is None:  # a model file without a description: only the shape is known
            a = torch.as_tensor(np.asarray(given))
            if a.shape[:2] != (batch, frames):
                raise ValueError(
                    f"actions have shape {tuple(a.shape)}; expected (B, T, *A) with (B, T) = {(batch, frames)}"
                )
        else:
            if isinstance(given, torch.Tensor) and given.dtype == torch.bfloat16:  # numpy has no bfloat16
                given = given.float()
            a = torch.from_numpy(check_action(self.action_space, given, "actions (B, T, *A)", (batch, frames)))
        return model_actions(a.to(self.device), self.action_description)

    def generator(self, seed: Optional[int], generator: Generators = None) -> Generators:
        """``generator`` (one, or one per row) if given, else a new one on the device seeded with ``seed`` (None: none)."""
        if generator is not None:
            return generator
        return None if seed is None else torch.Generator(device=self.device).manual_seed(int(seed))

    # -- rollout -------------------------------------------------------------------------------------

    def rollout(
        self,
        context_frames: ArrayLike,
        actions: Optional[ArrayLike],
        text: Union[str, Sequence[str], None],
        horizon: int,
        seed: Optional[int] = None,
        generator: Generators = None,
        sampling: SamplingLike = None,
        return_latents: bool = False,
    ) -> Union[np.ndarray, tuple[np.ndarray, RolloutOutput]]:
        """Frames uint8 (B, horizon, H, W, 3) after context_frames uint8 (B, T0, H, W, 3).

        actions (B, T0 + horizon - 1, *A): ``actions[:, t]`` taken at frame t (None for worlds without
        actions); text: one caption per row, a str for all, or None. T0 may be 0 (text to video).
        ``sampling``: ``SamplingConfig`` (or a dict of its fields) over ``default_sampling``.
        ``generator``: one for the batch, or one per row (each row's noise from its own). With
        ``return_latents`` also returns the flow's ``RolloutOutput``: latents (B, horizon, C, h, w),
        rewards and termination logits (B, horizon).
        """
        s = self.sampling_for(sampling)
        B, T0 = int(context_frames.shape[0]), int(context_frames.shape[1])
        with torch.inference_mode():
            latents = self.encode(context_frames) if T0 else torch.zeros(B, 0, *self.latent_shape, device=self.device)
            dit_actions = self.model_actions(actions, B, T0 + horizon - 1)
            out = flow_rollout(
                self.dit,
                latents,
                dit_actions,
                self.encode_text(text, B),
                horizon,
                s.steps,
                s.sampler,
                s.cfg_text,
                s.cfg_action,
                self.context_noise,
                self.window(s),
                self.generator(seed, generator),
                s.warm_start,
                s.first_steps,
                s.memory,
                self.generated_noise(s),
            )
            frames = self.decode_on_device(out.latents)  # (B, horizon, H, W, 3)
            if s.residual and T0:
                anchor = self.residual_anchor(context_frames[:, -1], latents[:, -1])
                frames = torch.stack([anchor.frames(frames[:, t], s.min_change) for t in range(horizon)], dim=1)
        frames = frames.cpu().numpy()
        return (frames, out) if return_latents else frames

    def generate(
        self,
        prompts: Union[str, Sequence[str]],
        frames: int,
        n: int = 1,
        seed: int = 0,
        context: Optional[ArrayLike] = None,
        actions: Optional[ArrayLike] = None,
        sampling: SamplingLike = None,
        progress: bool = False,
        batch_size: int = 8,
    ) -> np.ndarray:
        """Videos uint8 (len(prompts) * n, frames, H, W, 3): ``n`` samples of each prompt, from text alone
        or after ``context``.

        Row ``i * n + j`` is prompt i sampled with seed ``seed + j``. Each row draws its noise from its
        own seed, so a video depends on its prompt, seed, context, actions and sampling, not on what is
        generated beside it: ``n=1, seed=2`` gives the third video of ``n=4, seed=0`` again (up to the
        float rounding of batched arithmetic). ``context`` uint8 (T0, H, W, 3): the frames every video
        continues (None: T0 = 0, text to video). ``actions`` (T0 + frames - 1, *A), ``actions[t]``
        taken at frame t, the same for every video; None: the world's zero action throughout
        (``worldsim.spaces.zero_action``, a no-op in every worldsim world), so a Physics object moves
        only as its caption says. ``sampling`` as for ``rollout``; ``progress``: a bar over the videos;
        ``batch_size``: videos sampled together (speed and memory only).
        """
        from tqdm import tqdm

        captions = [prompts] if isinstance(prompts, str) else [str(p) for p in prompts]
        clip = np.zeros((0, *self.frame_shape), np.uint8) if context is None else np.asarray(context)
        self._check_generate(captions, frames, n, clip, sampling)
        rows = [(caption, seed + j) for caption in captions for j in range(n)]
        future = None
        if self.has_actions:
            if actions is None:
                future = np.stack([zero_action(self.action_space)] * (len(clip) + frames - 1))
            else:
                future = np.asarray(actions.cpu() if isinstance(actions, torch.Tensor) else actions)
        videos = np.empty((len(rows), frames, *self.frame_shape), np.uint8)
        with tqdm(total=len(rows), desc="generate", unit="video", disable=not progress) as bar:
            for lo in range(0, len(rows), batch_size):
                chunk = rows[lo : lo + batch_size]
                B = len(chunk)
                videos[lo : lo + B] = self.rollout(
                    np.repeat(clip[None], B, axis=0),
                    None if future is None else np.repeat(future[None], B, axis=0),
                    [caption for caption, _ in chunk],
                    frames,
                    generator=[self.generator(row_seed) for _, row_seed in chunk],
                    sampling=sampling,
                )
                bar.update(B)
        return videos

    def _check_generate(
        self, captions: list[str], frames: int, n: int, clip: np.ndarray, sampling: SamplingLike
    ) -> None:
        """Raise ValueError, one line naming the value and the rule, for a request ``generate`` cannot serve."""
        if not self.reads_text:
            raise ValueError(
                "this model was trained with every caption dropped (text_drop_prob=1), so it cannot follow a "
                "prompt: generate from a model trained on captioned episodes, or roll it out with rollout()"
            )
        if not captions:
            raise ValueError("no prompts: give at least one caption, e.g. 'a red ball is dropped'")
        empty = [i for i, caption in enumerate(captions) if not caption.strip()]
        if empty:
            raise ValueError(f"prompt {empty[0]} is empty: every video needs a caption to follow")
        if not 1 <= frames <= MAX_GENERATED_FRAMES:
            raise ValueError(f"frames={frames}: a video has between 1 and {MAX_GENERATED_FRAMES} frames")
        if n < 1:
            raise ValueError(f"n={n}: give at least 1 sample per prompt")
        if clip.ndim != 4 or tuple(clip.shape[1:]) != self.frame_shape:
            raise ValueError(
                f"context has shape {tuple(clip.shape)}; it is one clip (T0, {', '.join(map(str, self.frame_shape))})"
            )
        window = self.window(self.sampling_for(sampling))
        if len(clip) > window:
            raise ValueError(
                f"context holds {len(clip)} frames but the model attends to at most {window} past frames "
                "(its window): give the last ones only"
            )

    def residual_anchor(self, frames: ArrayLike, latents: torch.Tensor) -> "ResidualAnchor":
        """Real frames (B, H, W, 3) uint8 and the decoding of their latents (B, C, h, w), the anchor of
        residual decoding (``ResidualAnchor``), on the model's device."""
        real = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        real = real.to(self.device, torch.int16)
        decoded = self.decode_on_device(latents).to(torch.int16)
        return ResidualAnchor(real, decoded, torch.ones(len(real), dtype=torch.bool, device=self.device))


@dataclasses.dataclass
class ResidualAnchor:
    """Per row, the last real context frame and the decoding of its latent: residual decoding's anchor.

    A new frame is the real context frame plus the decoded change, ``decode(latent) - decoded``.
    Where the scene does not change, the decoded future equals the decoded context frame, so the
    frame keeps the real context pixels rather than the autoencoder's approximation of them; where
    it changes, the frame gets the new decoded content plus the autoencoder's small error on the
    old. A tiny autoencoder loses a few dB on every frame, which direct decoding pays even on still
    background. ``min_change`` drops decoded changes of at most that many levels in every channel.
    Tensors live on the model's device, so a step's frames are made there and cross to the host once.
    """

    real: torch.Tensor  # (B, H, W, 3) int16
    decoded: torch.Tensor  # (B, H, W, 3) int16
    anchored: torch.Tensor  # (B,) bool; False: the row decodes directly (imagined from text, no real frame)

    @classmethod
    def direct(
        cls, rows: int, frame_shape: Sequence[int], device: Union[str, torch.device] = "cpu"
    ) -> "ResidualAnchor":
        zeros = torch.zeros(rows, *frame_shape[:2], 3, dtype=torch.int16, device=device)
        return cls(zeros, zeros.clone(), torch.zeros(rows, dtype=torch.bool, device=device))

    def replaced(self, index: torch.Tensor, rows: "ResidualAnchor") -> "ResidualAnchor":
        """A copy with ``rows``'s anchors at ``index`` (the rows a partial reset restarted)."""
        new = ResidualAnchor(self.real.clone(), self.decoded.clone(), self.anchored.clone())
        new.real[index], new.decoded[index], new.anchored[index] = rows.real, rows.decoded, rows.anchored
        return new

    def frames(self, decoded: torch.Tensor, min_change: int = 0) -> torch.Tensor:
        """uint8 frames (B, H, W, 3) from the decoded new frames (B, H, W, 3) uint8, on their device."""
        change = decoded.to(torch.int16) - self.decoded
        if min_change:
            moved = (change.abs() > min_change).any(dim=-1, keepdim=True)  # (B, H, W, 1)
            change = change * (moved | ~self.anchored[:, None, None, None])
        return (self.real + change).clamp(0, 255).to(torch.uint8)
