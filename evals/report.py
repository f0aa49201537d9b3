"""The eval report: a self-contained HTML page and a Markdown summary of ``results.json``.

HTML: inline CSS, every picture an inline base64 PNG (or GIF) drawn with OpenCV, so the one file
can be mailed or attached to an issue. Contents: normalized scores, one table per suite and split
(predictors as columns, best value bold), error-vs-horizon plots, per-metric bars, and
side-by-side examples (context | truth | each predictor), each strip also saved beside the page as
``example_<suite>_<split>.png``. Markdown: the same tables, linking those strips.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worldsim.viz import frame_strip, labelled_rows, save_png

PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
]
CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}.ci{color:#888;font-size:85%}
img{image-rendering:pixelated;margin:4px}h2{border-bottom:1px solid #ddd}"""
LONG_EXAMPLE = 64  # future frames up to which an example strip shows every other frame
MAX_ANIMATION = 160  # frames of an example's animation at most


@dataclass
class Example:
    """One scenario to show: its context and true future, and every predictor's future (T, h, w, 3)."""

    suite: str
    split: str
    context: np.ndarray
    truth: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    steps: list[int] | None = None  # 0-based future frames the strip shows; None: ``example_steps``


@dataclass
class MetricInfo:
    """What the report needs to know about metrics: which way is better and what they mean."""

    higher_is_better: set[str] = field(default_factory=set)
    no_best: set[str] = field(default_factory=set)  # reference numbers (a noise floor, a fitted value)
    descriptions: dict[str, str] = field(default_factory=dict)


