"""Caption -> text condition for the world model: tokens (B, L, D), mask (B, L), pooled (B, D).

The encoder is built in and trained with the world model: a tokenizer that needs no vocabulary
file (bytes, or hashed words; nothing to download, any UTF-8 text) and a small transformer.
``TextCondition`` is the one type text travels in, from the encoder through the flow objective and
samplers into the DiT.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class TextCondition:
    """Encoded captions, the three fields VideoDiT reads (its text_width = D)."""

    tokens: torch.Tensor  # (B, L, D) per-token features; zero at padding
    mask: torch.Tensor  # (B, L) bool, True for real tokens; an all-False row means "no text"
    pooled: torch.Tensor  # (B, D) one vector per caption, for the adaLN modulation

    def __post_init__(self) -> None:
        B, L, D = self.tokens.shape
        assert self.mask.shape == (B, L), f"mask {tuple(self.mask.shape)} is not (B={B}, L={L})"
        assert self.pooled.shape == (B, D), f"pooled {tuple(self.pooled.shape)} is not (B={B}, D={D})"

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to(self, device: torch.device | str) -> TextCondition:
        return TextCondition(self.tokens.to(device), self.mask.to(device), self.pooled.to(device))

    def select(self, index: torch.Tensor | slice | list[int]) -> TextCondition:
        """The captions at `index` along the batch (e.g. to repeat one caption per env)."""
        return TextCondition(self.tokens[index], self.mask[index], self.pooled[index])


def _check_captions(captions: list[str]) -> None:
    if isinstance(captions, str):
        raise TypeError(f"captions must be a list of str, got a single str {captions!r}: wrap it in [ ]")
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise TypeError(f"caption {i} is {type(caption).__name__} {caption!r}: captions must be str")


def _pad_rows(rows: list[list[int]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows (each BOS ... EOS, at most max_length) -> ids (B, max_length) and mask (B, max_length)."""
    ids = torch.zeros((len(rows), max_length), dtype=torch.long)  # PAD = 0
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
    return ids, ids != 0


