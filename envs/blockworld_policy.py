"""BlockWorld's basic policy: scripted exploration that comes back to places it has seen.

Like the scripted explorer behind Sora's Minecraft footage, it walks, turns, looks around, jumps,
digs and builds; unlike a random walk it *revisits*: square loops end where they began, walks out
come back the same way, and looking away turns back to the same view. Data from it therefore holds
returns to earlier views after 10-100 frames away, which is what a world model's memory is
trained and tested on.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worldsim.envs.blockworld import HOTBAR, TURN, YAW_STEPS, act
from worldsim.envs.voxels import WOOD

MOVE, STRAFE, JUMP, YAW, PITCH, USE, SELECT = range(7)
QUARTER = YAW_STEPS // 4  # yaw steps in a 90 degree turn
HOME = "home"  # a plan entry: walk back to the routine's start and face its way
ARRIVED = 0.2  # blocks: close enough to the start to count as back
HOME_STEPS = 80


class ExplorePolicy:
    """Picks routines at random from the reset seed and plays them out action by action.

    Routines: a square loop (n forward, quarter turn, m forward, ... back to the start; half the
    corners dig and build), out and back (walk, dig and build, half turn, walk the same steps back,
    half turn), look away and back (turn k steps, look about, turn k back), dig and build (look
    down, break, pick a block, place, look up), a glance up and down, and a wander to somewhere new
    (turn, walk; the one routine that does not return). Reactively it jumps when a forward step did not move it (a one-block step
    or a wall) and chops whenever the crosshair rests on wood within reach.
    """

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.plan: list[Any] = []  # actions, and HOME
        self.last: tuple[np.ndarray, np.ndarray] | None = None
        self.anchor: tuple[np.ndarray, int] = (np.zeros(3), 0)
        self.home_steps = 0

    def __call__(self, observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        state = info["state"]
        position = np.asarray(state["player_position"], np.float64)
        yaw = int(round(float(state["player_look"][0]) / TURN)) % YAW_STEPS
        blocked = self.last is not None and self.last[0][MOVE] == 1 and np.hypot(*(position - self.last[1])[:2]) < 0.05
        target = state["block_type"][tuple(s // 2 for s in state["block_type"].shape)]
        if int(state["target_block"][0]) >= 0 and target == WOOD and self.rng.random() < 0.8:
            action = act(use=1)  # chop: the plan waits
        else:
            if not self.plan:
                self.plan = self._routine()
                self.anchor = (position, yaw)
            action = self.plan.pop(0) if self.plan[0] is not HOME else self._home(position, yaw)
            if blocked and action[MOVE] == 1:
                action = action.copy()
                action[JUMP] = 1
        self.last = (action, position)
        return action

    def _home(self, position: np.ndarray, yaw: int) -> np.ndarray:
        """Steer back to where the routine began, then face as it did, so a detour still returns.

        Gives up after ``HOME_STEPS`` (walled in, say), so a stuck player never stalls the plan.
        """
        self.home_steps += 1
        (x, y), (anchor_x, anchor_y) = position[:2], self.anchor[0][:2]
        far = np.hypot(anchor_x - x, anchor_y - y) > ARRIVED and self.home_steps < HOME_STEPS
        heading = round(np.arctan2(anchor_x - x, anchor_y - y) / TURN) % YAW_STEPS if far else self.anchor[1]
        turn = (heading - yaw) % YAW_STEPS
        if turn:
            return act(yaw=2 if turn <= YAW_STEPS // 2 else 1)
        if far:
            return act(move=1)
        self.plan.pop(0)
        self.home_steps = 0
        return act()

    def _routine(self) -> list[Any]:
        rng = self.rng
        kinds = ["loop", "out_and_back", "look_away", "dig_build", "glance", "wander"]
        kind = rng.choice(kinds, p=[0.25, 0.15, 0.2, 0.15, 0.1, 0.15])
        turn = int(rng.choice([1, 2]))  # yaw component: 1 left, 2 right
        if kind == "loop":
            n, m = (int(v) for v in rng.integers(8, 25, size=2))
            plan: list[Any] = []
            for length in (n, m, n, m):
                # Digging and building at corners leaves edits that the rest of the loop comes back to.
                corner = self._dig_build() if rng.random() < 0.5 else []
                plan += [act(move=1)] * length + corner + [act(yaw=turn)] * QUARTER
            return plan + [HOME]
        if kind == "out_and_back":
            n = int(rng.integers(8, 25))
            half = [act(yaw=turn)] * (2 * QUARTER)
            return [act(move=1)] * n + self._dig_build() + half + [act(move=1)] * n + half + [HOME]
        if kind == "look_away":
            k = int(rng.integers(3, 13))
            look = [act(pitch=int(rng.integers(0, 3))) for _ in range(int(rng.integers(2, 5)))]
            back = [act(pitch={0: 0, 1: 2, 2: 1}[int(a[PITCH])]) for a in reversed(look)]
            return [act(yaw=turn)] * k + look + back + [act(yaw=3 - turn)] * k
        if kind == "dig_build":
            return self._dig_build()
        if kind == "wander":  # on to somewhere new: the one routine that does not come back
            return [act(yaw=turn)] * int(rng.integers(0, 2 * QUARTER)) + [act(move=1)] * int(rng.integers(12, 41))
        up = int(rng.integers(1, 4))
        return [act(pitch=1)] * up + [act()] * int(rng.integers(1, 4)) + [act(pitch=2)] * up

    def _dig_build(self) -> list[np.ndarray]:
        """Look down, break one to three blocks, pick a block, place one or two, look up again."""
        rng = self.rng
        down = int(rng.integers(2, 5))
        digs = [act(use=1)] * int(rng.integers(1, 4))
        builds = [act(select=int(rng.integers(1, len(HOTBAR) + 1)))] + [act(use=2)] * int(rng.integers(1, 3))
        return [act(pitch=2)] * down + digs + builds + [act(pitch=1)] * down
