"""Physics suite numbers with known answers: truth is perfect, shifts and still frames cost what they must."""

from __future__ import annotations

import numpy as np
import pytest

from worldsim.envs.camera import project
from worldsim.envs.physics import PhysicsEnv
from worldsim.evals.baselines import CopyLastPredictor, GroundTruthPredictor
from worldsim.evals.physics import METRICS, first_reversal, row_to_height, run_physics, score_physics
from worldsim.evals.protocol import Scenario
from worldsim.evals.scenarios import make_scenarios

ZERO_FOR_TRUTH = (
    "position_error_px",
    "position_error_m",
    "velocity_error_px",
    "gravity_error_ms2",
    "bounce_timing_error",
    "interpenetration_px",
    "ground_penetration_m",
    "size_error",
    "miss_rate",
    "hallucination_rate",
)


def table(rows: list[dict], horizon: int | None = None) -> dict[tuple[str, str, str], dict]:
    return {(r["split"], r["predictor"], r["metric"]): r for r in rows if r["horizon"] == horizon}


@pytest.fixture(scope="module")
def physics_scenarios() -> list[Scenario]:
    return make_scenarios("worldsim/Physics-v0", 8, 4, 16, split="id") + make_scenarios(
        "worldsim/Physics-v0", 8, 4, 16, split="ood"
    )