def _format(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def _best(values: dict[str, float], higher: bool) -> set[str]:
    finite = {p: v for p, v in values.items() if not math.isnan(v)}
    if not finite:
        return set()
    target = max(finite.values()) if higher else min(finite.values())
    return {p for p, v in finite.items() if v == target}


def suite_tables(
    rows: list[dict[str, Any]],
) -> dict[tuple[str, str], tuple[list[str], dict[str, dict[str, dict[str, Any]]]]]:
    """(suite, split) -> (predictors in order, metric -> predictor -> overall row)."""
    tables: dict[tuple[str, str], tuple[list[str], dict[str, dict[str, dict[str, Any]]]]] = {}
    for row in rows:
        if row["horizon"] is not None:
            continue
        predictors, metrics = tables.setdefault((row["suite"], row["split"]), ([], {}))
        if row["predictor"] not in predictors:
            predictors.append(row["predictor"])
        metrics.setdefault(row["metric"], {})[row["predictor"]] = row
    return tables


def _table_cells(
    metrics: dict[str, dict[str, dict[str, Any]]], predictors: list[str], info: MetricInfo, markdown: bool
) -> list[list[str]]:
    lines = []
    for metric, by_predictor in metrics.items():
        values = {p: by_predictor[p]["value"] for p in predictors if p in by_predictor}
        best = set() if metric in info.no_best else _best(values, metric in info.higher_is_better)
        cells = [metric]
        for predictor in predictors:
            row = by_predictor.get(predictor)
            if row is None:
                cells.append("")
                continue
            text = _format(row["value"])
            if markdown:
                text = f"**{text}**" if predictor in best else text
            else:
                text = f"<b>{text}</b>" if predictor in best else text
                if row["n"] > 1 and math.isfinite(row["ci_high"]):
                    text += f' <span class="ci">±{_format((row["ci_high"] - row["ci_low"]) / 2)} (n={row["n"]})</span>'
            cells.append(text)
        lines.append(cells)
    return lines


def score_table(scores: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Suite scores: rows (suite, split), predictors as columns."""
    predictors = list(dict.fromkeys(s["predictor"] for s in scores))
    suite_scores = {(s["suite"], s["split"], s["predictor"]): s["score"] for s in scores if s["metric"] == "suite"}
    keys = list(dict.fromkeys((suite, split) for suite, split, _ in suite_scores))
    body = [
        [f"{suite} ({split})", *(_format(suite_scores.get((suite, split, p), math.nan)) for p in predictors)]
        for suite, split in keys
    ]
    return predictors, body


# ----------------------------------------------------------------- pictures


def _png(image: np.ndarray) -> str:
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok, "OpenCV could not encode a PNG"
    return "data:image/png;base64," + base64.b64encode(data.tobytes()).decode()


def _gif(frames: list[np.ndarray]) -> str | None:
    """An animated GIF as a data URI, or None when Pillow (optional) is not installed."""
    try:
        from PIL import Image
    except ImportError:
        return None
    buffer = io.BytesIO()
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=150, loop=0)
    return "data:image/gif;base64," + base64.b64encode(buffer.getvalue()).decode()


def _text(
    image: np.ndarray, text: str, origin: tuple[int, int], scale: float = 0.4, color: tuple[int, int, int] = (0, 0, 0)
) -> None:
    cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def line_plot(
    title: str, series: dict[str, list[tuple[int, float]]], width: int = 480, height: int = 300
) -> np.ndarray:
    """Value vs horizon step, one colored line per predictor, with a legend; RGB uint8."""
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 56, width - 120, 24, height - 34
    points = [(h, v) for line in series.values() for h, v in line if math.isfinite(v)]
    _text(image, title, (left, 16), 0.45)
    if not points:
        _text(image, "no finite values", (left, height // 2))
        return image
    hs, vs = [p[0] for p in points], [p[1] for p in points]
    h0, h1 = min(hs), max(max(hs), min(hs) + 1)
    v0, v1 = min(vs), max(vs)
    v0, v1 = (v0 - 0.5, v1 + 0.5) if v1 - v0 < 1e-9 else (v0, v1)
    x = lambda h: int(left + (h - h0) / (h1 - h0) * (right - left))  # noqa: E731
    y = lambda v: int(bottom - (v - v0) / (v1 - v0) * (bottom - top))  # noqa: E731
    cv2.rectangle(image, (left, top), (right, bottom), (160, 160, 160), 1)
    for value in (v0, (v0 + v1) / 2, v1):
        _text(image, _format(value), (4, y(value) + 4), 0.35)
    _text(image, f"horizon step {h0}..{h1}", (left, height - 10), 0.38)
    for i, (name, line) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        finite = [(x(h), y(v)) for h, v in line if math.isfinite(v)]
        if len(finite) > 1:
            cv2.polylines(image, [np.array(finite, np.int32)], False, color, 2, cv2.LINE_AA)
        for point in finite:
            cv2.circle(image, point, 2, color, -1)
        cv2.line(image, (right + 8, top + 12 + 16 * i), (right + 24, top + 12 + 16 * i), color, 2)
        _text(image, name[:14], (right + 28, top + 16 + 16 * i), 0.35)
    return image


def bar_chart(title: str, values: dict[str, float], width: int = 320, height: int = 200) -> np.ndarray:
    """One bar per predictor (infinite values drawn full height, NaN as 'n/a'); RGB uint8."""
    image = np.full((height, width, 3), 255, np.uint8)
    _text(image, title[:44], (6, 14), 0.4)
    finite = [abs(v) for v in values.values() if math.isfinite(v)]
    top = max(finite) if finite and max(finite) > 0 else 1.0
    slot = (width - 12) // max(len(values), 1)
    base = height - 30
    for i, (name, value) in enumerate(values.items()):
        x0 = 8 + i * slot
        fraction = 1.0 if math.isinf(value) else 0.0 if math.isnan(value) else abs(value) / top
        cv2.rectangle(
            image, (x0, base - int(fraction * (base - 34))), (x0 + slot - 8, base), PALETTE[i % len(PALETTE)], -1
        )
        _text(image, _format(value), (x0, base - int(fraction * (base - 34)) - 4), 0.33)
        _text(image, name[:10], (x0, height - 12), 0.32)
    return image


def example_steps(horizon: int) -> list[int]:
    """The 0-based future frames an example strip shows: every other one up to ``LONG_EXAMPLE`` frames;
    beyond, steps 1, 2, 4, 8, ... and the last (a strip of 300 frames shows nothing)."""
    if horizon <= LONG_EXAMPLE:
        return list(range(0, max(horizon - 1, 1), 2))
    return sorted({2**k - 1 for k in range(horizon.bit_length()) if 2**k <= horizon} | {horizon - 1})


def step_header(steps: list[int], frame_width: int) -> np.ndarray:
    """A white band with each 1-based step number over its frame of a strip (frames 2 px apart)."""
    band = np.full((16, len(steps) * (frame_width + 2) - 2, 3), 255, np.uint8)
    for i, step in enumerate(steps):
        _text(band, f"t+{step + 1}", (i * (frame_width + 2) + 2, 12), 0.38)
    return band


def example_rows(example: Example) -> np.ndarray:
    """Labelled frame strips: context, truth and each predictor at ``example_steps``, under their step numbers."""
    steps = example_steps(len(example.truth)) if example.steps is None else example.steps
    rows = [
        ("context", frame_strip(example.context, len(example.context), 1)),
        ("step", step_header(steps, 2 * example.truth.shape[2])),  # frame_strip doubles each frame
        ("truth", frame_strip(example.truth[steps], len(steps), 1)),
    ]
    rows += [(name, frame_strip(frames[steps], len(steps), 1)) for name, frames in example.predictions.items()]
    return labelled_rows(rows)


def example_caption(example: Example) -> str:
    """What an example strip shows, naming the steps where they are not every other frame."""
    horizon = len(example.truth)
    if example.steps is None and horizon <= LONG_EXAMPLE:
        return "context | truth | predictors"
    steps = example_steps(horizon) if example.steps is None else example.steps
    return f"context | truth | predictors at steps {', '.join(str(s + 1) for s in steps)}"


def example_animation(example: Example) -> list[np.ndarray]:
    """Frames of a side-by-side movie: truth | each predictor, after the context, 2x enlarged.

    A long example keeps every k-th frame, at most ``MAX_ANIMATION`` of them, so the page stays small.
    """
    panels = [example.truth, *example.predictions.values()]
    movie = []
    total = len(example.context) + len(example.truth)
    for t in range(0, total, math.ceil(total / MAX_ANIMATION)):
        tiles = [
            example.context[t] if t < len(example.context) else panel[t - len(example.context)] for panel in panels
        ]
        row = np.concatenate([np.pad(tile, ((1, 1), (1, 1), (0, 0))) for tile in tiles], axis=1)
        movie.append(cv2.resize(row, (row.shape[1] * 2, row.shape[0] * 2), interpolation=cv2.INTER_NEAREST))
    return movie


# ----------------------------------------------------------------- documents


def _html_table(header: list[str], body: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in line) + "</tr>" for line in body)
    return f"<table><tr>{head}</tr>{rows}</table>"


def _md_table(header: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(line) + " |" for line in body]
    return "\n".join(lines)


def write_report(
    out: str | Path, document: dict[str, Any], scores: list[dict[str, Any]], info: MetricInfo, examples: list[Example]
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``summary.md`` into ``out``; returns both paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = document["rows"]
    tables = suite_tables(rows)
    score_header, score_body = score_table(scores)
    title = f"worldsim eval — {document.get('created', '')}"
    md = [
        f"# {title}",
        "",
        f"worldsim {document.get('worldsim_version', '?')}; config: `{document.get('config', {})}`",
        "",
    ]
    page = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>worldsim {html.escape(str(document.get('worldsim_version', '?')))}</p>",
    ]
    md += [
        "## Normalized scores",
        "",
        "copy_last = 0, perturbed_truth (physical variance) = 1; mean over each suite's headline metrics.",
        "",
    ]
    page.append(
        "<h2>Normalized scores</h2><p>copy_last = 0, perturbed_truth (the physical variance) = 1; "
        "mean over each suite's headline metrics; n/a where copy-last and the perturbed truth do not differ.</p>"
    )
    if score_body:
        md += [_md_table(["suite", *score_header], score_body), ""]
        page.append(_html_table(["suite", *score_header], score_body))
    else:
        md += ["No scores: run copy_last and perturbed_truth too.", ""]
        page.append("<p>No scores: run copy_last and perturbed_truth too.</p>")

    for (suite, split), (predictors, metrics) in tables.items():
        md += [
            f"## {suite} — {split}",
            "",
            _md_table(["metric", *predictors], _table_cells(metrics, predictors, info, True)),
            "",
        ]
        page.append(f"<h2>{html.escape(suite)} — {html.escape(split)}</h2>")
        page.append(_html_table(["metric", *predictors], _table_cells(metrics, predictors, info, False)))
        described = [
            f"<li><b>{html.escape(m)}</b>: {html.escape(info.descriptions[m])}</li>"
            for m in metrics
            if m in info.descriptions
        ]
        if described:
            page.append("<ul>" + "".join(described) + "</ul>")
        for metric in metrics:
            series: dict[str, list[tuple[int, float]]] = {}
            for row in rows:
                if (row["suite"], row["split"], row["metric"]) == (suite, split, metric) and row["horizon"] is not None:
                    series.setdefault(row["predictor"], []).append((row["horizon"], row["value"]))
            if series:
                page.append(
                    f"<img alt='{html.escape(metric)} vs horizon' src='{_png(line_plot(f'{suite}/{split}: {metric}', series))}'>"
                )
        bars = [
            bar_chart(metric, {p: metrics[metric][p]["value"] for p in predictors if p in metrics[metric]})
            for metric in metrics
        ]
        page += [f"<img alt='bars' src='{_png(bar)}'>" for bar in bars]
        for example in (e for e in examples if (e.suite, e.split) == (suite, split)):
            strips = example_rows(example)
            picture = save_png(out / f"example_{suite}_{split}.png", strips)
            md += [f"![{example_caption(example)}]({picture.name})", ""]
            page.append(
                f"<h3>Example: {html.escape(example_caption(example))}</h3><img alt='strips' src='{_png(strips)}'>"
            )
            animation = _gif(example_animation(example))
            if animation:
                page.append(
                    f"<p>truth | {' | '.join(map(html.escape, example.predictions))}</p><img alt='animation' src='{animation}'>"
                )
    page.append("</body></html>")
    html_path, md_path = out / "report.html", out / "summary.md"
    html_path.write_text("\n".join(page))
    md_path.write_text("\n".join(md) + "\n")
    return html_path, md_path
