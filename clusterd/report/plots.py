"""The report's figures: matplotlib, drawn off-screen, returned as ``data:`` PNG URIs.

Why matplotlib PNGs and not plotly: a PNG of a 1,000-trial scatter is tens of KiB, the
file needs no script at all (nothing to run, nothing to trust when the report is
mailed around), and it renders the same in a browser, a headless screenshot and a
mail client; plotly's self-contained HTML carries ~3.5 MiB of JavaScript per file.
docs/report.md gives the measured sizes of both for one sweep.

Every function takes plain rows (``data.ReportData``'s) and returns a URI, or None when
there is nothing to draw; the caller says so in words. Figures are ``Figure`` objects
rendered by the Agg canvas directly: pyplot's global state and backend are never used.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from clusterd.report.data import is_number
from clusterd.report.importance import Importance

__all__ = [
    "Axis",
    "axis_of",
    "gpu_util",
    "importance_bars",
    "learning_curves",
    "metric_vs_params",
    "parallel_coordinates",
]

DPI = 96
#: most categories labelled on one axis (more are drawn, every n-th labelled)
MAX_LABELS = 12
BEST = "#d62728"
#: the other top-k curves (``--top`` is at most 9): matplotlib's tab10 without its red,
#: which is the best trial's, and its grey
OTHERS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
MEDIAN = "#222222"


@dataclass
class Axis:
    """A column as positions on an axis: numbers as they are (``log``: their log10),
    anything else as categories 0..k-1 in sorted order, with the labels to show."""

    positions: list[float]
    ticks: list[float]
    labels: list[str]
    log: bool
    categorical: bool


def axis_of(column: Sequence[Any]) -> Axis:
    """Numeric when every value is a finite number (log10 when all are positive and span
    at least two decades), categorical otherwise (None, strings, lists, mixed)."""
    if column and all(is_number(v) for v in column):
        xs = [float(v) for v in column]
        lo, hi = min(xs), max(xs)
        log = lo > 0 and hi / lo >= 100
        pos = [math.log10(x) for x in xs] if log else xs
        return Axis(pos, [], [], log, False)
    labels = sorted({_label(v) for v in column})
    index = {label: i for i, label in enumerate(labels)}
    return Axis(
        [float(index[_label(v)]) for v in column],
        [float(i) for i in range(len(labels))],
        labels,
        False,
        True,
    )


def _label(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, sort_keys=True, default=str)


def _wide(values: Sequence[float]) -> bool:
    """Worth a log scale: all positive and spanning at least two decades (a loss)."""
    return bool(values) and min(values) > 0 and max(values) / min(values) >= 100


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return fig


def _uri(fig: Any) -> str:
    """The figure as a ``data:`` URI of a 256-colour PNG: quantising (Pillow, which
    matplotlib requires) makes a 1,000-line parallel-coordinates plot ~4x smaller
    (230 -> 52 KiB) with no visible change; antialiased lines otherwise make nearly
    every pixel a colour of its own."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    png = buf.getvalue()
    try:
        from PIL import Image

        image = Image.open(io.BytesIO(png)).convert("RGB")
        small = io.BytesIO()
        image.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(
            small, format="PNG", optimize=True
        )
        png = min(png, small.getvalue(), key=len)
    except (ImportError, OSError, ValueError):
        pass  # the full-colour PNG
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _short(text: str, n: int = 18) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _categories(ax: Any, axis: Axis, which: str) -> None:
    every = max(1, math.ceil(len(axis.labels) / MAX_LABELS))
    ticks = axis.ticks[::every]
    labels = [_short(lbl) for lbl in axis.labels[::every]]
    if which == "x":
        ax.set_xticks(ticks, labels, rotation=30 if len(labels) > 4 else 0, ha="right")
    else:
        ax.set_yticks(ticks, labels)


