"""``WorldBatch``: a batch of learned worlds stepped frame by frame on a shared ``WorldModel``.

    model = WorldModel.from_checkpoint("runs/default/model.pt")
    batch = WorldBatch(model, sampling={"steps": 2})
    first = batch.start(context, context_actions, ["a red ball"], seed=0)   # StepOutput of the first frames
    out = batch.step(actions_now)                                           # frames, latents, reward, terminated
    batch.restart(rows, context, context_actions, captions)                # some rows begin again

The batch owns everything a stepped rollout keeps between frames: the KV cache of at most
``window`` past frames (default: the window the DiT trained on) and, for a memory model, its bank
of older frames (a fixed number of slots), so memory and step time stay flat however long it runs;
the latest latents, the residual-decoding anchor, the captions
and the noise stream. The model holds only weights, so any number of batches can step on one.

``restart`` begins new episodes in some rows while the others keep going (vector-env autoreset):
the new rows' context is written into a cache aligned to the same time positions and spliced in.
One cache holds one frame count for the whole batch, so when the restarted rows bring fewer frames
than the others hold, the others' oldest frames are dropped to match (never, when every start
brings ``window`` frames).
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from worldsim.flow import GuidancePass, guidance_passes, sample_next_frame, write_frames
from worldsim.models.kv_cache import KVCache
from worldsim.models.text import TextCondition
from worldsim.world_model import ArrayLike, ResidualAnchor, SamplingLike, WorldModel

Captions = Union[str, Sequence[str], None]


class StepOutput(NamedTuple):
    """One new frame per row of the batch."""

    frames: Optional[np.ndarray]  # (B, H, W, 3) uint8; None when the step was asked not to decode
    latents: torch.Tensor  # (B, C, h, w) on the model's device
    reward: np.ndarray  # (B,) float32: the reward head's prediction for the transition into the frame
    terminated: np.ndarray  # (B,) bool: sigmoid(termination logit) > 0.5
    termination_probability: np.ndarray  # (B,) float32


class Context(NamedTuple):
    """A start's context, written into a cache: what the batch keeps of it."""

    cache: KVCache
    last: torch.Tensor  # (R, C, h, w) the latest frame's latents
    anchor: ResidualAnchor
    frames: Optional[np.ndarray]  # (R, H, W, 3) the latest frame as returned; None when not decoded


