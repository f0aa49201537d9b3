"""Named, saturated object colors that a color-segmenting tracker can tell apart.

Hues sit at least 30 degrees apart at full saturation; scenery (ground, tables, walls) uses
grays so no object color is ever confused with the background.
"""

from __future__ import annotations

COLORS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "orange": (0.95, 0.55, 0.05),
    "yellow": (0.95, 0.90, 0.10),
    "green": (0.10, 0.80, 0.15),
    "cyan": (0.10, 0.85, 0.90),
    "blue": (0.10, 0.25, 0.95),
    "purple": (0.55, 0.15, 0.90),
    "magenta": (0.95, 0.15, 0.75),
}

#: Scenery grays, deliberately unsaturated.
GROUND = (0.55, 0.55, 0.55)
FLOOR = (0.30, 0.30, 0.30)
WALL = (0.75, 0.75, 0.75)
GOAL = (0.97, 0.97, 0.97)


def rgb(color: str | tuple[float, float, float]) -> tuple[float, float, float]:
    """A color name or an RGB triple in 0..1 -> an RGB triple."""
    if isinstance(color, str):
        if color not in COLORS:
            raise ValueError(f"unknown color {color!r}: use one of {sorted(COLORS)} or an RGB triple in 0..1")
        return COLORS[color]
    r, g, b = (float(c) for c in color)
    if not all(0.0 <= c <= 1.0 for c in (r, g, b)):
        raise ValueError(f"color {color} has a channel outside 0..1: give RGB in 0..1")
    return (r, g, b)
