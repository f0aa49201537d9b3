"""``worldsim eval``: score predictors on every suite's seeded scenarios and write the report.

For each suite and split, scenarios are made once (same seed, same frames for everyone), every
predictor predicts them, and the suite turns predictions into metric rows. Then ``results.json``,
``report.html`` and ``summary.md`` go into ``out``.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection, Optional

from tqdm import tqdm

import worldsim
from worldsim.config_checks import check_at_least
from worldsim.evals.protocol import Predictor, Scenario
from worldsim.evals.report import Example, MetricInfo, write_report
from worldsim.evals.results import read_results, write_results
from worldsim.evals.scoring import COPY_LAST, PERTURBED_TRUTH, score_rows
from worldsim.sampling import SamplingConfig


@dataclass(frozen=True)
class SuiteSpec:
    """Where a suite lives and which scenarios it scores."""

    module: str  # module with the score function and METRICS / HEADLINE / HIGHER_IS_BETTER
    score: str  # score(scenarios, predictions, predictor_name) -> rows
    # (env id, context frames, horizon frames[, scenario policy: scripted (the default), or another of evals.scenarios.POLICIES])
    worlds: tuple[tuple[Any, ...], ...]
    headline: tuple[str, ...] = ()  # used when the module names none
    higher_is_better: tuple[str, ...] = ()  # used when the module names none
    no_best: tuple[str, ...] = ()  # reference metrics a table should not bold
    probe: bool = False  # score(scenarios, predictor, batch_size) calls the predictor itself, with altered inputs
    # predictor methods the suite calls beside predict; predictors without them are skipped
    requires: tuple[str, ...] = ()
    on_request: bool = False  # left out of the default suites: runs only when suites= names it
    # module function (n, split, seed, horizon, worlds) -> one list of scenarios per world, made instead of `worlds`
    # (horizon: EvalConfig.horizon, None for the suite's own; worlds: the env ids to make, None for all)
    scenarios: str = ""


SUITES: dict[str, SuiteSpec] = {
    "physics": SuiteSpec(
        "worldsim.evals.physics",
        "score_physics",
        (("worldsim/Physics-v0", 4, 16),),
        headline=("position_error_px", "velocity_error_px", "gravity_error_ms2", "size_error"),
        higher_is_better=("bounce_detected",),
        no_best=("gravity_fit_ms2",),
    ),
    "permanence": SuiteSpec(
        "worldsim.evals.permanence",
        "score_permanence",
        (("worldsim/Occlusion-v0", 8, 48),),
        headline=("reappearance_rate", "position_error_px", "identity_kept", "flicker_rate"),
        higher_is_better=("reappearance_rate", "identity_kept"),
    ),
    "consistency": SuiteSpec(
        "worldsim.evals.consistency",
        "score_consistency",
        (("worldsim/Orbit-v0", 4, 24),),
        no_best=("sampson_floor_px", "loop_self_mae"),
    ),
    "action": SuiteSpec(
        "worldsim.evals.action_following",
        "score_action_following",
        # BlockWorld takes the sticky policy its IDM was trained on: held random actions (every group acts) and scripted
        # stretches (digging and building)
        (("worldsim/Push-v0", 4, 16), ("worldsim/Orbit-v0", 4, 16), ("worldsim/BlockWorld-v0", 4, 16, "sticky")),
    ),
    "rollout": SuiteSpec(
        "worldsim.evals.rollout",
        "score_rollout",
        (("worldsim/Physics-v0", 4, 16), ("worldsim/Push-v0", 4, 16)),
    ),
    "reconstruction": SuiteSpec(
        "worldsim.evals.reconstruction",
        "score_autoencoder",
        (
            ("worldsim/Physics-v0", 4, 16),
            ("worldsim/Push-v0", 4, 16),
            ("worldsim/Occlusion-v0", 4, 16),
            ("worldsim/Orbit-v0", 4, 16),
        ),
        probe=True,
    ),
    "conditioning": SuiteSpec(
        "worldsim.evals.conditioning",
        "score_conditioning",
        (("worldsim/Push-v0", 4, 16), ("worldsim/Physics-v0", 4, 12)),
        probe=True,
        no_best=("psnr_shuffled_db", "pusher_error_shuffled_px"),
    ),
    # Whole episodes replayed one by one: minutes per model on a CPU, so only when asked for. Its
    # scenarios give only the episodes' reset seeds and split: it records its own (evals/reward.py).
    "reward": SuiteSpec(
        "worldsim.evals.reward",
        "score_reward",
        (("worldsim/Push-v0", 1, 1),),
        probe=True,
        requires=("predict_rewards",),
        on_request=True,
    ),
    # 600 frames per scenario and predictor: minutes for a model on a CPU, so only when asked for.
    # Its worlds, their policies and the horizon live in evals/long.py (WORLDS).
    "long": SuiteSpec(
        "worldsim.evals.long",
        "score_long",
        (),
        on_request=True,
        scenarios="make_long_scenarios",
    ),
    # Scripted returns (look away and back, walked loops, edited blocks; Orbit loops, Occlusion) scored at the
    # return frames: up to 128 future frames per BlockWorld scenario, minutes for a model on a CPU.
    "memory": SuiteSpec(
        "worldsim.evals.memory",
        "score_memory",
        (),
        on_request=True,
        scenarios="make_memory_scenarios",
    ),
    # Caption-only videos of rich-caption Physics episodes, attributes read back by the tracker: a few seconds of
    # sampling per video for a model on a CPU, so only when asked for. id: seen color x shape pairs, ood: held out.
    "text": SuiteSpec(
        "worldsim.evals.text",
        "score_text",
        (),
        probe=True,
        on_request=True,
        scenarios="make_text_scenarios",
    ),
    # The same episodes with the plain captions the shipped references were trained on (color, count, shape, motion).
    "text_plain": SuiteSpec(
        "worldsim.evals.text",
        "score_text",
        (),
        probe=True,
        on_request=True,
        scenarios="make_plain_text_scenarios",
    ),
}


@dataclass
class EvalConfig:
    # worldsim model file, or a directory of them (one per world), scored as the predictor `model`
    checkpoint: Optional[str] = None
    # physics (position/velocity error, gravity fit, bounce timing, interpenetration, size, miss/hallucination) |
    # permanence (reappearance, position/identity after reappearance, flicker) | consistency (psnr_db, ssim,
    # loop_closure_mae, sampson_px beside sampson_floor_px, matches_kept) | action (push_accuracy, push_angle_deg,
    # push_magnitude_error, orbit_yaw_error_deg, orbit_yaw_sign_accuracy; BlockWorld: an inverse-dynamics model's accuracy
    # per action group, blockworld_{move,camera,jump,use}_accuracy) | rollout (per horizon on Physics and Push:
    # psnr_db, psnr_gain_db over copy-last, mse and mse_reduction against copy-last (pooled PSNR), centroid_error_px,
    # miss_rate, hallucination_rate) | reconstruction (the model's autoencoder round trip on every world: psnr_db,
    # object_kept_1px, object_color_error, object_area_ratio) | conditioning (true vs shuffled actions: psnr_true_db,
    # psnr_shuffled_db, action_gain_db, pusher error; caption-only: text_color_dominant, text_color_present) | reward
    # (only when named: real Push episodes of five policies replayed open loop, predicted against real return,
    # return_abs_error, where the tracker finds target and pusher in the last frame; predictors with predict_rewards) |
    # long (only when named: 600-frame Push, Physics and BlockWorld rollouts against the truth: psnr_db per step and bucket, colour
    # and sharpness drift, object_kept, and a collapse verdict with its step: blur, noise, frozen, exploding, ghost)
    # | memory (only when named: BlockWorld views left and returned to, walked loops and edited blocks, Orbit loops:
    # psnr_db, ssim and closure_error at the return frames per time away, edit_present; Occlusion reappearance)
    # | text (only when named: videos imagined from rich Physics captions alone, per attribute color, count, shape,
    # start, height, direction, falls, bounce: the share matching the caption, readable in the simulator's episode,
    # agreeing with it; id seen color x shape pairs, ood held-out ones; predictors with text_to_video) | text_plain
    # (only when named: the same episodes under the plain captions the references were trained on)
    suites: list[str] = field(default_factory=lambda: [s for s, spec in SUITES.items() if not spec.on_request])
    # copy_last | optical_flow | truth | perturbed_truth | random_episode (another seed's episode) | model (needs checkpoint) | reference (the models shipped with
    # worldsim) | module:callable | path/file.py:callable
    predictors: list[str] = field(default_factory=lambda: ["copy_last", "optical_flow", "truth"])
    n: int = 32  # scenarios per suite, world and split
    # id (training parameter ranges) and/or ood (outside them)
    split: list[str] = field(default_factory=lambda: ["id", "ood"])
    out: str = "eval"  # folder for results.json, report.html and summary.md
    seed: int = 0  # seeds the scenarios; same seed, same scenarios for every predictor
    batch_size: int = 16  # scenarios per predict call
    # future frames of the long suite's scenarios (600 unless set), the memory suite's BlockWorld ones (128 unless
    # set; 600 adds returns after 600 frames away) and the text suite's videos (16 unless set); the other suites keep
    # their own horizons
    horizon: Optional[int] = None
    anchors: bool = True  # also run copy_last and perturbed_truth, the 0 and 1 of the normalized scores
    progress: bool = True  # show a progress bar over (suite, split, predictor)
    # worlds whose scenarios are made, each an env id (worldsim/Orbit-v0) or its short name (orbit); empty: every
    # world. A suite left without a world is skipped: suites=[consistency,memory] worlds=[orbit] spares the memory
    # suite's BlockWorld scenarios, most of its time
    worlds: list[str] = field(default_factory=list)
    # how the model and reference predictors sample, e.g. sampling.cfg_text=3 for text guidance; unset fields: each
    # model file's default
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self) -> None:
        check_at_least(self, n=1, batch_size=1, seed=0, horizon=1)


def _check(cfg: EvalConfig) -> None:
    unknown = [s for s in cfg.suites if s not in SUITES]
    if unknown:
        raise ValueError(f"suites {unknown} are unknown: choose from {list(SUITES)}")
    bad = [s for s in cfg.split if s not in ("id", "ood")]
    if bad or not cfg.split:
        raise ValueError(f"split {cfg.split} must be a non-empty list of 'id' and/or 'ood'")
    if cfg.n < 1:
        raise ValueError(f"n={cfg.n}: evaluate at least 1 scenario per suite and split")
    world_ids(cfg.worlds)
    if cfg.horizon is not None and not any(SUITES[s].scenarios for s in cfg.suites):
        raise ValueError(
            f"horizon={cfg.horizon} sets the horizon of the long, memory and text suites, which suites={cfg.suites} "
            "leaves out: add long, memory or text to suites, or drop horizon= (the other suites keep their own horizons)"
        )


def _suite_module(name: str) -> Any:
    try:
        return importlib.import_module(SUITES[name].module)
    except ImportError as error:
        raise ValueError(
            f"suite {name!r} needs {SUITES[name].module}, which this worldsim does not have ({error}): "
            f"leave it out, e.g. suites=[{','.join(s for s in SUITES if s != name)}]"
        ) from error


def make_predictors(cfg: EvalConfig) -> list[Predictor]:
    """The requested predictors (plus the score anchors), each built once."""
    from worldsim.evals.baselines import make_predictor

    names = list(cfg.predictors)
    if cfg.anchors:
        names += [name for name in (COPY_LAST, PERTURBED_TRUTH) if name not in names]
    predictors = []
    for name in names:
        if name == "model":
            if cfg.checkpoint is None:
                raise ValueError("predictor 'model' needs checkpoint=path/to/checkpoint: name the checkpoint to score")
            predictors.append(make_predictor("model", checkpoint=cfg.checkpoint, sampling=cfg.sampling))
        elif name == "reference":
            predictors.append(make_predictor(name, sampling=cfg.sampling))
        else:
            predictors.append(make_predictor(name))
    return predictors


def metric_info(suites: list[str]) -> tuple[MetricInfo, dict[str, list[str]]]:
    """Directions, descriptions and headline metrics of the suites, from their modules and specs."""
    info, headline = MetricInfo(), {}
    for name in suites:
        spec, module = SUITES[name], _suite_module(name)
        info.higher_is_better |= set(getattr(module, "HIGHER_IS_BETTER", spec.higher_is_better))
        info.no_best |= set(spec.no_best) | set(getattr(module, "NO_BEST", ()))
        metrics = getattr(module, "METRICS", ())
        if isinstance(metrics, dict):
            info.descriptions.update(metrics)
        headline[name] = list(getattr(module, "HEADLINE", spec.headline or tuple(metrics)))
    return info, headline


def world_ids(names: Collection[str]) -> Optional[frozenset[str]]:
    """The env ids ``worlds=`` names, each given as an id or a short name in any case; None (every world) for none."""
    from worldsim.envs import WORLDS, world_name

    if not names:
        return None
    by_name = {world_name(env_id): env_id for env_id in WORLDS}
    unknown = [name for name in names if world_name(name) not in by_name]
    if unknown:
        raise ValueError(f"worlds {unknown} are unknown: choose from {sorted(by_name)} (or their env ids)")
    return frozenset(by_name[world_name(name)] for name in names)


def suite_scenarios(name: str, cfg: EvalConfig, split: str) -> list[list[Scenario]]:
    """One list of seeded scenarios per world of suite ``name`` that ``cfg.worlds`` keeps, the same for every predictor."""
    from worldsim.evals.scenarios import make_scenarios

    spec, worlds = SUITES[name], world_ids(cfg.worlds)
    if spec.scenarios:
        return getattr(_suite_module(name), spec.scenarios)(cfg.n, split, cfg.seed, cfg.horizon, worlds)
    return [
        make_scenarios(env_id, cfg.n, context, horizon, split, cfg.seed, policy=policy[0] if policy else "scripted")
        for env_id, context, horizon, *policy in spec.worlds
        if worlds is None or env_id in worlds
    ]


def evaluate(cfg: EvalConfig) -> Path:
    """Run the eval described by ``cfg``; returns the path of ``report.html`` (and prints it)."""
    from worldsim.evals.scenarios import predict_scenarios

    _check(cfg)
    info, headline = metric_info(cfg.suites)
    predictors = make_predictors(cfg)
    names = [p.name for p in predictors]
    if len(set(names)) != len(names):
        raise ValueError(f"predictor names {names} repeat: every predictor needs its own name for the tables")
    rows: list[dict[str, Any]] = []
    examples: list[Example] = []
    tasks = [(suite, split) for suite in cfg.suites for split in cfg.split]
    skipped: set[str] = set()
    unable: set[str] = set()  # predictors without a method a suite calls
    worldless: list[str] = []  # suites with none of cfg.worlds
    bar = tqdm(total=len(tasks) * len(predictors), desc="eval", unit="run", disable=not cfg.progress)
    for suite, split in tasks:
        spec = SUITES[suite]
        score: Callable[..., list[dict[str, Any]]] = getattr(_suite_module(suite), spec.score)
        worlds = suite_scenarios(suite, cfg, split)
        if not worlds:
            worldless.append(f"{suite}/{split}")
            bar.update(len(predictors))
            continue
        example = Example(suite, split, worlds[0][0].context_frames, worlds[0][0].future_frames)
        pick_steps = getattr(_suite_module(suite), "example_steps", None)  # a suite may show the frames it scores
        if pick_steps is not None:
            example.steps = pick_steps(worlds[0][0])
        for predictor in predictors:
            bar.set_postfix_str(f"{suite}/{split}/{predictor.name}")
            for scenarios in worlds:
                lacks = [method for method in spec.requires if not callable(getattr(predictor, method, None))]
                if lacks:
                    unable.add(f"{predictor.name} on {suite} (no {', '.join(lacks)})")
                    continue
                if not all(getattr(predictor, "supports", lambda _: True)(s) for s in scenarios):
                    skipped.add(f"{predictor.name} on {scenarios[0].env_id}")
                    continue
                if spec.probe:
                    rows += score(scenarios, predictor, cfg.batch_size)
                    continue
                predictions = predict_scenarios(predictor, scenarios, cfg.batch_size)
                if scenarios is worlds[0]:
                    example.predictions[predictor.name] = predictions[0]
                rows += score(scenarios, predictions, predictor.name)
            bar.update()
        if not spec.probe:  # a probe's predictions answer altered inputs: no context | truth | prediction
            examples.append(example)
    bar.close()
    if len(worldless) == len(tasks):
        raise ValueError(
            f"worlds={cfg.worlds} leaves every suite of suites={cfg.suites} without a scenario: name a world the suites "
            "score (`worldsim eval --help` says which), or drop worlds="
        )
    if worldless:
        print(f"skipped (no scenario in worlds={cfg.worlds}): {', '.join(worldless)}")
    if skipped:
        print(f"skipped (the predictor does not support that world): {', '.join(sorted(skipped))}")
    if unable:
        print(f"skipped (the suite needs what the predictor lacks): {', '.join(sorted(unable))}")

    out = Path(cfg.out)
    config = dataclasses.asdict(cfg)
    results = write_results(out / "results.json", rows, config, worldsim.__version__)
    document = read_results(results)
    scores = score_rows(rows, info.higher_is_better, headline)
    html_path, md_path = write_report(out, document, scores, info, examples)
    finite = [s for s in scores if s["metric"] == "suite" and not math.isnan(s["score"])]
    print(
        f"results: {results}\nsummary: {md_path}\nreport: {html_path}  ({len(rows)} rows, {len(finite)} suite scores)"
    )
    return html_path