class ByteTokenizer:
    """UTF-8 bytes shifted past three special ids: PAD=0, BOS=1, EOS=2; vocabulary of 259.

    Bytes, not words: no vocabulary to ship or download, every language and emoji encodes, and
    captions here are short ("red ball rolls left"), so sequences stay short too.
    """

    PAD, BOS, EOS = 0, 1, 2
    OFFSET = 3
    vocab_size = 256 + OFFSET

    def encode(self, captions: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """captions -> ids (B, max_length) long and mask (B, max_length) bool.

        Each row is BOS, bytes, EOS, then PAD. Captions too long are cut at a character boundary
        so that BOS and EOS always fit and no partial UTF-8 character is left.
        """
        assert max_length >= 2, f"max_length {max_length} must be >= 2 to hold BOS and EOS"
        _check_captions(captions)
        rows = []
        for caption in captions:
            data = caption.encode("utf-8")[: max_length - 2]
            # Drop a trailing partial character: continuation bytes look like 0b10xxxxxx.
            if len(data) < len(caption.encode("utf-8")):
                data = data.decode("utf-8", errors="ignore").encode("utf-8")
            rows.append([self.BOS, *(b + self.OFFSET for b in data), self.EOS])
        return _pad_rows(rows, max_length)

    def decode(self, ids: torch.Tensor) -> list[str]:
        """ids (B, L) -> captions, ignoring special ids."""
        return [
            bytes(int(t) - self.OFFSET for t in row if int(t) >= self.OFFSET).decode("utf-8", errors="replace")
            for row in ids
        ]


class WordTokenizer:
    """Lower-cased words and punctuation marks, each hashed to one of 4096 ids past PAD, BOS, EOS.

    A word is one token, so "red" is one embedding the model learns directly, where bytes make it
    compose three, and a rich caption is ~20 tokens where it is ~100 bytes. Hashing (CRC-32, the
    same on every machine) keeps the no-vocabulary-file property: any text encodes, and two words
    share an id only by collision, which `tests/test_text.py` checks never happens among the words
    the Physics world's captions use.
    """

    PAD, BOS, EOS = 0, 1, 2
    OFFSET = 3
    buckets = 4096
    vocab_size = buckets + OFFSET
    _pieces = re.compile(r"\w+|[^\w\s]")

    def words(self, caption: str) -> list[str]:
        return self._pieces.findall(caption.lower())

    def word_id(self, word: str) -> int:
        return zlib.crc32(word.encode("utf-8")) % self.buckets + self.OFFSET

    def encode(self, captions: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """captions -> ids (B, max_length) long and mask (B, max_length) bool: BOS, words, EOS, PAD."""
        assert max_length >= 2, f"max_length {max_length} must be >= 2 to hold BOS and EOS"
        _check_captions(captions)
        rows = [
            [self.BOS, *(self.word_id(w) for w in self.words(caption)[: max_length - 2]), self.EOS]
            for caption in captions
        ]
        return _pad_rows(rows, max_length)


TOKENIZERS = {"bytes": ByteTokenizer, "words": WordTokenizer}


@dataclass
class TextEncoderConfig:
    width: int = 128  # D: must equal the DiT's text_width
    depth: int = 2  # transformer blocks; captions are short and simple, a few blocks suffice
    heads: int = 4  # attention heads; width must divide by it
    max_length: int = 64  # tokens per caption incl. BOS/EOS; longer captions are cut
    mlp_ratio: float = 4.0  # MLP hidden width / width, as usual for transformers
    dropout: float = 0.0  # world-model training already regularizes via text dropout for CFG
    tokenizer: str = "bytes"  # "bytes" (ByteTokenizer) or "words" (WordTokenizer, hashed words)

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer {self.tokenizer!r} is not one of {sorted(TOKENIZERS)}")
        if self.width % self.heads != 0:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.max_length < 2:
            raise ValueError(f"max_length {self.max_length} must be >= 2 to hold BOS and EOS")


# One per DiT preset, same names; widths match their text_width (tiny 128, mid 128, small 256,
# base 512). Parameter counts as measured.
TEXT_ENCODER_PRESETS: dict[str, TextEncoderConfig] = {
    "tiny": TextEncoderConfig(width=128, depth=2, heads=4),  # 0.44M
    "mid": TextEncoderConfig(width=128, depth=4, heads=4),  # 0.83M: small's depth and heads at width 128
    "small": TextEncoderConfig(width=256, depth=4, heads=4),  # 3.24M
    "base": TextEncoderConfig(width=512, depth=6, heads=8),  # 19.1M
}


class TextBlock(nn.Module):
    """Pre-LayerNorm transformer block; padding keys are masked out of attention."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        D = config.width
        self.heads = config.heads
        self.dropout = config.dropout
        self.norm1 = nn.LayerNorm(D)
        self.qkv = nn.Linear(D, 3 * D)
        self.proj = nn.Linear(D, D)
        self.norm2 = nn.LayerNorm(D)
        hidden = int(D * config.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(D, hidden), nn.GELU(), nn.Linear(hidden, D))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), mask (B, L) bool -> (B, L, D)."""
        B, L, D = x.shape
        q, k, v = (
            self.qkv(self.norm1(x)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        )  # 3 x (B, h, L, hd)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask[:, None, None, :], dropout_p=self.dropout if self.training else 0.0
        )  # (B, h, L, hd)
        x = x + self.proj(y.transpose(1, 2).reshape(B, L, D))  # (B, L, D)
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Built-in text encoder: the configured tokenizer + a small transformer, trained with the world model."""

    def __init__(self, config: TextEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = TOKENIZERS[config.tokenizer]()
        self.token_embedding = nn.Embedding(self.tokenizer.vocab_size, config.width)
        self.position_embedding = nn.Parameter(torch.zeros(config.max_length, config.width))
        self.blocks = nn.ModuleList(TextBlock(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(config.width)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def width(self) -> int:
        return self.config.width

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> TextCondition:
        """ids (B, L) long from the tokenizer's `encode`, mask (B, L) bool -> TextCondition.

        Real tokens attend only to real tokens and `pooled` is their masked mean, so padding never
        changes the result; `tokens` are zero at padding.
        """
        B, L = ids.shape
        assert L <= self.config.max_length, f"sequence length {L} exceeds max_length {self.config.max_length}"
        assert mask.shape == (B, L), f"mask {tuple(mask.shape)} is not ids' shape {(B, L)}"
        mask = mask.bool()
        assert mask.any(dim=1).all(), "every row needs a real token (BOS/EOS are always present)"
        x = self.token_embedding(ids) + self.position_embedding[:L]  # (B, L, D)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x) * mask[..., None]  # (B, L, D)
        pooled = x.sum(dim=1) / mask.sum(dim=1, keepdim=True)  # (B, D)
        return TextCondition(x, mask, pooled)

    def encode_text(self, captions: list[str], device: torch.device | str | None = None) -> TextCondition:
        """captions -> TextCondition on `device` (default: this module's device); keeps grads."""
        device = device if device is not None else self.position_embedding.device
        ids, mask = self.tokenizer.encode(captions, self.config.max_length)
        return self(ids.to(device), mask.to(device))
