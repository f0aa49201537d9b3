"""Actions as the DiT reads them: its config's action fields, and dataset actions converted.

A dataset or model file describes its action space as JSON (``worldsim.spaces.describe_space``);
from that description alone the DiT gets its action embedding (a table for ``Discrete``, a
linear layer over the flattened numbers otherwise) and stored actions become its input.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch


def action_fields(action_space: Optional[dict[str, Any]]) -> dict[str, Any]:
    """VideoDiTConfig's action fields for a dataset manifest's ``action_space`` description."""
    if not action_space:
        return {"action_kind": "continuous", "action_dim": 0, "num_actions": 0}
    kind = action_space.get("type")
    if kind == "Discrete":
        return {"action_kind": "discrete", "action_dim": 0, "num_actions": int(action_space["n"])}
    if kind == "Box":
        return {"action_kind": "continuous", "action_dim": max(1, math.prod(action_space["shape"])), "num_actions": 0}
    if kind == "MultiDiscrete":  # embedded as a vector of numbers: fine for small counts (e.g. buttons)
        return {
            "action_kind": "continuous",
            "action_dim": int(torch.tensor(action_space["nvec"]).numel()),
            "num_actions": 0,
        }
    if kind == "MultiBinary":
        return {
            "action_kind": "continuous",
            "action_dim": int(torch.tensor(action_space["n"]).prod()),
            "num_actions": 0,
        }
    raise ValueError(
        f"action space {action_space} is not supported: the dynamics model takes Box, Discrete, "
        "MultiDiscrete or MultiBinary actions; wrap the env to use one of them"
    )


def model_actions(actions: torch.Tensor, action_space: Optional[dict[str, Any]]) -> Optional[torch.Tensor]:
    """Stored actions (B, T, *A) -> what VideoDiT reads: float (B, T, action_dim) or long ids (B, T)."""
    fields = action_fields(action_space)
    B, T = actions.shape[:2]
    if fields["action_kind"] == "discrete":
        return (actions.long() - int(action_space.get("start", 0))).reshape(B, T)
    if fields["action_dim"] == 0:
        return None
    return actions.float().reshape(B, T, fields["action_dim"])
