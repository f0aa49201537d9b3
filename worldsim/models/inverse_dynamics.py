"""BlockWorld's inverse-dynamics model (IDM): the action read back from two consecutive frames.

World models of Minecraft are scored for action following by an IDM trained on the game's own
footage (VPT, MineWorld): it reads the action from a predicted frame pair, and its accuracy on the
game's frames is the ceiling. ``InverseDynamicsModel`` is that IDM for BlockWorld: a small CNN over
the two frames and their difference, one classification head per action component.

**Labels are the effective action** (``effective_actions``), what the ground truth says happened,
not what was pressed, because two frames cannot show a press that did nothing:

- move / strafe: the player's horizontal displacement along its facing (after the step's turn)
  and to its right, more than ``MOVED`` blocks (a full step is 0.25, a diagonal one 0.18 per axis);
  a walk into a wall is a no-op, a slide along one is the motion it made;
- jump: the player stood on the ground and rose (a jump pressed in the air does nothing);
- yaw / pitch: the look changed by one 15-degree step (pitch pressed at its +-75 degree limit does
  nothing);
- use: an edit happened: 1 a block broke, 2 a block was placed (a use that hit nothing, was out of
  reach or would have placed a block inside the player does nothing);
- select is left out: BlockWorld draws no hotbar, so the selected block is invisible in frames;
- and nothing at all where the two frames are identical: a yaw turn facing the sky (a gradient
  with no yaw in it) or a step across a featureless plain changes no pixel, and no reader of frames
  can see it. In the sticky-policy data that is 11% of the moves and 7% of the camera turns.

One ambiguity stays: a jump's first frame rises 0.4 blocks and the next 0.32 (gravity 0.08), so
two frames tell a jump from the rest of its ascent only by that difference.

Scoring (``group_hits``) is per action group (``GROUPS``): for each transition, 1 when the IDM
reads the group's effective components exactly, 0 when it does not, and no sample (NaN) when both
the label and the reading are no-ops. The mean is therefore the accuracy over transitions where
something happened or the IDM says so: copying the last frame (nothing ever happens) scores 0, and
reading motion everywhere is punished on the still transitions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from worldsim.config_checks import check_at_least
from worldsim.envs.blockworld import ACTION_NAMES, ACTION_NVEC, TURN, YAW_STEPS

#: The components the IDM predicts (select is invisible), as indices into BlockWorld's action.
COMPONENTS = ("move", "strafe", "jump", "yaw", "pitch", "use")
MOVE, STRAFE, JUMP, YAW, PITCH, USE = range(len(COMPONENTS))
CLASSES = tuple(ACTION_NVEC[ACTION_NAMES.index(name)] for name in COMPONENTS)
#: Action groups as VPT/MineWorld report them, by the components (indices into COMPONENTS) they hold.
GROUPS: dict[str, tuple[int, ...]] = {"move": (MOVE, STRAFE), "camera": (YAW, PITCH), "jump": (JUMP,), "use": (USE,)}
MOVED = 0.1  # blocks of displacement along an axis that count as a move or strafe
ROSE = 0.05  # blocks the feet rise in a step that count as a jump's start
#: ``info["state"]`` keys ``effective_actions`` reads.
STATE_KEYS = ("player_position", "player_look", "player_on_ground", "edit_count", "edits")


@dataclass
class InverseDynamicsConfig:
    # Conv widths, each a stride-2 3x3 conv: 64x64 frames -> 4x4 maps. Small on purpose: a float16
    # file under 1 MB that trains on a CPU in minutes.
    channels: tuple[int, ...] = (32, 64, 96, 96)
    hidden: int = 128  # width of the layer the heads read
    num_groups: int = 8  # GroupNorm groups; every width must divide by it
    frame_size: int = 64  # frames are frame_size x frame_size

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)  # Hydra hands a list over
        check_at_least(self, "idm.model", hidden=1, num_groups=1, frame_size=1)
        bad = [c for c in self.channels if c < 1 or c % self.num_groups]
        if bad or not self.channels:
            raise ValueError(
                f"idm channels {self.channels}: give at least one positive width, each divisible by num_groups={self.num_groups}"
            )
        if self.frame_size % 2 ** len(self.channels):
            raise ValueError(
                f"idm frame_size={self.frame_size} must divide by 2**{len(self.channels)} (one halving per conv)"
            )


class InverseDynamicsModel(nn.Module):
    """Two frames -> logits of each action component in ``COMPONENTS``."""

    def __init__(self, config: InverseDynamicsConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        width = 9  # the two RGB frames and their difference
        for channels in config.channels:
            layers += [nn.Conv2d(width, channels, 3, stride=2, padding=1), nn.GroupNorm(config.num_groups, channels)]
            layers.append(nn.SiLU())
            width = channels
        self.encoder = nn.Sequential(*layers)
        side = config.frame_size // 2 ** len(config.channels)
        self.hidden = nn.Linear(width * side * side, config.hidden)
        self.heads = nn.Linear(config.hidden, sum(CLASSES))

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> list[torch.Tensor]:
        """uint8 frames (B, 3, H, W) each -> one (B, classes) logit tensor per component."""
        expected = (3, self.config.frame_size, self.config.frame_size)
        assert before.shape == after.shape and before.shape[1:] == expected, (
            f"IDM frames {tuple(before.shape)} and {tuple(after.shape)}: expected two (B, *{expected}) uint8 batches"
        )
        a, b = before.float() / 127.5 - 1, after.float() / 127.5 - 1
        x = self.encoder(torch.cat([a, b, b - a], dim=1))  # (B, C, h, w)
        x = F.silu(self.hidden(x.flatten(1)))  # (B, hidden)
        return list(self.heads(x).split(CLASSES, dim=1))

    def loss(self, before: torch.Tensor, after: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Summed cross-entropy over components; labels (B, len(COMPONENTS)) int64. Returns (loss, logs)."""
        logits = self(before, after)
        losses = [F.cross_entropy(lg, labels[:, i]) for i, lg in enumerate(logits)]
        logs = {f"loss_{name}": value.detach() for name, value in zip(COMPONENTS, losses)}
        return torch.stack(losses).sum(), logs

    @torch.no_grad()
    def read(self, before: np.ndarray, after: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """uint8 frames (N, H, W, 3) each -> the most likely effective action (N, len(COMPONENTS)) int64."""
        out = []
        for start in range(0, len(before), batch_size):
            a, b = (torch.from_numpy(np.ascontiguousarray(f[start : start + batch_size])) for f in (before, after))
            logits = self(a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2))
            out.append(torch.stack([lg.argmax(1) for lg in logits], dim=1).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(COMPONENTS)), np.int64)


