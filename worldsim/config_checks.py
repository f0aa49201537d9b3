"""Range checks that configs run when they are built, so a bad size stops a command before it starts.

A size of 0 reaches numpy or a DataLoader as an internal error minutes later, or is silently taken
for "unset"; checked here it is one line naming the field, the value and the smallest one allowed.
"""

from __future__ import annotations

from typing import Any


def check_at_least(cfg: Any, node: str = "", **minimums: float) -> None:
    """Raise ValueError naming the first field of ``cfg`` below its minimum; None (unset) passes.

    A list field is checked element by element. ``node`` is where ``cfg`` sits in the command's
    config (``data`` for ``data.batch_size``), so the message names the key a user overrides.
    """
    for name, minimum in minimums.items():
        value = getattr(cfg, name)
        many = isinstance(value, (list, tuple))
        if any(item is not None and not item >= minimum for item in (value if many else [value])):  # NaN too
            key = f"{node}.{name}" if node else name
            raise ValueError(f"{key}={value}: {'each' if many else 'it'} must be at least {minimum:g}")


def check_within(cfg: Any, node: str = "", **bounds: tuple[float, float]) -> None:
    """Raise ValueError naming the first field of ``cfg`` outside its closed ``(low, high)``; None passes."""
    for name, (low, high) in bounds.items():
        value = getattr(cfg, name)
        if value is not None and not low <= value <= high:  # NaN too
            key = f"{node}.{name}" if node else name
            raise ValueError(f"{key}={value}: it must lie in [{low:g}, {high:g}]")
