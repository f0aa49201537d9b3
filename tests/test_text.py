"""Byte and word tokenizers and the built-in text encoder: round trips, masking, and distinct captions."""

from __future__ import annotations

import pytest
import torch

from worldsim.models.text import (
    TEXT_ENCODER_PRESETS,
    ByteTokenizer,
    TextCondition,
    TextEncoder,
    TextEncoderConfig,
    WordTokenizer,
)

CAPTIONS = ["red ball rolls left", "blue box is pushed", "", "grüner Würfel 🟩 fällt"]


def test_tokenizer_round_trip_and_padding() -> None:
    tok = ByteTokenizer()
    ids, mask = tok.encode(CAPTIONS, max_length=48)
    assert ids.shape == mask.shape == (4, 48) and ids.dtype == torch.long and mask.dtype == torch.bool
    assert tok.decode(ids) == CAPTIONS
    lengths = [len(c.encode("utf-8")) + 2 for c in CAPTIONS]
    assert mask.sum(1).tolist() == lengths
    for row, n in zip(ids, lengths):
        assert row[0] == tok.BOS and row[n - 1] == tok.EOS and (row[n:] == tok.PAD).all()
    assert ids.max() < tok.vocab_size


def test_tokenizer_truncates_at_character_boundary() -> None:
    tok = ByteTokenizer()
    ids, mask = tok.encode(["abcdefgh", "ééééé"], max_length=6)  # 4 bytes of text fit
    assert tok.decode(ids) == ["abcd", "éé"]
    assert (ids[:, 0] == tok.BOS).all()
    assert ids[0, 5] == tok.EOS and mask[0].all()
    # "é" is 2 bytes: 4 fit exactly here; with 5 free bytes the third "é" would be split, so dropped.
    ids, _ = tok.encode(["ééééé"], max_length=7)
    assert tok.decode(ids) == ["éé"]


def test_tokenizer_rejects_non_strings() -> None:
    tok = ByteTokenizer()
    with pytest.raises(TypeError, match="caption 1 is int"):
        tok.encode(["ok", 3], max_length=8)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="wrap it in"):
        tok.encode("a single caption", max_length=8)  # type: ignore[arg-type]


def test_encoder_shapes() -> None:
    torch.manual_seed(0)
    config = TextEncoderConfig(width=64, depth=2, heads=4, max_length=32)
    encoder = TextEncoder(config).eval()
    assert encoder.width == 64
    cond = encoder.encode_text(CAPTIONS)
    assert isinstance(cond, TextCondition) and len(cond) == 4
    assert cond.tokens.shape == (4, 32, 64) and cond.mask.shape == (4, 32) and cond.pooled.shape == (4, 64)
    assert (cond.tokens[~cond.mask] == 0).all(), "padding tokens are zero"
    picked = cond.select(torch.tensor([1, 1, 0]))
    assert torch.equal(picked.pooled[0], cond.pooled[1]) and len(picked) == 3


def test_padding_does_not_change_output() -> None:
    """The same caption padded to different lengths (or with garbage in pad slots) encodes the same."""
    torch.manual_seed(0)
    encoder = TextEncoder(TextEncoderConfig(width=64, depth=2, heads=4, max_length=64)).eval()
    ids_short, mask_short = encoder.tokenizer.encode(["red ball"], max_length=16)
    ids_long, mask_long = encoder.tokenizer.encode(["red ball"], max_length=64)
    ids_long[~mask_long] = 77  # whatever sits at padded positions must not matter
    with torch.no_grad():
        short, long = encoder(ids_short, mask_short), encoder(ids_long, mask_long)
    torch.testing.assert_close(short.pooled, long.pooled, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short.tokens, long.tokens[:, :16], atol=1e-5, rtol=1e-5)


