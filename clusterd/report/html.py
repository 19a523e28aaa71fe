"""``ReportData`` -> one self-contained HTML file, written atomically.

Self-contained means: no script at all, the style sheet inline, every figure a
``data:`` PNG; the file opens offline and from a mail attachment. Every string that
came from the user or the daemon (parameter names and values, trial names, reasons,
the diff) goes through ``html.escape``; nothing is evaluated.

Writing: the output's directory is checked first (``check_writable``: before the report
is built), the file is written to a temporary name beside it and renamed over the
target, so a failure never leaves a half-written report.
"""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from clusterd.cli.output import duration
from clusterd.errors import InvalidRequest
from clusterd.report import importance as imp_mod
from clusterd.report.data import ReportData, gpu_figures, is_number, rank, scored

__all__ = ["TABLE_ROWS", "check_writable", "render", "write"]

#: how many trials the best-trials table lists
TABLE_ROWS = 10
#: how many stopped trials the early-stopping table lists (by trial index)
STOP_ROWS = 50
#: how many trials the GPU table lists (the least utilised)
GPU_ROWS = 10

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}.muted{color:#666}.note{background:#f6f6f6;padding:.5em .8em;
border-left:3px solid #bbb}table{border-collapse:collapse;font-size:.9em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto}img{max-width:100%;height:auto;display:block;margin:.5em 0}
pre{background:#f8f8f8;padding:.6em;overflow:auto;max-height:30em;font-size:.8em}
nav a{margin-right:1em}
"""

SECTIONS = (
    ("summary", "Summary"),
    ("best", "Best trials"),
    ("params", "Metric vs parameters"),
    ("curves", "Learning curves"),
    ("parallel", "Parallel coordinates"),
    ("importance", "Parameter importance"),
    ("stopping", "Early stopping"),
    ("gpu", "GPU efficiency"),
)


def esc(value: Any) -> str:
    """Any value as escaped text (quotes too: safe in attributes)."""
    return html.escape(_text(value), quote=True)


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        import json

        return json.dumps(value, default=str)
    return str(value)


def _table(head: Sequence[str] | None, rows: Iterable[Sequence[Any]], numeric: set[int]) -> str:
    """A table of escaped cells (``numeric``: right-aligned columns); no header row when
    ``head`` is None (a list of facts)."""
    out = ["<div class='scroll'><table>"]
    if head is not None:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = (
            f"<td class='n'>{esc(v)}</td>" if i in numeric else f"<td>{esc(v)}</td>"
            for i, v in enumerate(row)
        )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _img(uri: str | None, alt: str, empty: str) -> str:
    if uri is None:
        return f"<p class='note'>{esc(empty)}</p>"
    return f"<img src='{uri}' alt='{esc(alt)}'>"


def _when(t: Any) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if is_number(t) else "-"


def render(data: ReportData) -> str:
    """The whole report as one HTML string (needs matplotlib and numpy for the figures)."""
    from clusterd.report import plots

    name = data.sweep.get("name", "?")
    metric, mode = data.metric, data.mode
    gpu = gpu_figures(data.rows, data.gpus)
    best = data.top[0]["trial"] if data.top else None
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>clusterd report: {esc(name)}</title><style>{CSS}</style></head><body>",
        f"<h1>Sweep {esc(name)}</h1>",
        f"<p class='muted'>clusterd report generated {esc(_when(data.generated_at))}</p>",
        "<nav>" + "".join(f"<a href='#{k}'>{esc(t)}</a>" for k, t in SECTIONS) + "</nav>",
        _section("summary", _summary(data, gpu)),
        _section("best", _best(data)),
    ]
    no_metric = "no trial has reported a metric yet"
    if metric is None:
        for key in ("params", "curves", "parallel", "importance"):
            parts.append(_section(key, f"<p class='note'>{esc(no_metric)}</p>"))
    else:
        parts.append(
            _section(
                "params",
                _img(
                    plots.metric_vs_params(data.rows, metric, mode, data.swept, best),
                    f"{metric} against each swept parameter",
                    "no swept parameter to plot against"
                    if not data.swept
                    else f"no trial has reported {metric} yet",
                ),
            )
        )
        parts.append(_section("curves", _curves(data, plots.learning_curves(data.curves, mode))))
        parts.append(
            _section(
                "parallel",
                _img(
                    plots.parallel_coordinates(data.rows, metric, mode, data.swept),
                    "parallel coordinates",
                    "needs at least two trials with a value and one swept parameter",
                )
                + "<p class='muted'>One line per trial, coloured by the rank of its best "
                f"{esc(metric)} (yellow: best, purple: worst); each axis is scaled to its "
                "range (log10 where the values span two decades or more) and marked with "
                "its end values.</p>",
            )
        )
        parts.append(_section("importance", _importance(data, metric)))
    parts.append(_section("stopping", _stopping(data)))
    parts.append(_section("gpu", _gpu(gpu, plots.gpu_util(gpu))))
    parts.append("</body></html>\n")
    return "".join(parts)


def _section(key: str, body: str) -> str:
    title = dict(SECTIONS)[key]
    return f"<section id='{key}'><h2>{esc(title)}</h2>{body}</section>"


def _summary(data: ReportData, gpu: dict[str, Any] | None) -> str:
    s = data.sweep
    counts = s.get("counts") or _count_states(data.rows)
    states = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no trials"
    metric = data.metric
    best_value = data.top[0].get(f"{metric}_best") if data.top and metric else None
    runtimes = [float(r["runtime_s"]) for r in data.rows if is_number(r.get("runtime_s"))]
    wall = None
    if is_number(s.get("created_at")) and is_number(s.get("updated_at")):
        wall = float(s["updated_at"]) - float(s["created_at"])
    rows: list[tuple[str, Any]] = [
        ("state", s.get("state")),
        ("driver", s.get("driver")),
        ("search", s.get("search")),
        ("early stopping", s.get("early_stopping")),
        ("metric", f"{metric} ({data.mode})" if metric else "none reported"),
        ("best", f"{_text(best_value)} ({data.top[0]['trial']})" if data.top else None),
        ("trials", f"{len(data.rows)}: {states}"),
        ("submitted", _when(s.get("created_at"))),
        ("last change", _when(s.get("updated_at"))),
        ("wall time", duration(wall)),
        ("trial runtime, summed", duration(sum(runtimes)) if runtimes else None),
        ("GPU-hours", f"{gpu['gpu_hours']:.3g}" if gpu else "no GPU samples"),
        ("output dir", s.get("output_dir")),
    ]
    code = data.code
    if code:
        commit = code.get("git") or "not a git repository"
        rows.append(("git commit at submit", commit))
        rows.append(("uncommitted changes", code.get("git_dirty")))
    body = _table(None, rows, set())
    if code.get("git_dirty"):
        note = code.get("diff_note")
        if code.get("diff") is not None:
            cut = f" ({esc(note)})" if note else ""
            body += (
                f"<details><summary>the dirty diff recorded at submit{cut}</summary>"
                f"<pre>{html.escape(code['diff'])}</pre></details>"
            )
        else:
            body += f"<p class='note'>dirty diff: {esc(note or 'not kept')}</p>"
    elif not code:
        body += "<p class='note'>no trials yet: no code record to show</p>"
    return body


def _count_states(rows: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[str(r.get("state"))] = out.get(str(r.get("state")), 0) + 1
    return out


def _best(data: ReportData) -> str:
    metric = data.metric
    if metric is None:
        return "<p class='note'>no trial has reported a metric yet: nothing to rank</p>"
    ranked = rank(data.rows, metric, data.mode, TABLE_ROWS)
    if not ranked:
        return f"<p class='note'>no trial has reported {esc(metric)} yet</p>"
    fixed = [p for p in data.params if p not in data.swept]
    metric_cols = [f"{m}_{k}" for m in data.metrics for k in ("best", "last")]
    cols = [*data.swept, *metric_cols, "best_step", "stopped_at_step", "runtime_s"]
    head = ["rank", "trial", "state", *cols]
    numeric = {0, *range(3 + len(data.swept), len(head))}
    rows = [
        [i + 1, r.get("trial"), r.get("state"), *(r.get(c) for c in cols)]
        for i, r in enumerate(ranked)
    ]
    counted = scored(data.rows, metric)
    which = (
        "completed trials"
        if all(r.get("state") == "completed" for r in counted)
        else ("trials with a value (none has completed yet)")
    )
    out = (
        f"<p>The {len(ranked)} best of {len(counted)} {which} by {esc(metric)}, "
        f"{'highest' if data.mode == 'max' else 'lowest'} first; swept parameters first, "
        "then every metric's best and last value (each best by its own direction).</p>"
    )
    if fixed:
        shown = ", ".join(f"{p}={_text(ranked[0].get(p))}" for p in fixed)
        out += f"<p class='muted'>fixed in every trial: {esc(shown)}</p>"
    return out + _table(head, rows, numeric)


def _curves(data: ReportData, uri: str | None) -> str:
    if uri is None:
        return f"<p class='note'>no learning curve of {esc(data.metric)} to show</p>"
    over = (data.curves or {}).get("median_over", 0)
    return _img(uri, "learning curves", "") + (
        f"<p class='muted'>The {len(data.top)} best trials' {esc(data.metric)} by step, "
        f"against the per-step median over {esc(over)} trials (dashed). Curves are "
        "downsampled to at most 500 points by the daemon.</p>"
    )


def _importance(data: ReportData, metric: str) -> str:
    from clusterd.report import plots

    rows = scored(data.rows, metric)
    if not data.swept:
        return "<p class='note'>no swept parameter: nothing to attribute</p>"
    imp = imp_mod.main_effects(
        [float(r[f"{metric}_best"]) for r in rows],
        {p: [r.get(p) for r in rows] for p in data.swept},
    )
    text = (
        "<p>Estimator: a one-way variance decomposition (fANOVA-style main effects, "
        "numpy only): each parameter's share of the variance of the trials' best "
        f"{esc(metric)} explained by its values' group means (correlation ratio "
        f"&eta;&sup2;; a numeric parameter with more than {imp_mod.BINS} values in "
        f"{imp_mod.BINS} quantile bins). On a full grid it equals fANOVA's main effect; "
        "interactions are not attributed (the grey bar). Over "
        f"{imp.n} trials.</p>"
    )
    if imp.why:
        return text + f"<p class='note'>no importance: {esc(imp.why)}</p>"
    table = _table(
        ["parameter", "share of variance"],
        [(p, f"{100 * s:.1f} %") for p, s in imp.shares.items()]
        + [("interactions + noise", f"{100 * imp.residual:.1f} %")],
        {1},
    )
    return text + _img(plots.importance_bars(imp, metric), "parameter importance", "") + table


def _stopping(data: ReportData) -> str:
    rule = data.sweep.get("early_stopping") or "none"
    intro = f"<p>Rule: {esc(rule)}.</p>"
    if not data.stops:
        return intro + "<p class='note'>no trial was stopped early</p>"
    at: dict[tuple[str, Any], int] = {}
    for s in data.stops:
        at[(str(s["rule"]), s["step"])] = at.get((str(s["rule"]), s["step"]), 0) + 1
    by_step = _table(
        ["rule", "at step", "trials"],
        [(r, step, n) for (r, step), n in sorted(at.items(), key=lambda kv: str(kv[0]))],
        {1, 2},
    )
    shown = data.stops[:STOP_ROWS]
    table = _table(
        ["trial", "state", "rule", "at step", "its value", "threshold", "reason"],
        [
            (s["trial"], s["state"], s["rule"], s["step"], s["value"], s["threshold"], s["reason"])
            for s in shown
        ],
        {3, 4, 5},
    )
    more = ""
    if len(data.stops) > len(shown):
        name = data.sweep.get("name", "SWEEP")
        more = (
            f"<p class='muted'>and {len(data.stops) - len(shown)} more: "
            f"<code>clusterctl trials {esc(name)} --state stopped</code> lists them all.</p>"
        )
    return (
        intro
        + f"<p>{len(data.stops)} trial(s) with a stop decision, by rule and step:</p>"
        + by_step
        + table
        + more
    )


def _gpu(gpu: dict[str, Any] | None, uri: str | None) -> str:
    if gpu is None:
        return (
            "<p class='note'>no GPU samples: the trials ran without a GPU the runner could see</p>"
        )
    trials = gpu["trials"]
    ranked = gpu["source"] == "ranked"
    hours = "GPU-hours (sampled time x GPUs)" if ranked else "GPU-hours (runtime x GPUs sampled)"
    summary: list[tuple[str, Any]] = [
        ("trials with GPU samples", len(trials)),
        (hours, f"{gpu['gpu_hours']:.3g}"),
        ("mean utilisation (weighted by GPU-hours)", _pct(gpu["util_mean"])),
        ("energy", f"{gpu['energy_wh']:.3g} Wh" if gpu["energy_wh"] is not None else "-"),
    ]
    if gpu["wasted_gpu_hours"] is not None:
        summary.append(
            ("wasted GPU-hours (GPU-hours x (1 - utilisation))", f"{gpu['wasted_gpu_hours']:.3g}")
        )
    if gpu["idle_gpu_hours"] is not None:
        summary.append(
            ("idle GPU-hours (minutes under the idle threshold)", f"{gpu['idle_gpu_hours']:.3g}")
        )
    shown = trials[:GPU_ROWS]  # ranked: most wasted first; else least utilised first
    which = (
        f"{len(shown)} trials that wasted the most GPU-hours"
        if ranked
        else f"{len(shown)} least utilised trials"
    )
    head = ["trial", "state", "GPUs", "util mean", "mem peak MiB", "of MiB", "energy Wh"]
    head += ["GPU-h", "wasted GPU-h"] if ranked else ["GPU-h"]
    table = _table(
        head,
        [
            (
                t["trial"],
                t["state"],
                t["gpus"],
                _pct(t["util_mean"]),
                t["mem_peak_mib"],
                t["mem_total_mib"],
                t["energy_wh"],
                t["gpu_hours"],
                *([t["wasted_gpu_hours"]] if ranked else []),
            )
            for t in shown
        ],
        set(range(2, len(head))),
    )
    return (
        _table(None, summary, set())
        + _img(uri, "GPU utilisation", "no utilisation figures (e.g. MIG devices)")
        + f"<p>The {which}:</p>"
        + table
    )


def _pct(value: Any) -> str:
    return f"{float(value):.0f} %" if is_number(value) else "-"


def check_writable(path: Path) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise InvalidRequest(f"cannot write the report to {path}: it is a directory")
    if not parent.is_dir():
        raise InvalidRequest(f"cannot write the report to {path}: no directory {parent}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidRequest(f"cannot write the report to {path}: {parent} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidRequest(f"cannot write the report to {path}: the file is not writable")


def write(path: Path, text: str) -> int:
    """Write ``text`` to ``path`` through a temporary file and a rename; return bytes."""
    check_writable(path)
    data = text.encode("utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise InvalidRequest(f"cannot write the report to {path}: {exc.strerror}") from None
        raise
    return len(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
