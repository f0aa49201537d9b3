"""Actions as the DiT reads them: its config's action fields, and dataset actions converted.

A dataset or model file describes its action space as JSON (``worldsim.spaces.describe_space``);
from that description alone the DiT gets its action embedding (a table for ``Discrete``, a
linear layer over the flattened numbers otherwise, one-hot per component for ``MultiDiscrete``)
and stored actions become its input.
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
    if kind == "MultiDiscrete":  # one-hot per component: a camera bin or a key is a category, not a magnitude
        return {
            "action_kind": "continuous",
            "action_dim": int(torch.tensor(action_space["nvec"]).sum()),
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
    if action_space.get("type") == "MultiDiscrete":
        return multi_one_hot(actions, action_space)
    return actions.float().reshape(B, T, fields["action_dim"])


def multi_one_hot(actions: torch.Tensor, action_space: dict[str, Any]) -> torch.Tensor:
    """MultiDiscrete actions (B, T, *nvec.shape) -> the one-hots of their components, concatenated (B, T, sum(nvec))."""
    nvec = torch.tensor(action_space["nvec"], dtype=torch.long, device=actions.device).reshape(-1)
    start = torch.tensor(action_space.get("start", 0), dtype=torch.long, device=actions.device).reshape(-1)
    B, T = actions.shape[:2]
    offsets = torch.cumsum(nvec, 0) - nvec
    index = actions.long().reshape(B, T, -1) - start + offsets
    return torch.zeros(B, T, int(nvec.sum()), device=actions.device).scatter_(-1, index, 1.0)