def test_different_captions_differ_and_encoding_is_deterministic() -> None:
    torch.manual_seed(0)
    encoder = TextEncoder(TEXT_ENCODER_PRESETS["tiny"]).eval()
    with torch.no_grad():
        a = encoder.encode_text(CAPTIONS)
        b = encoder.encode_text(CAPTIONS)
    assert torch.equal(a.pooled, b.pooled) and torch.equal(a.tokens, b.tokens)
    pooled = torch.nn.functional.normalize(a.pooled, dim=1)
    cosine = pooled @ pooled.T
    off_diagonal = cosine[~torch.eye(4, dtype=torch.bool)]
    assert off_diagonal.max() < 0.99, cosine
    # "left" vs "right" differ by a few bytes and must still differ.
    with torch.no_grad():
        lr = encoder.encode_text(["red ball rolls left", "red ball rolls right"]).pooled
    assert (lr[0] - lr[1]).abs().max() > 1e-3


def test_encoder_trains_and_state_dict_round_trips() -> None:
    torch.manual_seed(0)
    config = TextEncoderConfig(width=32, depth=1, heads=2, max_length=24)
    encoder = TextEncoder(config)
    cond = encoder.encode_text(["a", "b"])
    cond.pooled.sum().backward()
    assert encoder.token_embedding.weight.grad is not None
    clone = TextEncoder(config).eval()
    clone.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        assert torch.equal(clone.encode_text(["x y"]).pooled, encoder.eval().encode_text(["x y"]).pooled)


def test_word_tokenizer_gives_one_stable_token_per_word() -> None:
    tok = WordTokenizer()
    ids, mask = tok.encode(["Red ball, rolls LEFT", "red ball rolls left", "grüner Würfel 🟩"], max_length=8)
    assert ids.shape == mask.shape == (3, 8) and ids.max() < tok.vocab_size
    assert mask.sum(1).tolist() == [2 + 5, 2 + 4, 2 + 3]  # BOS, "red" "ball" "," "rolls" "left", EOS
    assert ids[1, :6].tolist() == [tok.BOS, 3986, 2142, 1425, 1899, tok.EOS]  # CRC-32: the same on every machine
    assert ids[0, 1:3].tolist() == ids[1, 1:3].tolist() and ids[0, 3] != ids[1, 3]  # case folds, "," is a token
    cut, cut_mask = tok.encode(["one two three four five"], max_length=4)
    assert cut[0].tolist() == [tok.BOS, tok.word_id("one"), tok.word_id("two"), tok.EOS] and cut_mask.all()
    with pytest.raises(TypeError, match="wrap it in"):
        tok.encode("a single caption", max_length=8)  # type: ignore[arg-type]


def test_no_two_caption_words_share_a_hashed_id() -> None:
    """A collision would make the model unable to tell two words apart: none among the words the
    Physics world's plain and rich captions use, over both splits."""
    from worldsim.envs.physics import PhysicsEnv

    tok = WordTokenizer()
    words: set[str] = set()
    for captions in ("plain", "rich"):
        env = PhysicsEnv(captions=captions, holdout="combinations")
        for seed in range(60):
            for split in ("id", "ood"):
                words.update(tok.words(env.reset(seed=seed, options={"split": split})[1]["caption"]))
        env.close()
    assert len(words) > 40, sorted(words)
    assert len({tok.word_id(w) for w in words}) == len(words)


def test_encoder_tokenizer_is_chosen_by_config() -> None:
    torch.manual_seed(0)
    words = TextEncoder(TextEncoderConfig(width=32, depth=1, heads=2, max_length=12, tokenizer="words")).eval()
    assert isinstance(words.tokenizer, WordTokenizer)
    assert words.token_embedding.num_embeddings == WordTokenizer.vocab_size
    with torch.no_grad():
        cond = words.encode_text(["a small red ball falls from high on the left, alone", "a blue box"])
    assert cond.mask.sum(1).tolist() == [12, 5]  # 11 words and a comma, cut to 10, with BOS and EOS
    assert isinstance(TextEncoder(TextEncoderConfig(width=32, heads=2)).tokenizer, ByteTokenizer)
    with pytest.raises(ValueError, match="tokenizer 'sentencepiece' is not one of"):
        TextEncoderConfig(tokenizer="sentencepiece")
