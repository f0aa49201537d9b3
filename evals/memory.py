"""Memory: when a view comes back after k frames away, does the predictor show it again?

A world model with a short window forgets whatever leaves it, and full-frame error over a rollout
hides that. This suite scripts episodes that leave a view and return to it, replayed from a
seeded reset of the real world, and scores the prediction *at the return frames*, where the truth
is known exactly: the view the predictor saw before.

Scenarios (``<kind>``; one list per kind, ``n`` scenarios each, variants taken in turn):

- ``lookaway`` (BlockWorld): the real context shows a view (frame 0) and starts turning away from
  it; the player turns 90, 180, 270 or 360 degrees (``YAW_STEPS`` of 15 degrees), holds, and turns
  back to the identical pose. The last context frame is already 45 degrees off, so copy-last is
  not right at the return for free.
- ``loop`` (BlockWorld): the player walks A -> B and back (``back``: backwards; ``segment``:
  turns round twice), or around a triangle A -> B -> C -> A, from the view of frame 0, holding at
  B to stretch the time away.
- ``edit`` (BlockWorld): the player looks 45 degrees down, places the hotbar block that stands out
  most (or breaks the block) under the crosshair, in the context, then turns away and back. The
  pixels that show the edited cell come from the truth's depth (``edit_mask``).
- ``orbit`` (Orbit): the scripted camera loops of the consistency suite; every return to an
  earlier pose, timed from the last frame with that pose.
- ``occlusion`` (Occlusion): objects hide behind occluders and reappear; the permanence suite's
  measures of the reappearance, under ``occlusion_``.

Time away is the number of frames between the last frame showing the view and the return; it
falls in a bucket of ``TIMES_AWAY`` (``away8``: up to 16 frames, ``away32``: up to 64, ``away128``:
up to 256, ``away600``: longer). BlockWorld returns are verified on the truth (same position
within ``POSE_TOLERANCE`` and the same look, the walk really went out, the edit really happened
and shows): a scenario whose player did not get back is made again from another reset seed (up to
``MAX_ATTEMPTS``), never scored as a return. The horizon (``HORIZON``, or ``worldsim eval
horizon=``) decides which times away fit: ``horizon=600`` adds the ``away600`` variants.

Metrics per kind, over return frames, also per time-away bucket (``_away8`` ...):

- ``<kind>_psnr_db`` and ``<kind>_ssim``: the predicted return frame against the true one;
- ``<kind>_closure_error``: mean |return frame - departure frame| (0-255 levels) in the prediction
  (the real context frame where the departure is there) minus the same in the truth. The truth
  returns to the identical pose, so its own is 0 and this is 0 for the simulator;
- ``edit_present``: the predicted colour of the edited cell's pixels (their mean) is nearer the
  true colour after the edit than the colour they showed before it: a model that redraws the old
  block fails; ``edit_color_error`` is that colour's RGB distance (levels) to the true one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Collection, Optional, Sequence

import numpy as np

from worldsim import metrics
from worldsim.envs.blockworld import ACTION_NAMES, HOTBAR, WALK, YAW_STEPS, act
from worldsim.envs.camera import FAR
from worldsim.envs.voxels import BLOCKS
from worldsim.evals import permanence
from worldsim.evals.consistency import loop_returns
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import mean_ignoring_nan, metric_row
from worldsim.evals.scenarios import EVAL_STREAM, make_env, make_scenario, make_scenarios

SUITE = "memory"
BLOCKWORLD, ORBIT, OCCLUSION = "worldsim/BlockWorld-v0", "worldsim/Orbit-v0", "worldsim/Occlusion-v0"
CONTEXT = 4  # BlockWorld look-away and loop scenarios: the start view, then three steps of the way out
EDIT_CONTEXT = 8  # start, three pitch steps down, the edit, three steps of turning away
HORIZON = 128  # future frames of the BlockWorld scenarios; horizon=600 adds the away600 variants
ORBIT_CONTEXT, ORBIT_HORIZON = 4, 48  # Orbit's scripted loops take 12-32 frames each
TIMES_AWAY = (8, 32, 128, 600)  # bucket names; a bucket holds times away up to twice its name
ANGLES = (90, 180, 270, 360)  # degrees turned away (360: once round, on in the same direction)
EDIT_ANGLES = (90, 180)
LOOP_SIDE = 6  # steps of WALK (0.25 blocks) per side of a loop: short walks are seldom blocked
PITCH_DOWN = 3  # 45 degrees: the crosshair meets the ground about 1.6 blocks ahead, within reach
MAX_ATTEMPTS = 8  # reset seeds tried per scenario before it is dropped
POSE_TOLERANCE = 1e-4  # blocks: a loop's walk back lands on its start up to float rounding
MIN_EDIT_PIXELS = 12  # an edited cell showing fewer pixels at the return is too small to judge
MIN_EDIT_CONTRAST = 40.0  # levels between the cell's colour before and after the edit, to tell them apart
OCCLUSION_METRICS = ("reappearance_rate", "identity_kept", "position_error_px")
RETURN_KINDS = ("lookaway", "loop", "edit", "orbit")

NOOP = act()
YAW, STRAFE, USE, SELECT = (ACTION_NAMES.index(name) for name in ("yaw", "strafe", "use", "select"))


# ----------------------------------------------------------------- scripted plans


def bucket(time_away: int) -> int:
    """The ``TIMES_AWAY`` bucket of a time away (frames): the first whose name is at least half of it."""
    return next((t for t in TIMES_AWAY if time_away <= 2 * t), TIMES_AWAY[-1])


@dataclass(frozen=True)
class Plan:
    """A scripted episode from reset: its actions, the frame whose view it leaves and the frame it is back.

    After the actions the player stands still (no-ops) to the end of the horizon.
    """

    kind: str  # "lookaway", "loop" or "edit"
    name: str  # the variant, e.g. "turn180", "triangle", "place90"
    actions: tuple[np.ndarray, ...]
    start: int  # frame showing the view left (0-based from reset)
    back: int  # frame where the pose is the start's again
    walk: int = 0  # steps of the first leg of a loop (checked: the player really went)

    @property
    def time_away(self) -> int:
        return self.back - self.start

    def mirrored(self) -> Plan:
        """The same plan turning and strafing the other way (1 <-> 2), so scenes are seen both ways round."""
        swap = np.array([0, 2, 1])
        actions = []
        for action in self.actions:
            action = action.copy()
            action[YAW], action[STRAFE] = swap[action[YAW]], swap[action[STRAFE]]
            actions.append(action)
        return replace(self, actions=tuple(actions))

    def policy(self) -> Callable[[np.ndarray, dict[str, Any]], np.ndarray]:
        """The plan as a policy for ``make_scenario``: its actions in order, then no-ops.

        A place action without a hotbar slot gets the block whose colour differs most from what the
        crosshair's neighbourhood shows then, so the new block can be told from the old view.
        """
        queue = list(self.actions)

        def next_action(observation: np.ndarray, info: dict[str, Any]) -> np.ndarray:
            if not queue:
                return NOOP
            action = queue.pop(0)
            if action[USE] == 2 and action[SELECT] == 0:
                action = action.copy()
                action[SELECT] = contrasting_slot(observation)
            return action

        return next_action


def contrasting_slot(frame: np.ndarray) -> int:
    """The hotbar slot (1-based select value) whose block colour is farthest from the frame's centre colour."""
    h, w = frame.shape[:2]
    centre = frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3).mean(0) / 255.0
    distance = [np.linalg.norm(np.subtract(BLOCKS[code][1], centre)) for code in HOTBAR]
    return int(np.argmax(distance)) + 1


