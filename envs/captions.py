"""Rich captions: a Physics episode's attributes said the way a user would say them, in varied phrasings.

A caption is built from the episode's *attributes* (``PhysicsEnv.caption_attributes``), a small
dict of words: the captioned object's ``color``, ``shape``, ``size`` (small/big), the object
``count``, its ``start`` (left/centre/right) and ``height`` (high/low), its ``motion``
(drop/throw/roll) and ``direction`` (left/right/none), and its ``bounce`` (bouncy/dead). An
attribute the parameters leave uncertain (a size between small and big) is absent from the dict
and from the caption, so every word a caption says is true of the episode, and evals score
the attributes, never the text (``worldsim.evals.text``).

Every attribute in the dict is named by every phrasing; phrasings differ in words and order
("a small red ball is dropped from high on the left" or "on the left, a small red ball falls
from high"), and the episode's seeded rng picks one.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.envs.base import SHAPE_WORDS, SHAPES, with_article

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
PLACE_WORDS = {"left": "on the left", "centre": "in the centre", "right": "on the right"}
BOUNCE_WORDS = {
    "bouncy": ("and bounces high", "and is very bouncy"),
    "dead": ("and barely bounces", "and lands dead"),
}
#: How many phrasings ``rich_caption`` chooses from (the rng draws one index below it).
PHRASINGS = 3


def subject(attributes: dict[str, Any]) -> str:
    """ "a small red ball": size (when named), color and shape word, with its article."""
    words = [attributes.get("size"), attributes["color"], SHAPE_WORDS[SHAPES[attributes["shape"]]]]
    return with_article(" ".join(w for w in words if w))


def start_phrase(attributes: dict[str, Any]) -> str:
    """Where the object starts: "from high on the left", "from the right", "" when neither is named."""
    height, start = attributes.get("height"), attributes.get("start")
    if start is None:
        return {"high": "from high up", "low": "from low down"}.get(height, "")
    if height:
        return f"from {height} {PLACE_WORDS[start]}"
    return "from the centre" if start == "centre" else f"from the {start}"


def motion_phrase(attributes: dict[str, Any], passive: bool) -> str:
    """ "is thrown to the left" (passive) or "flies to the left"; "is dropped" / "falls"; "rolls to the right"."""
    motion, direction = attributes["motion"], attributes["direction"]
    if motion == "drop":
        return "is dropped" if passive else "falls"
    if motion == "throw":
        return f"is thrown to the {direction}" if passive else f"flies to the {direction}"
    if passive:
        return f"is rolled to the {direction}" if attributes["shape"] == "sphere" else f"is slid to the {direction}"
    return f"{'rolls' if attributes['shape'] == 'sphere' else 'slides'} to the {direction}"


def count_phrase(count: int, variant: int) -> str:
    """The object count as a trailing clause: "on its own", "with 2 other objects", "among three objects"."""
    if count == 1:
        return "on its own" if variant % 2 == 0 else "alone"
    others = count - 1
    if variant % 2 == 0:
        return f"with {others} other object{'s' if others > 1 else ''}"
    return f"among {NUMBER_WORDS.get(count, str(count))} objects"


def rich_caption(attributes: dict[str, Any], rng: np.random.Generator) -> str:
    """One caption naming every attribute in ``attributes``, in a phrasing drawn from ``rng``."""
    phrasing, variant = int(rng.integers(PHRASINGS)), int(rng.integers(2))
    start = start_phrase(attributes)
    bounce = BOUNCE_WORDS[attributes["bounce"]][variant] if "bounce" in attributes else ""
    count = count_phrase(attributes["count"], variant)
    who = subject(attributes)
    if (
        phrasing == 0
    ):  # "a small red ball is thrown to the left from high on the right and bounces high, with 2 other objects"
        parts = [who, motion_phrase(attributes, passive=True), start, bounce]
        return " ".join(p for p in parts if p) + f", {count}"
    if phrasing == 1:  # "two objects: a small red ball flies to the left from high on the right and bounces high"
        total = attributes["count"]
        head = "one object" if total == 1 else f"{NUMBER_WORDS.get(total, str(total))} objects"
        parts = [who, motion_phrase(attributes, passive=False), start, bounce]
        return f"{head}: " + " ".join(p for p in parts if p)
    # "from high on the right, a small red ball flies to the left and bounces high, with 2 other objects"
    parts = [who, motion_phrase(attributes, passive=False), bounce]
    sentence = " ".join(p for p in parts if p) + f", {count}"
    return f"{start}, {sentence}" if start else sentence
