"""World memory: a bounded bank of frames that left the attention window, kept as keys and values.

Why this design. The DiT attends to the last ``window`` frames; whatever leaves that window is
gone. Three families fix that in the literature: retrieving old frames back into the context
(WorldMem: about 8 frames picked by view overlap with the current camera pose and recency, fed as
clean context tokens with relative pose and time embeddings), a long context compressed so older
frames take fewer tokens (FramePack), and a recurrent or state-space state over what left the
window. worldsim takes the first, adapted so it needs no pose and no extra network pass:

- **Frames, not a summary.** The evals ask for the *same* view or object after 32 to 600 frames
  away. A frame kept whole can be copied back; a compressed or recurrent summary must first learn
  to keep exactly the detail that will be asked for, which a CPU-sized model cannot afford.
- **Kept as the keys/values the model already computed.** A frame that leaves the KV window moves
  into the bank with the keys and values of every block (no recomputation), so the memory costs
  attention over ``slots`` more frames per step and nothing else: per-step time and memory stay
  flat however long a rollout runs. Training sees exactly the same thing: a long clip in one
  forward pass, each frame attending to its window and to the frames the bank would hold at that
  point (``memory_visibility``), so a cached rollout equals the full forward (tests check it).
- **Chosen by novelty, not by pose.** Occlusion has a static camera; Orbit and BlockWorld move it
  by actions, but integrating BlockWorld's discrete actions into a pose ignores collisions and
  jumps, and a pose head would be one more thing to learn. The bank is keyed by the frame's own
  clean latent instead, the same in every world: when it is full, the incoming frame and the held
  ones are compared and the older of the two most alike is dropped. What stays is a spread of
  distinct views (or scene states), each the latest of its kind, which is what a return needs: the
  view left behind, the object before the wall covered it. At the default sizes every held frame
  is attended, so no per-step retrieval is needed; a pose-keyed rule fits the same bank.
- **Time by RoPE.** A held key keeps the rotation of the frame it came from, so attention sees how
  long ago it was, clamped to the longest offset training showed (``max_offset``, the clip length
  minus one): a frame 500 steps back looks like one ``max_offset`` back (rotations compose, so the
  cache moves keys in time without the network).

The pose the issue asks for never comes from the ground truth: the bank reads only the frames the
model itself wrote (context frames, then its own predictions).
"""

from __future__ import annotations

from typing import Optional

import torch

from worldsim.models.kv_cache import KVCache
from worldsim.models.rope import rope_frequencies, rotate


def frame_keys(latents: torch.Tensor) -> torch.Tensor:
    """What the bank compares frames by: latents (..., C, H, W) flattened to float (..., C*H*W)."""
    return latents.flatten(-3).float()


