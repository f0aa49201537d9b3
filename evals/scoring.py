"""Normalized scores: one scale for every metric, where copy-last = 0 and the physical variance = 1.

For a metric where lower is better, a predictor's score is::

    score = (copy_last - predictor) / (copy_last - perturbed_truth)

and mirrored (``(predictor - copy_last) / (perturbed_truth - copy_last)``) where higher is better.
``perturbed_truth`` is the simulator replayed with a tiny physical perturbation: what a perfect
world model could still disagree with ground truth by. So copy-last scores 0, the perturbed truth
1, the exact truth 1 or more, and a model that does worse than copying the last frame is negative.

Scores use the overall rows (horizon None) of the same suite, split and metric.
**Degenerate anchors**: when the perturbed truth does not beat copy-last by more than
``MIN_GAP`` (relative to their magnitude, or absolutely near zero), the metric cannot tell
copying from simulating on these scenarios and the score is NaN ("n/a" in reports); so is a
score from a missing or NaN value. A perturbed truth *worse* than copy-last is degenerate too:
on static scenes copying never flickers, while the nudged simulator may, and dividing by that
reversed gap would rank a predictor higher the worse it does. Infinite values (PSNR of exact
frames) score +inf or -inf.
A **suite score** is the mean of its headline metrics' finite-or-infinite scores, skipping NaN;
NaN when none is left.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

COPY_LAST = "copy_last"
PERTURBED_TRUTH = "perturbed_truth"
MIN_GAP = 1e-6  # relative gap between the two anchors below which a metric is degenerate


def normalized_score(value: float, copy_last: float, perturbed: float, higher_is_better: bool) -> float:
    """Score of ``value`` given the two anchors; NaN unless the perturbed truth beats copy-last."""
    if any(math.isnan(x) for x in (value, copy_last, perturbed)) or math.isinf(copy_last) or math.isinf(perturbed):
        return math.nan
    gap = perturbed - copy_last if higher_is_better else copy_last - perturbed
    if gap <= MIN_GAP * max(1.0, abs(copy_last), abs(perturbed)):
        return math.nan
    gain = value - copy_last if higher_is_better else copy_last - value
    if math.isinf(gain):
        return math.copysign(math.inf, gain * gap)
    return gain / gap


def score_rows(
    rows: Iterable[dict[str, Any]], higher_is_better: set[str], headline: dict[str, list[str]]
) -> list[dict[str, Any]]:
    """Normalized scores of every predictor for every (suite, split, metric) both anchors have.

    Returns rows ``{suite, split, predictor, metric, score}``; ``metric`` is ``"suite"`` for the
    mean over the suite's ``headline[suite]`` metrics.
    """
    overall = {(r["suite"], r["split"], r["predictor"], r["metric"]): r["value"] for r in rows if r["horizon"] is None}
    keys = sorted({(suite, split, metric) for suite, split, _, metric in overall}, key=str)
    predictors = list(dict.fromkeys(predictor for _, _, predictor, _ in overall))
    scores = []
    for suite, split, metric in keys:
        copy = overall.get((suite, split, COPY_LAST, metric))
        perturbed = overall.get((suite, split, PERTURBED_TRUTH, metric))
        if copy is None or perturbed is None:
            continue
        for predictor in predictors:
            if (suite, split, predictor, metric) in overall:
                value = overall[(suite, split, predictor, metric)]
                score = normalized_score(value, copy, perturbed, metric in higher_is_better)
                scores.append(
                    {"suite": suite, "split": split, "predictor": predictor, "metric": metric, "score": score}
                )
    for suite, split in sorted({(s["suite"], s["split"]) for s in scores}):
        for predictor in predictors:
            picked = [
                s["score"]
                for s in scores
                if (s["suite"], s["split"], s["predictor"]) == (suite, split, predictor)
                and s["metric"] in headline.get(suite, [])
                and not math.isnan(s["score"])
            ]
            if any(s["predictor"] == predictor and s["suite"] == suite and s["split"] == split for s in scores):
                mean = sum(picked) / len(picked) if picked else math.nan  # +inf and -inf give NaN
                scores.append(
                    {"suite": suite, "split": split, "predictor": predictor, "metric": "suite", "score": mean}
                )
    return scores