def metric_vs_params(
    rows: list[dict[str, Any]], metric: str, mode: str, swept: list[str], best: str | None
) -> str | None:
    """One panel per swept parameter: each trial's best ``metric`` against the value it
    ran with; categories are jittered so stacked points stay visible; the best trial red."""
    key = f"{metric}_best"
    pts = [r for r in rows if is_number(r.get(key))]
    if not pts or not swept:
        return None
    cols = min(3, len(swept))
    nrows = math.ceil(len(swept) / cols)
    fig = _figure(4.0 * cols, 3.0 * nrows)
    axes = fig.subplots(nrows, cols, squeeze=False)
    y = [float(r[key]) for r in pts]
    for i, name in enumerate(swept):
        ax = axes[i // cols][i % cols]
        axis = axis_of([r.get(name) for r in pts])
        x = axis.positions
        if axis.categorical:
            x = [p + _jitter(j) for j, p in enumerate(x)]
            _categories(ax, axis, "x")
        ax.scatter(x, y, s=14, alpha=0.6, color="#1f77b4", linewidths=0)
        for j, r in enumerate(pts):
            if r.get("trial") == best:
                ax.scatter([x[j]], [y[j]], s=60, color=BEST, zorder=3, label="best")
        ax.set_xlabel(f"log10 {name}" if axis.log else name)
        ax.set_ylabel(f"{metric} (best, {mode})")
        if _wide(y):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for j in range(len(swept), nrows * cols):
        axes[j // cols][j % cols].set_visible(False)
    return _uri(fig)


def _jitter(j: int) -> float:
    """A deterministic spread in [-0.2, 0.2] (golden-ratio sequence: no randomness)."""
    return ((j * 0.6180339887) % 1.0 - 0.5) * 0.4


def learning_curves(curves: dict[str, Any] | None, mode: str) -> str | None:
    """The top-k trials' curves (the best first, thickest) and the sweep's per-step median."""
    if not curves or not curves.get("points"):
        return None
    fig = _figure(9.0, 4.2)
    ax = fig.subplots()
    series = [(curves["trial"], curves["points"])]
    series += [(o["trial"], o["points"]) for o in curves.get("overlay", [])]
    for rank, (name, points) in enumerate(series):
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(
            xs,
            ys,
            linewidth=2.4 if rank == 0 else 1.3,
            color=BEST if rank == 0 else OTHERS[(rank - 1) % len(OTHERS)],
            label=f"#{rank + 1} {name}",
        )
    median = curves.get("median") or []
    if median:
        xs, ys = zip(*median, strict=True)
        ax.plot(
            xs,
            ys,
            linestyle="--",
            color=MEDIAN,
            linewidth=2,
            label=f"median of {curves.get('median_over', '?')} trials",
        )
    ax.set_xlabel("step")
    ax.set_ylabel(f"{curves.get('name')} ({mode})")
    values = [float(p[1]) for _, points in series for p in points] + [float(p[1]) for p in median]
    if _wide(values):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _uri(fig)


def parallel_coordinates(
    rows: list[dict[str, Any]], metric: str, mode: str, swept: list[str]
) -> str | None:
    """One vertical axis per swept parameter and one for the metric, each scaled to
    [0, 1]; one line per trial coloured by its rank (bright = good), the best on top."""
    key = f"{metric}_best"
    pts = [r for r in rows if is_number(r.get(key))]
    if len(pts) < 2 or not swept:
        return None
    from matplotlib import colormaps
    from matplotlib.collections import LineCollection

    names = [*swept, metric]
    axes = [axis_of([r.get(n) for r in pts]) for n in swept]
    axes.append(axis_of([float(r[key]) for r in pts]))
    scaled = []
    for axis in axes:
        lo, hi = min(axis.positions), max(axis.positions)
        span = hi - lo or 1.0
        scaled.append([(p - lo) / span if hi > lo else 0.5 for p in axis.positions])
    values = [float(r[key]) for r in pts]
    # colour by rank, not value: one outlier must not paint every other line alike
    order = sorted(range(len(pts)), key=lambda i: -values[i] if mode == "min" else values[i])
    goodness = [0.0] * len(pts)
    for position, i in enumerate(order):  # worst first: the best drawn last, on top
        goodness[i] = position / max(1, len(pts) - 1)
    segments = [[(j, scaled[j][i]) for j in range(len(names))] for i in order]
    cmap = colormaps["viridis"]
    fig = _figure(max(6.0, 1.6 * len(names)), 4.2)
    ax = fig.subplots()
    lines = LineCollection(
        segments, colors=[cmap(goodness[i]) for i in order], linewidths=1.0, alpha=0.7
    )
    ax.add_collection(lines)
    for j, axis in enumerate(axes):
        ax.axvline(j, color="#555555", linewidth=0.8)
        lo_p, hi_p = min(axis.positions), max(axis.positions)
        if axis.categorical:
            span = hi_p - lo_p or 1.0
            every = max(1, math.ceil(len(axis.labels) / MAX_LABELS))
            for t, lbl in list(zip(axis.ticks, axis.labels, strict=True))[::every]:
                pos = (t - lo_p) / span if hi_p > lo_p else 0.5
                ax.text(j + 0.03, pos, _short(lbl, 14), fontsize=7, va="center")
        else:
            for pos, raw in ((0.0, lo_p), (1.0, hi_p)):
                shown = 10**raw if axis.log else raw
                ax.text(j + 0.03, pos, f"{shown:.3g}", fontsize=7, va="center")
    ax.set_xlim(-0.2, len(names) - 0.6)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xticks(range(len(names)), [_short(n) for n in names], fontsize=9)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return _uri(fig)


def importance_bars(imp: Importance, metric: str) -> str | None:
    """Horizontal bars: each parameter's share of the metric's variance, and the rest."""
    if not imp.shares:
        return None
    names = [*imp.shares, "interactions + noise"]
    shares = [*imp.shares.values(), imp.residual]
    fig = _figure(7.0, 0.45 * len(names) + 1.0)
    ax = fig.subplots()
    colors = ["#1f77b4"] * len(imp.shares) + ["#bbbbbb"]
    ax.barh(range(len(names)), [100 * s for s in shares], color=colors)
    ax.set_yticks(range(len(names)), [_short(n, 24) for n in names])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"% of the variance of {metric} (best) explained")
    ax.grid(axis="x", alpha=0.3)
    return _uri(fig)


def gpu_util(gpu: dict[str, Any] | None) -> str | None:
    """A histogram of the trials' mean GPU utilisation (low bars on the left: idle GPUs)."""
    if not gpu:
        return None
    utils = [float(t["util_mean"]) for t in gpu["trials"] if is_number(t["util_mean"])]
    if not utils:
        return None
    fig = _figure(7.0, 3.0)
    ax = fig.subplots()
    ax.hist(utils, bins=[i * 5 for i in range(21)], color="#2ca02c")
    ax.set_xlim(0, 100)
    ax.set_xlabel("mean GPU utilisation of a trial (%)")
    ax.set_ylabel("trials")
    ax.grid(alpha=0.3)
    return _uri(fig)
