"""Does an autoencoder keep the objects? Round-trip held-out frames and track objects in both.

Every other suite tracks objects in decoded frames, so an autoencoder that fades a small ball to
a gray blob caps every score of the model built on it, while its full-frame PSNR can stay high.
This audit reports, per world and split, the frame PSNR beside the object-level facts:

- ``psnr_db``: PSNR of the reconstruction against the frame, the mean over frames (an exact
  round trip of a frame scores the cap, ``metrics.MAX_PSNR_DB``);
- ``object_kept_1px``: of the objects the tracker finds in the truth frame, the fraction found in
  the reconstruction at the same color within 1 px of the truth-frame track (the tracker assigns
  pixels to an object by its hue, so being found as that object means the color is right);
- ``object_color_error``: mean absolute RGB difference (0..1) of the object's mean color;
- ``object_area_ratio``: reconstructed over true object area (1 = same size).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from worldsim import metrics
from worldsim.envs import WORLDS as ENVS
from worldsim.envs import world_name
from worldsim.evals.protocol import Scenario
from worldsim.evals.results import metric_row, per_world
from worldsim.evals.tracking import track_scenario_frames

SUITE = "reconstruction"
#: Every world: each has objects to keep. As a ``worldsim eval`` suite, metric names carry the world.
WORLDS = {env_id: world_name(env_id) for env_id in ENVS}
METRICS = per_world(
    {
        "psnr_db": "PSNR (dB) of the autoencoder's round trip of every frame",
        "object_kept_1px": "share of objects found in the round trip at the same color within 1 px",
        "object_color_error": "mean |RGB| difference (0..1) of an object's color after the round trip",
        "object_area_ratio": "object area after the round trip over its true area",
    },
    WORLDS,
)
HEADLINE = [f"{world}_{metric}" for world in WORLDS.values() for metric in ("psnr_db", "object_kept_1px")]
HIGHER_IS_BETTER = set(HEADLINE)

#: uint8 frames (N, H, W, 3) -> their reconstructions, same shape and dtype.
RoundTrip = Callable[[np.ndarray], np.ndarray]


def scenario_samples(scenario: Scenario, reconstruction: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame PSNR and per-(frame, object) samples of one scenario's round trip."""
    colors, present = scenario.state["object_color"][0], scenario.state["object_present"][0]
    truth = track_scenario_frames(scenario.frames, colors, present)
    rebuilt = track_scenario_frames(reconstruction, colors, present)
    seen = truth.found  # (T, K): objects there are to keep
    distance = np.linalg.norm(rebuilt.centroid - truth.centroid, axis=-1)
    kept = rebuilt.found & (distance <= 1.0)
    both = seen & rebuilt.found
    return {
        "psnr_db": metrics.frame_psnr(reconstruction, scenario.frames),
        "object_kept_1px": kept[seen].astype(np.float64),
        "object_color_error": np.abs(rebuilt.color - truth.color).mean(-1)[both],
        "object_area_ratio": (rebuilt.area / np.maximum(truth.area, 1))[both].astype(np.float64),
    }


def score_reconstruction(
    scenarios: Sequence[Scenario], round_trip: RoundTrip, name: str, batch_size: int = 256
) -> list[dict[str, Any]]:
    """Metric rows (see ``results.metric_row``) of ``round_trip`` over every frame of ``scenarios``."""
    samples: dict[str, dict[str, list[np.ndarray]]] = {}
    for scenario in scenarios:
        frames = scenario.frames
        rebuilt = np.concatenate([round_trip(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)])
        if rebuilt.shape != frames.shape or rebuilt.dtype != np.uint8:
            raise ValueError(
                f"round trip of {name!r} returned {rebuilt.dtype} {rebuilt.shape}; expected uint8 {frames.shape}"
            )
        for metric, values in scenario_samples(scenario, rebuilt).items():
            samples.setdefault(scenario.split, {}).setdefault(metric, []).append(values)
    return [
        metric_row(SUITE, split, name, metric, np.concatenate(values))
        for split, by_metric in samples.items()
        for metric, values in by_metric.items()
    ]


def score_autoencoder(scenarios: Sequence[Scenario], predictor: Any, batch_size: int = 16) -> list[dict[str, Any]]:
    """The audit as an eval suite: rows for predictors with a ``round_trip(frames)`` (the worldsim
    model's encode then decode), none for the rest; metric names carry the world."""
    round_trip = getattr(predictor, "round_trip", None)
    if round_trip is None:
        return []
    world = WORLDS.get(scenarios[0].env_id)
    if world is None:
        raise ValueError(f"the reconstruction suite audits {sorted(WORLDS)}, not {scenarios[0].env_id!r}")
    if hasattr(predictor, "prepare"):
        predictor.prepare(list(scenarios))
    rows = score_reconstruction(scenarios, round_trip, predictor.name)
    return [{**row, "metric": f"{world}_{row['metric']}"} for row in rows]


def autoencoder_round_trip(autoencoder: Any, device: str = "cpu") -> RoundTrip:
    """The ``RoundTrip`` of a ``FrameAutoencoder``: encode to the posterior mean, then decode."""
    import torch

    autoencoder = autoencoder.to(device).eval()

    @torch.no_grad()
    def round_trip(frames: np.ndarray) -> np.ndarray:
        chw = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(device)
        latents = autoencoder.encode_frames(chw)
        return autoencoder.decode_latents(latents).permute(0, 2, 3, 1).cpu().numpy()

    return round_trip