def dropped_slot(keys: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Which of S + 1 candidates (S held, the newest last) a full bank lets go, per row: (B,) indices.

    keys (B, S+1, D) from ``frame_keys``; positions (B, S+1) frame indices; valid (B, S+1) bool.
    An empty slot goes first; else the older frame of the closest pair (squared L2 distance of the
    keys), so near-duplicates collapse to their latest and distinct views stay. Ties break to the
    lowest index, so the same inputs always drop the same slot.
    """
    B, S1, _ = keys.shape
    distance = torch.cdist(keys, keys).pow(2)  # (B, S+1, S+1)
    distance = distance + torch.diag(torch.full((S1,), float("inf"), device=keys.device))
    pair = distance.flatten(1).argmin(dim=1)  # (B,) flattened index of the closest pair
    i, j = pair // S1, pair % S1
    older = torch.where(positions.gather(1, i[:, None])[:, 0] <= positions.gather(1, j[:, None])[:, 0], i, j)
    empty = ~valid
    first_empty = empty.float().argmax(dim=1)
    return torch.where(empty.any(dim=1), first_empty, older)


def memory_visibility(latents: torch.Tensor, window: int, slots: int) -> torch.Tensor:
    """Which earlier frames each frame of a clip sees through the bank: (B, T, T) bool, [b, query, key].

    latents (B, T, C, H, W) clean. Frame i attends to its window (frames i - window .. i) and to the
    bank as a rollout would hold it then: frames 0 .. i - window - 1 offered in order, each kept or
    dropped by ``dropped_slot``. Only keys outside the window are ever set here.
    """
    B, T = latents.shape[:2]
    keys = frame_keys(latents)  # (B, T, D)
    device = latents.device
    visible = torch.zeros(B, T, T, dtype=torch.bool, device=device)
    held = torch.zeros(B, slots, dtype=torch.long, device=device)  # frame index per slot
    valid = torch.zeros(B, slots, dtype=torch.bool, device=device)
    rows = torch.arange(B, device=device)
    for query in range(window + 1, T):
        newest = query - window - 1
        candidate_keys = torch.cat([keys[rows[:, None], held], keys[:, newest : newest + 1]], dim=1)  # (B, S+1, D)
        _, held, valid = admit(candidate_keys, held, valid, newest)  # positions are the frame indices
        visible[rows[:, None], query, held] = valid
    return visible


def admit(
    candidate_keys: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor, newest: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Offer the frame at position ``newest`` to a bank of ``positions`` and ``valid`` (B, S).

    candidate_keys (B, S+1, D): the held frames' keys, then the newest's. Returns which of the S + 1
    candidates each row keeps (B, S), in order, and the bank's new positions and valid flags (B, S).
    """
    B, S = positions.shape
    device = positions.device
    candidate_positions = torch.cat([positions, torch.full((B, 1), newest, dtype=torch.long, device=device)], dim=1)
    candidate_valid = torch.cat([valid, torch.ones(B, 1, dtype=torch.bool, device=device)], dim=1)
    drop = dropped_slot(candidate_keys, candidate_positions, candidate_valid)  # (B,)
    index = torch.arange(S + 1, device=device).expand(B, -1)
    kept = index[index != drop[:, None]].view(B, S)
    return kept, candidate_positions.gather(1, kept), candidate_valid.gather(1, kept)


class MemoryKVCache(KVCache):
    """A ``KVCache`` whose frames, on leaving the window, go into a bank of ``slots`` frames that every
    new frame also attends to.

    The cache holds ``rows`` = passes x batch rows of keys (guidance passes stacked pass-major, as
    ``worldsim.flow`` stacks them); the bank's choices are made per batch row, from the clean
    latents ``observe`` is given, and applied to every pass. Everything is bounded: the window's
    ``window`` frames plus the bank's ``slots``.
    """

    def __init__(self, depth: int, window: int, slots: int, max_offset: int, rope_base: float) -> None:
        super().__init__(depth, window)
        assert slots >= 1, f"memory slots {slots} must be >= 1 (0 is a plain KVCache)"
        assert max_offset > window, f"max_offset {max_offset} must exceed the window {window}: memory is older"
        self.slots, self.max_offset, self.rope_base = slots, max_offset, rope_base
        self.bank_keys: list[Optional[torch.Tensor]] = [None] * depth  # (rows, heads, slots*N, head_dim)
        self.bank_values: list[Optional[torch.Tensor]] = [None] * depth
        self.bank_frame_keys: Optional[torch.Tensor] = None  # (B, slots, D) what the slots are compared by
        self.bank_positions: Optional[torch.Tensor] = None  # (B, slots) frame index of each slot
        self.bank_valid: Optional[torch.Tensor] = None  # (B, slots) bool
        self.window_frame_keys: Optional[torch.Tensor] = None  # (B, frames, D) of the frames in the window
        self._memory: Optional[tuple[list[torch.Tensor], torch.Tensor]] = None  # keys moved in time, mask

    # -- what the DiT calls ------------------------------------------------------------------------

    def observe(self, latents: torch.Tensor) -> None:
        """Note the clean latents (B, T, C, H, W) of frames about to be written (``flow.write_frames``)."""
        keys = frame_keys(latents)
        held = self.window_frame_keys
        self.window_frame_keys = keys if held is None else torch.cat([held, keys], dim=1)

    def with_memory(self, mask: Optional[torch.Tensor], start: int, T: int, N: int) -> Optional[torch.Tensor]:
        """The attention mask of T new frames at position ``start`` with the bank's keys in front.

        Also moves the bank's keys in time for this forward: a slot more than ``max_offset`` frames
        before the last new frame is rotated forward to exactly ``max_offset`` before it.
        """
        self._memory = None
        if self.bank_valid is None:
            return mask
        rows = self.bank_keys[0].shape[0]
        passes = rows // len(self.bank_valid)
        newest = start + T - 1
        shift = (newest - self.max_offset - self.bank_positions).clamp(min=0)  # (B, slots) frames forward
        freqs = rope_frequencies(self.bank_keys[0].shape[-1], self.rope_base, shift.device)
        angles = (shift.double()[..., None] * freqs).repeat_interleave(N, dim=1)  # (B, slots*N, hd/2)
        angles = angles.repeat(passes, 1, 1)[:, None]  # (rows, 1, slots*N, hd/2)
        cos, sin = angles.cos().float(), angles.sin().float()
        moved = [rotate(k, cos, sin) for k in self.bank_keys]
        seen = self.bank_valid.repeat(passes, 1).repeat_interleave(N, dim=1)  # (rows, slots*N)
        keys = (self.frames + T) * N
        window = torch.ones(T * N, keys, dtype=torch.bool, device=seen.device) if mask is None else mask
        full = torch.cat([seen[:, None, :].expand(-1, T * N, -1), window.expand(rows, -1, -1)], dim=2)
        self._memory = (moved, full)
        return full[:, None]  # (rows, 1, T*N, slots*N + keys)

    def attend(self, layer: int, k: torch.Tensor, v: torch.Tensor, write: bool) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = super().attend(layer, k, v, write)
        if self._memory is None:
            return k, v
        moved = self._memory[0][layer]
        return torch.cat([moved, k], dim=2), torch.cat([self.bank_values[layer], v], dim=2)

    def advance(self, new_frames: int, tokens_per_frame: int) -> None:
        """As ``KVCache.advance``, but each frame past the window is offered to the bank first."""
        held = self.window_frame_keys
        if held is None or held.shape[1] != self.frames + new_frames:
            raise RuntimeError(
                f"the memory cache was told of {0 if held is None else held.shape[1]} frames but holds "
                f"{self.frames + new_frames}: write frames with worldsim.flow.write_frames, which calls observe()"
            )
        leaving = max(0, self.frames + new_frames - self.window)
        first = self.next_position - self.frames  # position of the oldest held frame
        N = tokens_per_frame
        for i in range(leaving):
            tokens = slice(i * N, (i + 1) * N)
            self._offer(
                held[:, i], first + i, [k[:, :, tokens] for k in self.keys], [v[:, :, tokens] for v in self.values]
            )
        self.window_frame_keys = held[:, leaving:]
        super().advance(new_frames, tokens_per_frame)
        self._memory = None

    # -- the bank ---------------------------------------------------------------------------------

    def _offer(self, frame_key: torch.Tensor, position: int, keys: list, values: list) -> None:
        """Offer one frame (frame_key (B, D); keys/values per layer (rows, heads, N, head_dim)) to the bank."""
        B, device = frame_key.shape[0], frame_key.device
        if self.bank_valid is None:
            self.bank_frame_keys = torch.zeros(B, self.slots, frame_key.shape[1], device=device)
            self.bank_positions = torch.zeros(B, self.slots, dtype=torch.long, device=device)
            self.bank_valid = torch.zeros(B, self.slots, dtype=torch.bool, device=device)
            self.bank_keys = [torch.zeros_like(k).repeat(1, 1, self.slots, 1) for k in keys]
            self.bank_values = [torch.zeros_like(v).repeat(1, 1, self.slots, 1) for v in values]
        candidate_keys = torch.cat([self.bank_frame_keys, frame_key[:, None]], dim=1)  # (B, S+1, D)
        kept, self.bank_positions, self.bank_valid = admit(
            candidate_keys, self.bank_positions, self.bank_valid, position
        )
        self.bank_frame_keys = candidate_keys.gather(1, kept[..., None].expand(-1, -1, candidate_keys.shape[2]))
        for layer in range(len(keys)):
            self.bank_keys[layer] = self._kept_tokens(self.bank_keys[layer], keys[layer], kept)
            self.bank_values[layer] = self._kept_tokens(self.bank_values[layer], values[layer], kept)

    def _kept_tokens(self, bank: torch.Tensor, new: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        """The bank's tokens (rows, heads, S*N, hd) after keeping slots ``kept`` (B, S) of [bank, new]."""
        rows, heads, N, hd = new.shape
        S = self.slots
        candidates = torch.cat([bank.view(rows, heads, S, N, hd), new[:, :, None]], dim=2)  # (rows, h, S+1, N, hd)
        index = kept.repeat(rows // len(kept), 1)[:, None, :, None, None].expand(-1, heads, -1, N, hd)
        return candidates.gather(2, index).reshape(rows, heads, S * N, hd)

    def forget(self, index: torch.Tensor, fresh: "MemoryKVCache") -> None:
        """Rows ``index`` (R,) begin again from ``fresh`` (a cache of only their new context): their bank
        empties and their window keys become fresh's. Call after the window's keys were spliced."""
        if self.window_frame_keys is not None and fresh.window_frame_keys is not None:
            held = self.window_frame_keys[:, -self.frames :].clone() if self.frames else self.window_frame_keys[:, :0]
            held[index] = fresh.window_frame_keys[:, -self.frames :] if self.frames else held[index]
            self.window_frame_keys = held
        if self.bank_valid is not None:
            self.bank_valid = self.bank_valid.clone()
            self.bank_valid[index] = False

    def bank_bytes(self) -> int:
        """Bytes the bank holds (bounded by ``slots``)."""
        tensors = [*self.bank_keys, *self.bank_values, self.bank_frame_keys, self.bank_positions, self.bank_valid]
        return sum(t.numel() * t.element_size() for t in tensors if t is not None)

    def nbytes(self) -> int:
        """Bytes held now: the window's keys and values and the bank (bounded by ``window`` + ``slots``)."""
        return super().nbytes() + self.bank_bytes()