class ShiftedTruth(GroundTruthPredictor):
    """The true future moved ``k`` pixels right (the left edge column repeated into the gap)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k, self.name = k, f"shift{k}"

    def predict(self, context_frames, actions, text, horizon):
        frames = super().predict(context_frames, actions, text, horizon)
        shifted = np.concatenate([np.repeat(frames[..., :1, :], self.k, axis=-2), frames[..., : -self.k, :]], axis=-2)
        return shifted


def test_truth_scores_perfectly_and_copy_last_does_not(physics_scenarios: list[Scenario]) -> None:
    rows = table(run_physics([GroundTruthPredictor(), CopyLastPredictor()], physics_scenarios))
    for split in ("id", "ood"):
        for metric in ZERO_FOR_TRUTH:
            row = rows[(split, "truth", metric)]
            assert row["n"] > 0 and row["value"] == 0.0, (split, metric, row)
        assert rows[(split, "truth", "bounce_detected")]["value"] == 1.0
        # PyBullet's default damping slows falls: truth fits a little under 9.81 with tracker noise on top.
        assert 8.5 < rows[(split, "truth", "gravity_fit_ms2")]["value"] < 10.8
        # A still object does not accelerate (the height map moves a hair with the true x, y).
        assert rows[(split, "copy_last", "gravity_fit_ms2")]["value"] == pytest.approx(0.0, abs=0.05)
        assert rows[(split, "copy_last", "bounce_detected")]["value"] == 0.0
        assert rows[(split, "copy_last", "position_error_px")]["value"] > 2.0
    assert {metric for (_, _, metric) in rows} == set(METRICS)


@pytest.mark.parametrize("k", [1, 3])
def test_frames_shifted_by_k_pixels_give_position_error_k(physics_scenarios: list[Scenario], k: int) -> None:
    rows = run_physics([ShiftedTruth(k)], physics_scenarios[:8])
    overall = table(rows)[("id", f"shift{k}", "position_error_px")]
    assert overall["value"] == pytest.approx(k, abs=0.5)
    assert table(rows)[("id", f"shift{k}", "velocity_error_px")]["value"] < 0.5 * k  # only the first step jumps


def moving_disk_scenario(speed: float, context: int = 3, horizon: int = 8, radius: float = 6.0) -> Scenario:
    """A red ball flying along +x at ``speed`` m/s, 0.55 m up, seen by the Physics camera, drawn as a disk."""
    camera = PhysicsEnv.default_camera
    view, projection = camera.view(), camera.projection(64, 64)
    total = context + horizon
    dt = 8 / 240  # the default frame_skip of 8 at 240 Hz
    position = np.array([[-0.3 + speed * dt * t, 0.0, 0.55] for t in range(total)])
    centroid = project(position, projection @ view, 64, 64)
    rows, cols = np.mgrid[:64, :64]
    frames = np.full((total, 64, 64, 3), 140, np.uint8)
    for t, (x, y) in enumerate(centroid):
        frames[t][(cols - x) ** 2 + (rows - y) ** 2 <= radius**2] = (230, 25, 25)
    state = {
        "object_present": np.ones((total, 1), bool),
        "object_visible": np.ones((total, 1), bool),
        "object_color": np.tile([[[0.9, 0.1, 0.1]]], (total, 1, 1)).astype(np.float32),
        "object_size": np.full((total, 1), 0.1, np.float32),
        "object_position": position[:, None].astype(np.float32),
        "object_linear_velocity": np.tile([[[speed, 0.0, 0.0]]], (total, 1, 1)).astype(np.float32),
        "object_centroid": centroid[:, None].astype(np.float32),
        "camera_view": np.tile(view, (total, 1, 1)).astype(np.float32),
        "camera_projection": np.tile(projection, (total, 1, 1)).astype(np.float32),
    }
    return Scenario(
        env_id="worldsim/Physics-v0",
        env_kwargs={},
        seed=0,
        split="id",
        context=context,
        horizon=horizon,
        frames=frames,
        actions=np.zeros((total - 1, 3), np.float32),
        caption="a red ball flies",
        state=state,
    )


@pytest.mark.parametrize("speed", [0.3, 0.9])
def test_copy_last_velocity_error_is_the_true_speed_on_uniform_motion(speed: float) -> None:
    scenario = moving_disk_scenario(speed)
    still = CopyLastPredictor().predict(scenario.context_frames[None], scenario.actions[None], [""], scenario.horizon)
    rows = score_physics([scenario], still, "copy_last")
    pixels_per_frame = float(np.linalg.norm(np.diff(scenario.state["object_centroid"][:, 0], axis=0), axis=1).mean())
    assert table(rows)[("id", "copy_last", "velocity_error_px")]["value"] == pytest.approx(pixels_per_frame, abs=0.1)
    for h in (1, 4, 8):
        by_step = table(rows, horizon=h)
        # Rasterizing a disk at a fractional center moves its pixel centroid by up to ~0.1 px.
        assert by_step[("id", "copy_last", "position_error_px")]["value"] == pytest.approx(
            h * pixels_per_frame, abs=0.15
        )
        # Through the GT camera, pixels become the meters the ball really flew (0.15 px = 5 mm here).
        assert by_step[("id", "copy_last", "position_error_m")]["value"] == pytest.approx(
            h * speed * 8 / 240, abs=0.005
        )
    assert np.isnan(table(rows)[("id", "copy_last", "gravity_fit_ms2")]["value"])  # nothing falls
    assert table(rows)[("id", "copy_last", "ground_penetration_m")]["value"] == 0.0


def test_row_to_height_inverts_the_projection(physics_scenarios: list[Scenario]) -> None:
    scenario = physics_scenarios[0]
    t = np.arange(len(scenario.frames))
    rows = scenario.state["object_centroid"][:, 0, 1].astype(np.float64)
    heights = row_to_height(scenario, t, 0, rows)
    np.testing.assert_allclose(heights, scenario.state["object_position"][:, 0, 2], atol=1e-4)


def test_first_reversal_finds_fall_then_rise() -> None:
    assert first_reversal(np.array([0.0, 1.0, 3.0, 5.0, 4.0, 3.5])) == 3
    assert first_reversal(np.array([5.0, 4.0, 3.0, 2.0])) is None  # rising only
    assert first_reversal(np.array([0.0, 1.0, 2.0, 2.1, 2.1])) is None  # lands without bouncing