class WorldBatch:
    """One batch of worlds stepped on ``model`` with ``sampling`` (over the model's default sampling).

    ``start`` begins every row, ``restart`` some of them, ``step`` advances all by one frame.
    Sampling is fixed for the batch's life: make another batch to sample differently.
    """

    def __init__(self, model: WorldModel, sampling: SamplingLike = None) -> None:
        self.model = model
        self.sampling = model.sampling_for(sampling)
        self.window = model.window(self.sampling)
        self._generated_noise = model.generated_noise(self.sampling)
        self.cache: Optional[KVCache] = None  # None until start
        self.latents: Optional[torch.Tensor] = None  # (B, C, h, w) the latest frame of every row
        self.size = 0
        self._text: Optional[TextCondition] = None
        self._anchor: Optional[ResidualAnchor] = None
        self._stream: Optional[torch.Generator] = None
        self._passes: list[GuidancePass] = []  # set by start: which guided passes each step runs

    @torch.inference_mode()
    def start(
        self,
        context_frames: Optional[ArrayLike],
        context_actions: Optional[ArrayLike] = None,
        text: Captions = None,
        *,
        imagine: int = 1,
        seed: Optional[int] = None,
        generator: Optional[torch.Generator] = None,
        decode: bool = True,
    ) -> StepOutput:
        """Begin every row; returns its latest frame.

        context_frames uint8 (B, T0, H, W, 3), or None / T0 = 0 to imagine ``imagine`` frames from
        the text alone; context_actions (B, T0 - 1, *A), the actions between the context frames
        (None: unknown, the learned null action); text: one caption per row, a str for all, or None.
        The returned frames are the last context frame as given (real pixels), or the last imagined
        frame decoded; reward is 0 and terminated False. ``seed``/``generator``: the batch's noise.
        """
        rows = self._rows(context_frames, text)
        condition = self.model.encode_text(text, rows)
        self._stream = self.model.generator(seed, generator)
        self._passes = guidance_passes(
            self.sampling.cfg_text, self.sampling.cfg_action, condition is not None, self.model.has_actions
        )
        context = self._write(
            self.model.dit.new_cache(self.window, self.sampling.memory),
            context_frames,
            context_actions,
            condition,
            imagine,
            decode,
        )
        self.cache, self.latents, self._anchor = context.cache, context.last.clone(), context.anchor
        self._text = condition
        self.size = rows
        return self._first(context)

    @torch.inference_mode()
    def restart(
        self,
        rows: ArrayLike,
        context_frames: Optional[ArrayLike],
        context_actions: Optional[ArrayLike] = None,
        text: Captions = None,
        *,
        imagine: int = 1,
        decode: bool = True,
    ) -> StepOutput:
        """Begin the rows ``rows`` (bool mask (B,) or R indices) again while the others keep going.

        Context and text as for ``start``, one row each for the R restarted rows; they keep the
        batch's sampling and noise stream. Returns the restarted rows' first frames (R of them).
        """
        if self.cache is None or self.cache.frames == 0:
            raise RuntimeError("restart(rows, ...) restarts rows of a running batch: call start(...) first")
        index = self._row_index(rows)
        count = self._rows(context_frames, text)
        if len(index) != count:
            raise ValueError(f"rows selects {len(index)} rows but the context holds {count}")
        condition = self.model.encode_text(text, count)
        if (condition is None) != (self._text is None):
            raise ValueError(
                "the batch was started with text=None; restarted rows must use text=None too"
                if self._text is None
                else "the batch has text: give the restarted rows captions ('' for none)"
            )
        fresh = self.model.dit.new_cache(self.window, self.sampling.memory)
        T0 = int(context_frames.shape[1]) if context_frames is not None else 0
        fresh.next_position = self.cache.next_position - (T0 or imagine)  # the same time positions as the batch
        context = self._write(fresh, context_frames, context_actions, condition, imagine, decode)
        if condition is not None:
            merged = TextCondition(self._text.tokens.clone(), self._text.mask.clone(), self._text.pooled.clone())
            merged.tokens[index], merged.mask[index], merged.pooled[index] = (
                condition.tokens,
                condition.mask,
                condition.pooled,
            )
            self._text = merged
        self._splice(fresh, index)
        self.latents = self.latents.clone()
        self.latents[index] = context.last
        self._anchor = self._anchor.replaced(index, context.anchor)
        return self._first(context)

    @torch.inference_mode()
    def step(self, actions: Optional[ArrayLike] = None, decode: bool = True) -> StepOutput:
        """The next frame of every row for ``actions`` (B, *A), the actions taken at the current frames."""
        if self.cache is None:
            raise RuntimeError("step() before start(): begin the batch with start(context_frames, ...)")
        model, B, s = self.model, self.size, self.sampling
        a = None
        if model.has_actions:
            batched = (
                None
                if actions is None
                else (actions[:, None] if isinstance(actions, torch.Tensor) else np.asarray(actions)[:, None])
            )
            a = model.model_actions(batched, B, 1)  # (B, 1, A) or (B, 1)
        mask = torch.ones(B, 1, dtype=torch.bool, device=model.device) if a is not None else None
        x = sample_next_frame(
            model.dit,
            self.cache,
            B,
            a,
            mask,
            self._text,
            self._passes,
            s.steps,
            s.sampler,
            self._stream,
            self.latents,
            s.warm_start,
        )  # (B, C, h, w)
        reward, logit = write_frames(
            model.dit, self.cache, x[:, None], a, mask, self._text, self._passes, self._generated_noise, self._stream
        )
        self.latents = x
        # Two copies to the host per step, the frames and the heads, and no other sync.
        heads = torch.stack([reward[:, 0].float(), torch.sigmoid(logit[:, 0].float())]).cpu().numpy()  # (2, B)
        frames = self._anchor.frames(model.decode_on_device(x), s.min_change).cpu().numpy() if decode else None
        return StepOutput(frames, x, heads[0], heads[1] > 0.5, heads[1])

    def frames(self) -> np.ndarray:
        """The latest frame of every row (B, H, W, 3) uint8, decoded as ``step`` decodes it."""
        if self.latents is None:
            raise RuntimeError("frames() before start(): begin the batch with start(context_frames, ...)")
        return self._anchor.frames(self.model.decode_on_device(self.latents), self.sampling.min_change).cpu().numpy()

    def cache_bytes(self) -> int:
        """Bytes the KV cache holds now (bounded by the window and, for a memory model, its bank's slots)."""
        if self.cache is None:
            return 0
        return self.cache.nbytes()

    # -- internals ---------------------------------------------------------------------------------

    @staticmethod
    def _rows(context_frames: Optional[ArrayLike], text: Captions) -> int:
        if context_frames is not None:
            return int(context_frames.shape[0])
        if text is not None and not isinstance(text, str):
            return len(text)
        raise ValueError("a start needs context frames, or captions (one per row) to imagine from")

    def _write(
        self,
        cache: KVCache,
        context_frames: Optional[ArrayLike],
        context_actions: Optional[ArrayLike],
        condition: Optional[TextCondition],
        imagine: int,
        decode: bool,
    ) -> Context:
        """Write R rows' context into ``cache`` (or imagine ``imagine`` frames from text alone)."""
        model, s = self.model, self.sampling
        R = len(condition) if context_frames is None else int(context_frames.shape[0])
        T0 = int(context_frames.shape[1]) if context_frames is not None else 0
        if T0 == 0 and imagine < 1:
            raise ValueError(f"imagine={imagine}: with no context frames at least 1 frame must be imagined")
        if not T0:  # text to video: no context, null actions
            last = None
            for _ in range(imagine):
                steps = s.first_steps if last is None else s.steps
                last = sample_next_frame(
                    model.dit,
                    cache,
                    R,
                    None,
                    None,
                    condition,
                    self._passes,
                    steps,
                    s.sampler,
                    self._stream,
                    last,
                    s.warm_start,
                )
                write_frames(
                    model.dit,
                    cache,
                    last[:, None],
                    None,
                    None,
                    condition,
                    self._passes,
                    self._generated_noise,
                    self._stream,
                )
            # Rows imagined from text have no real frame to anchor to: they decode directly.
            frames = model.decode(last) if decode else None
            return Context(cache, last, ResidualAnchor.direct(R, model.frame_shape, model.device), frames)
        latents = model.encode(context_frames)  # (R, T0, C, h, w)
        actions = action_mask = None
        if model.has_actions:
            if T0 > 1 and context_actions is not None:
                given = model.model_actions(context_actions, R, T0 - 1)
                actions = torch.cat([torch.zeros_like(given[:, :1]), given], dim=1)  # frame 0: none led to it
                action_mask = (torch.arange(T0, device=model.device) > 0).expand(R, T0)
            else:  # unknown actions between the context frames: the learned null action
                cfg = model.dit.cfg
                actions = (
                    torch.zeros(R, T0, dtype=torch.long, device=model.device)
                    if cfg.action_kind == "discrete"
                    else torch.zeros(R, T0, cfg.action_dim, device=model.device)
                )
                action_mask = torch.zeros(R, T0, dtype=torch.bool, device=model.device)
        write_frames(
            model.dit, cache, latents, actions, action_mask, condition, self._passes, model.context_noise, self._stream
        )
        anchor = (
            model.residual_anchor(context_frames[:, -1], latents[:, -1])
            if s.residual
            else ResidualAnchor.direct(R, model.frame_shape, model.device)
        )
        frames = None
        if decode:
            last_frames = context_frames[:, -1]
            frames = np.array(last_frames.cpu() if isinstance(last_frames, torch.Tensor) else last_frames, np.uint8)
        return Context(cache, latents[:, -1], anchor, frames)

    @staticmethod
    def _first(context: Context) -> StepOutput:
        R = len(context.last)
        zeros = np.zeros(R, np.float32)
        return StepOutput(context.frames, context.last, zeros, np.zeros(R, bool), zeros.copy())

    def _row_index(self, rows: ArrayLike) -> torch.Tensor:
        rows = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
        index = np.flatnonzero(rows) if rows.dtype == bool else rows.astype(np.int64).ravel()
        if rows.dtype == bool and rows.shape != (self.size,):
            raise ValueError(f"rows mask has shape {rows.shape}; the batch has {self.size} rows")
        if index.size and (index.min() < 0 or index.max() >= self.size):
            raise ValueError(f"rows {index.tolist()} are not all in [0, {self.size})")
        return torch.as_tensor(index, device=self.model.device)

    def _splice(self, fresh: KVCache, index: torch.Tensor) -> None:
        """Put ``fresh``'s rows (one per restarted row, per guidance pass) into the batch cache at ``index``."""
        main, B, G = self.cache, self.size, len(self._passes)
        frames = min(main.frames, fresh.frames)
        tokens = frames * self.model.dit.cfg.tokens_per_frame
        rows = (torch.arange(G, device=self.model.device)[:, None] * B + index[None]).flatten()  # (G*R,) pass-major
        for layer in range(len(main.keys)):
            for held, new in ((main.keys, fresh.keys), (main.values, fresh.values)):
                merged = held[layer][:, :, -tokens:].clone()
                merged[rows] = new[layer][:, :, -tokens:]
                held[layer] = merged
        main.frames = frames
        main.forget(index, fresh)