def effective_actions(state: dict[str, np.ndarray], frames: np.ndarray) -> np.ndarray:
    """The effective action of every transition of a BlockWorld trajectory (module docstring).

    ``state``: ``info["state"]`` arrays stacked over T + 1 frames (``STATE_KEYS`` at least);
    ``frames``: the T + 1 true frames (T + 1, H, W, 3), where a pair without a changed pixel shows no action.
    Returns (T, len(COMPONENTS)) int64 in the action's own coding (0 no-op, 1/2 as the env reads them).
    """
    position = np.asarray(state["player_position"], np.float64)  # (T+1, 3)
    look = np.asarray(state["player_look"], np.float64)  # (T+1, 2)
    on_ground = np.asarray(state["player_on_ground"], bool)
    count = np.asarray(state["edit_count"], np.int64)
    edits = np.asarray(state["edits"])  # (T+1, MAX_EDITS, 6)
    steps = np.round(look / TURN).astype(np.int64)
    labels = np.zeros((len(position) - 1, len(COMPONENTS)), np.int64)

    yaw_turn = (steps[1:, 0] - steps[:-1, 0] + 1) % YAW_STEPS - 1  # -1 left, +1 right (yaw grows to the right)
    labels[:, YAW] = np.where(yaw_turn == 1, 2, np.where(yaw_turn == -1, 1, 0))
    pitch_turn = steps[1:, 1] - steps[:-1, 1]  # +1 up
    labels[:, PITCH] = np.where(pitch_turn == 1, 1, np.where(pitch_turn == -1, 2, 0))

    dx, dy = (position[1:, :2] - position[:-1, :2]).T
    yaw = look[1:, 0]  # walking follows the look after this step's turn
    forward = np.sin(yaw) * dx + np.cos(yaw) * dy
    right = np.cos(yaw) * dx - np.sin(yaw) * dy
    labels[:, MOVE] = np.where(forward > MOVED, 1, np.where(forward < -MOVED, 2, 0))
    labels[:, STRAFE] = np.where(right < -MOVED, 1, np.where(right > MOVED, 2, 0))  # strafe 1 is left
    labels[:, JUMP] = (on_ground[:-1] & (position[1:, 2] - position[:-1, 2] > ROSE)).astype(np.int64)

    edited = count[1:] > count[:-1]
    rows = np.clip(np.minimum(count[1:], edits.shape[1]) - 1, 0, None)
    new_block = edits[np.arange(len(rows)) + 1, rows, 4]
    labels[:, USE] = np.where(edited, np.where(new_block == 0, 1, 2), 0)
    unchanged = (frames[1:] == frames[:-1]).reshape(len(labels), -1).all(1)
    labels[unchanged] = 0
    return labels


def group_hits(read: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per group, (N,) floats: 1 read exactly, 0 not, NaN where label and reading are both no-ops."""
    out = {}
    for group, components in GROUPS.items():
        r, y = read[:, components], labels[:, components]
        active = (r != 0).any(1) | (y != 0).any(1)
        out[group] = np.where(active, (r == y).all(1).astype(np.float64), math.nan)
    return out


def group_accuracy(read: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Per group, the mean of ``group_hits`` (NaN where nothing happened and nothing was read)."""
    accuracy = {}
    for group, hits in group_hits(read, labels).items():
        measured = hits[~np.isnan(hits)]
        accuracy[group] = float(measured.mean()) if measured.size else math.nan
    return accuracy