def turn_away(angle: int, length: int) -> list[np.ndarray]:
    """Turn ``angle`` degrees right, hold, and come back to the same look in ``length`` frames (360: on round)."""
    steps = angle * YAW_STEPS // 360
    out, back = act(yaw=2), act(yaw=1)
    if angle == 360:
        half = steps // 2
        return [out] * half + [NOOP] * (length - steps) + [out] * half
    return [out] * steps + [NOOP] * (length - 2 * steps) + [back] * steps


def turn_frames(angle: int) -> int:
    """Frames the shortest turn-away-and-back of ``angle`` degrees takes."""
    steps = angle * YAW_STEPS // 360
    return steps if angle == 360 else 2 * steps


def loop_walk(shape: str, length: int) -> list[np.ndarray]:
    """A walk from the start pose that comes back to it after ``length`` frames, holding at the first corner."""
    forward, turn = [act(move=1)] * LOOP_SIDE, act(yaw=2)
    hold = [NOOP] * (length - loop_frames(shape))
    if shape == "back":
        return forward + hold + [act(move=2)] * LOOP_SIDE
    if shape == "segment":
        half_turn = [turn] * (YAW_STEPS // 2)
        return forward + hold + half_turn + forward + half_turn
    third = [turn] * (YAW_STEPS // 3)
    return forward + hold + third + forward + third + forward + third


def loop_frames(shape: str) -> int:
    """Frames the shortest loop of ``shape`` takes."""
    turns = {"back": 0, "segment": YAW_STEPS, "triangle": YAW_STEPS}[shape]
    sides = {"back": 2, "segment": 2, "triangle": 3}[shape]
    return sides * LOOP_SIDE + turns


def _in_turn(variants: list[tuple[Any, int]]) -> list[tuple[Any, int]]:
    """(variant, time away) pairs reordered round-robin over the buckets, so a few scenarios cover them all."""
    by_bucket = [[v for v in variants if bucket(v[1]) == t] for t in TIMES_AWAY]
    order = []
    for i in range(max(len(b) for b in by_bucket)):
        order += [b[i] for b in by_bucket if i < len(b)]
    return order


def _timed(shortest: dict[Any, int], last_frame: int) -> list[tuple[Any, int]]:
    """Each variant at each bucket's time away (or its shortest, when longer but still in the bucket)."""
    variants = []
    for t in TIMES_AWAY:
        for variant, frames in shortest.items():
            length = max(t, frames)
            if bucket(length) == t and length <= last_frame:
                variants.append((variant, length))
    return _in_turn(variants)


def plans(kind: str, horizon: int = HORIZON) -> list[Plan]:
    """The variants of a BlockWorld kind whose return fits in the context and ``horizon`` future frames."""
    if kind == "lookaway":
        timed = _timed({angle: turn_frames(angle) for angle in ANGLES}, CONTEXT + horizon - 1)
        return [Plan(kind, f"turn{a}", tuple(turn_away(a, length)), 0, length) for a, length in timed]
    if kind == "loop":
        timed = _timed({shape: loop_frames(shape) for shape in ("back", "segment", "triangle")}, CONTEXT + horizon - 1)
        return [Plan(kind, s, tuple(loop_walk(s, length)), 0, length, LOOP_SIDE) for s, length in timed]
    if kind == "edit":
        edit = 1 + PITCH_DOWN  # the frame that first shows the edit, at the pose of the frame before
        timed = _timed({angle: turn_frames(angle) for angle in EDIT_ANGLES}, EDIT_CONTEXT + horizon - 1 - edit)
        made = []
        for i, (angle, length) in enumerate(timed):
            use = ("place", "break")[i % 2]
            down = [act(pitch=2)] * PITCH_DOWN + [act(use=2 if use == "place" else 1)]
            actions = tuple(down + turn_away(angle, length))
            made.append(Plan(kind, f"{use}{angle}", actions, edit, edit + length))
        return made
    raise ValueError(f"kind {kind!r} is not a BlockWorld memory kind: one of lookaway, loop, edit")


# ----------------------------------------------------------------- checking that the truth came back


def cell_pixels(env: Any, scenario: Scenario, frame: int, cell: Sequence[int]) -> np.ndarray:
    """(h, w) bool: the pixels of ``frame`` whose ray ends in block ``cell``, from the truth's depth.

    Each pixel's ray (the renderer's own, for the frame's look) is followed to its depth and a hair
    further, into the block it hit.
    """
    yaw, pitch = (float(v) for v in scenario.state["player_look"][frame])
    rays = env.renderer.bundle(yaw, pitch)
    depth = scenario.state["depth"][frame].ravel().astype(np.float64)
    eye = scenario.state["camera_position"][frame].astype(np.float64)
    distance = depth / rays.axial
    point = eye[:, None] + rays.direction * (distance + 1e-3)  # (3, N)
    inside = np.all(np.floor(point).astype(int) == np.asarray(cell)[:, None], axis=0) & (depth < FAR)
    return inside.reshape(scenario.state["depth"].shape[1:])


def mean_color(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean RGB (3,) in levels of the masked pixels of a (h, w, 3) frame."""
    return frame[mask].astype(np.float64).mean(0)


def check_return(env: Any, scenario: Scenario, plan: Plan) -> Optional[dict[str, Any]]:
    """The scenario's memory record if the truth really left and came back as planned, else None."""
    state = scenario.state
    position, look = state["player_position"].astype(np.float64), state["player_look"]
    if not (np.allclose(position[plan.back], position[plan.start], atol=POSE_TOLERANCE, rtol=0)):
        return None
    if not np.array_equal(look[plan.back], look[plan.start]):
        return None
    if plan.walk:  # the first leg went its full length: a blocked walk is not a loop
        leg = np.linalg.norm(position[plan.start + plan.walk, :2] - position[plan.start, :2])
        if abs(leg - plan.walk * WALK) > 1e-3:
            return None
    record: dict[str, Any] = {
        "kind": plan.kind,
        "variant": plan.name,
        "returns": [(plan.start, plan.back)],
    }
    if plan.kind != "edit":
        return record
    count = state["edit_count"]
    if count[plan.start - 1] != 0 or count[plan.start] != 1 or count[-1] != 1:
        return None
    x, y, z, old, new, _ = (int(v) for v in state["edits"][plan.start][0])
    before = plan.start - 1  # same pose as the edit frame and the return
    mask = cell_pixels(env, scenario, plan.start if new else before, (x, y, z))
    if mask.sum() < MIN_EDIT_PIXELS:
        return None
    old_color = mean_color(scenario.frames[before], mask)
    new_color = mean_color(scenario.frames[plan.back], mask)
    if np.linalg.norm(new_color - old_color) < MIN_EDIT_CONTRAST:
        return None
    return record | {
        "edit_cell": (x, y, z),
        "edit_blocks": (old, new),
        "edit_before": before,
        "edit_mask": mask,
        "edit_old_color": old_color,
        "edit_new_color": new_color,
    }


def attempt_seed(seed: int, index: int, attempt: int) -> int:
    """The reset seed of scenario ``index``'s ``attempt``-th try (the eval stream, never training's)."""
    return int(np.random.SeedSequence([EVAL_STREAM, seed, index, attempt]).generate_state(1)[0])


def blockworld_scenarios(kind: str, n: int, split: str, seed: int, horizon: int = HORIZON) -> list[Scenario]:
    """``n`` scenarios of a BlockWorld kind whose truth comes back (fewer where every attempt fails).

    Scenario ``i`` plays variant ``i % len(variants)``, mirrored on every other pass.
    """
    variants = plans(kind, horizon)
    if not variants:
        return []
    context = EDIT_CONTEXT if kind == "edit" else CONTEXT
    env = make_env(BLOCKWORLD)
    made = []
    try:
        for i in range(n):
            plan = variants[i % len(variants)]
            plan = plan.mirrored() if (i // len(variants)) % 2 else plan
            for attempt in range(MAX_ATTEMPTS):
                scenario = make_scenario(
                    env, BLOCKWORLD, {}, attempt_seed(seed, i, attempt), split, context, horizon, plan.policy()
                )
                record = check_return(env, scenario, plan)
                if record is not None:
                    scenario.params = {**scenario.params, "memory": record}
                    made.append(scenario)
                    break
    finally:
        env.close()
    return made


def orbit_scenarios(n: int, split: str, seed: int) -> list[Scenario]:
    """The consistency suite's scripted Orbit loops, each return timed from the last frame with its pose."""
    made = make_scenarios(ORBIT, n, ORBIT_CONTEXT, ORBIT_HORIZON, split, seed)
    for s in made:
        returns = loop_returns(s.state["camera_pose"], first=s.context, latest=True)
        s.params = {**s.params, "memory": {"kind": "orbit", "returns": returns}}
    return made


def occlusion_scenarios(n: int, split: str, seed: int) -> list[Scenario]:
    """The permanence suite's Occlusion scenarios: objects hide and come back."""
    made = make_scenarios(OCCLUSION, n, permanence.CONTEXT, permanence.HORIZON, split, seed)
    for s in made:
        s.params = {**s.params, "memory": {"kind": "occlusion"}}
    return made


def make_memory_scenarios(
    n: int, split: str, seed: int, horizon: Optional[int] = None, worlds: Optional[Collection[str]] = None
) -> list[list[Scenario]]:
    """One list per kind (lookaway, loop, edit, orbit, occlusion), ``n`` scenarios each (kinds with none left out).

    ``horizon`` (default ``HORIZON``) is the future of the BlockWorld kinds; Orbit and Occlusion keep their own.
    ``worlds``: the env ids whose kinds are made (None: all); BlockWorld's take most of the time.
    """
    horizon = horizon or HORIZON
    kinds = []
    if worlds is None or BLOCKWORLD in worlds:
        kinds += [blockworld_scenarios(kind, n, split, seed, horizon) for kind in ("lookaway", "loop", "edit")]
    if worlds is None or ORBIT in worlds:
        kinds.append(orbit_scenarios(n, split, seed))
    if worlds is None or OCCLUSION in worlds:
        kinds.append(occlusion_scenarios(n, split, seed))
    return [scenarios for scenarios in kinds if scenarios]


# ----------------------------------------------------------------- scores


def return_metrics(scenario: Scenario, predicted: np.ndarray) -> list[dict[str, float]]:
    """Per return of one scenario: its bucket, PSNR, SSIM, closure error and (edits) the edit's verdict."""
    record = scenario.params["memory"]
    frames = np.concatenate([scenario.context_frames, predicted])  # the predictor's view of every frame
    truth = scenario.frames
    out = []
    for start, back in record["returns"]:
        values = {
            "bucket": bucket(back - start),
            "psnr_db": metrics.pooled_psnr(frames[back], truth[back]),  # one frame: its PSNR
            "ssim": metrics.ssim(frames[back], truth[back]),
            "closure_error": _mae(frames[back], frames[start]) - _mae(truth[back], truth[start]),
        }
        if record["kind"] == "edit":
            color = mean_color(frames[back], record["edit_mask"])
            to_new = float(np.linalg.norm(color - record["edit_new_color"]))
            to_old = float(np.linalg.norm(color - record["edit_old_color"]))
            values |= {"edit_present": float(to_new < to_old), "edit_color_error": to_new}
        out.append(values)
    return out


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _measures(kind: str) -> list[str]:
    return ["psnr_db", "ssim", "closure_error"] + (["edit_present", "edit_color_error"] if kind == "edit" else [])


def _metric_name(kind: str, measure: str) -> str:
    return measure if measure.startswith(f"{kind}_") else f"{kind}_{measure}"


def return_rows(
    split: str, predictor: str, kind: str, per_scenario: list[list[dict[str, float]]]
) -> list[dict[str, Any]]:
    """Rows of one kind and split: each measure over all returns and per bucket, one sample per scenario."""
    rows = []
    for measure in _measures(kind):
        name = _metric_name(kind, measure)
        overall = [mean_ignoring_nan(r[measure] for r in returns) for returns in per_scenario]
        rows.append(metric_row(SUITE, split, predictor, name, overall))
        for t in TIMES_AWAY:
            picked = [[r[measure] for r in returns if r["bucket"] == t] for returns in per_scenario]
            if any(picked):
                rows.append(metric_row(SUITE, split, predictor, f"{name}_away{t}", map(mean_ignoring_nan, picked)))
    return rows


def occlusion_rows(scenarios: Sequence[Scenario], predictions: np.ndarray, predictor: str) -> list[dict[str, Any]]:
    """The permanence suite's reappearance measures of the same predictions, named ``occlusion_<metric>``."""
    rows = permanence.score_permanence(scenarios, predictions, predictor)
    return [
        r | {"suite": SUITE, "metric": f"occlusion_{r['metric']}"}
        for r in rows
        if r["metric"] in OCCLUSION_METRICS and r["horizon"] is None
    ]


def score_memory(scenarios: Sequence[Scenario], predictions: np.ndarray, predictor: str) -> list[dict[str, Any]]:
    """Metric rows of one predictor from its predictions (N, H, h, w, 3) of one kind's scenarios."""
    if len(predictions) != len(scenarios):
        raise ValueError(f"{len(predictions)} predictions for {len(scenarios)} scenarios: pass one per scenario")
    kinds = {s.params.get("memory", {}).get("kind") for s in scenarios}
    if len(kinds) != 1 or None in kinds:
        raise ValueError(
            f"scenarios of kinds {sorted(map(str, kinds))}: score one kind's scenarios from make_memory_scenarios at a time"
        )
    (kind,) = kinds
    if kind == "occlusion":
        return occlusion_rows(scenarios, predictions, predictor)
    rows = []
    for split in sorted({s.split for s in scenarios}):
        picked = [return_metrics(s, p) for s, p in zip(scenarios, predictions) if s.split == split]
        rows += return_rows(split, predictor, kind, picked)
    return rows


def example_steps(scenario: Scenario) -> list[int]:
    """0-based future frames a report strip shows: the way out, the far point and the first return.

    Scenarios without returns (Occlusion) show eight frames spread over the horizon.
    """
    returns = scenario.params["memory"].get("returns") or [(0, 0)]
    back = returns[0][1] - scenario.context
    if back < 1:
        return list(range(0, scenario.horizon, max(1, scenario.horizon // 8)))
    steps = {0, back // 4, back // 2, 3 * back // 4, back - 1, back, back + 1}
    return sorted(s for s in steps if s < scenario.horizon)


_DESCRIPTIONS = {
    "psnr_db": "PSNR (dB) of the predicted return frame against the truth's",
    "ssim": "SSIM of the predicted return frame against the truth's",
    "closure_error": "mean |return - departure frame| (levels) in the prediction minus the truth's own (0 for the truth)",
    "edit_present": "share of returns whose edited cell's pixels are nearer the edited colour than the old one",
    "edit_color_error": "RGB distance (levels) of the edited cell's predicted mean colour from the true one",
}
_KIND_NAMES = {
    "lookaway": "Look away and back",
    "loop": "Walked loops",
    "edit": "Edited block",
    "orbit": "Orbit loops",
}


def measures() -> dict[str, str]:
    """Metric name -> description for every kind and bucket."""
    described = {}
    for kind in RETURN_KINDS:
        for measure in _measures(kind):
            name, text = _metric_name(kind, measure), f"{_KIND_NAMES[kind]}: {_DESCRIPTIONS[measure]}"
            described[name] = text
            for t in TIMES_AWAY:
                low = 1 if t == TIMES_AWAY[0] else 2 * TIMES_AWAY[TIMES_AWAY.index(t) - 1] + 1
                span = f"{low}-{2 * t}" if t != TIMES_AWAY[-1] else f"over {low - 1}"
                described[f"{name}_away{t}"] = f"{text}, {span} frames away"
    for metric in OCCLUSION_METRICS:
        described[f"occlusion_{metric}"] = f"Occlusion: the permanence suite's {metric}"
    return described


METRICS = measures()
HEADLINE = [
    "lookaway_psnr_db",
    "lookaway_ssim",
    "loop_psnr_db",
    "loop_closure_error",
    "edit_present",
    "orbit_psnr_db",
    "occlusion_reappearance_rate",
]
HIGHER_IS_BETTER = {
    m for m in METRICS if "_psnr_db" in m or "_ssim" in m or "edit_present" in m or m.endswith(("_rate", "_kept"))
}
