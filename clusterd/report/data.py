"""What a report shows, gathered from the daemon's existing ops and shaped (stdlib only).

No op of its own: ``export`` (the same rows ``clusterctl export`` and ``results()`` give:
every metric's last and best, ``stopped_at_step``, runtime, parameters with the swept
ones first, and the GPU columns ``gpu_util_mean``/``gpu_mem_peak_mib``/``gpu_energy_wh``
where the daemon has them), ``sweeps`` (counts by state, search, rule, times),
``trials`` (every stop decision: rule, step, value, threshold, reason), ``metrics``
(the curves of the top-k trials and the sweep's per-step median, downsampled by the
daemon) and ``gpus`` (per trial and GPU: samples, mean utilisation, peak memory). Each
op is already bounded on the daemon's side, so a report costs the daemon what those
verbs cost. The dirty diff recorded at submit is a file in the sweep's ``repro/``,
read here (the CLI runs on the daemon's host, as ``logs`` does).

The shaping functions (``rank``, ``stop_rows``, ``gpu_figures``, ...) are pure, so the
tests check them without a daemon.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BEST_STATES",
    "GPU_COLUMNS",
    "MAX_DIFF_BYTES",
    "MAX_TOP_K",
    "ReportData",
    "gather",
    "gpu_figures",
    "is_number",
    "primary_metric",
    "rank",
    "read_diff",
    "scored",
    "stop_rows",
]

#: trials that count for "best" (as ``clusterctl best`` ranks them: ``store.BEST_STATES``)
BEST_STATES = frozenset({"completed"})
#: the per-trial GPU figures export rows carry when the daemon has GPU samples
GPU_COLUMNS = ("gpu_util_mean", "gpu_mem_peak_mib", "gpu_energy_wh")
#: the ``metrics`` op overlays at most 8 other trials on one: top-k is at most 9
MAX_TOP_K = 9
#: a dirty diff larger than this is cut (the report says where the whole file is)
MAX_DIFF_BYTES = 256 * 1024

Call = Callable[..., Any]


@dataclass
class ReportData:
    """Everything a report renders; ``gather`` fills it from a daemon, tests by hand."""

    sweep: dict[str, Any]
    columns: list[str]
    rows: list[dict[str, Any]]
    metrics: dict[str, str]  # name -> "min" | "max", the [metric] first
    swept: list[str]
    params: list[str]
    stops: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, Any] | None = None  # the ``metrics`` op's reply for the top-k
    top: list[dict[str, Any]] = field(default_factory=list)  # ranked rows, best first
    code: dict[str, Any] = field(default_factory=dict)  # git, git_dirty, diff, diff_note
    gpus: list[dict[str, Any]] = field(default_factory=list)  # the ``gpus`` op's rows
    generated_at: float = field(default_factory=time.time)

    @property
    def metric(self) -> str | None:
        return primary_metric(self.sweep, self.metrics)

    @property
    def mode(self) -> str:
        m = self.metric
        return self.metrics.get(m, self.sweep.get("mode") or "min") if m else "min"


def primary_metric(sweep: dict[str, Any], metrics: dict[str, str]) -> str | None:
    """The sweep's ``[metric]``, else the first metric reported (None: no metric at all)."""
    return sweep.get("metric") or next(iter(metrics), None)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool): what can sit on a numeric axis."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def scored(rows: Iterable[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """The rows that count for "best" with a value of ``metric``; every row with a value
    while none has completed (a running sweep still gets a report)."""
    key = f"{metric}_best"
    with_value = [r for r in rows if is_number(r.get(key))]
    counted = [r for r in with_value if r.get("state") in BEST_STATES]
    return counted or with_value


def rank(rows: Iterable[dict[str, Any]], metric: str, mode: str, k: int) -> list[dict[str, Any]]:
    """The ``k`` best rows by ``<metric>_best`` in ``mode``'s direction; ties go to the
    lower trial index (as ``clusterctl best``)."""
    key = f"{metric}_best"
    sign = -1.0 if mode == "max" else 1.0
    candidates = scored(rows, metric)
    candidates.sort(key=lambda r: (sign * float(r[key]), r.get("index", 0)))
    return candidates[: max(0, k)]


def stop_rows(trials: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trial with an early-stopping decision, by trial index: the trial,
    its state, the rule (``manual`` for ``clusterctl stop``), the step, the value it had
    and the threshold it was worse than, and the rule's own reason."""
    out = []
    for t in trials:
        d = t.get("stop_decision")
        if not isinstance(d, dict):
            continue
        out.append(
            {
                "trial": t.get("name") or f"{t.get('sweep')}/{t.get('index')}",
                "index": t.get("index"),
                "state": t.get("state"),
                "rule": d.get("rule"),
                "step": d.get("step"),
                "value": d.get("value"),
                "threshold": d.get("threshold"),
                "reason": d.get("reason"),
            }
        )
    out.sort(key=lambda r: r["index"] if isinstance(r["index"], int) else -1)
    return out


def gpu_figures(rows: list[dict[str, Any]], gpus: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Per-trial GPU figures and their totals, or None when the sweep has no GPU samples.

    The ``gpus`` op of this release answers one entry per trial, most wasted GPU-hours
    first (``gpustats.ranking``: GPU-hours from the sampled time, wasted = GPU-hours x
    (1 - utilisation), idle time, energy): those are used as they are. An older
    daemon's ``gpus`` (one entry per trial and GPU: samples, mean utilisation, peak
    memory) and the export's ``GPU_COLUMNS`` still give a section: GPU-hours are then
    each sampled trial's runtime times the GPUs it was sampled on, and the trials are
    listed least utilised first.
    """
    if any("gpu_hours" in g for g in gpus):
        ranked: list[dict[str, Any]] = [
            {
                "trial": g.get("trial"),
                "state": g.get("state"),
                "gpus": g.get("gpus"),
                "util_mean": g.get("util_mean"),
                "mem_peak_mib": g.get("mem_peak_mib"),
                "mem_total_mib": g.get("mem_total_mib", g.get("mem_total")),
                "energy_wh": g.get("energy_wh"),
                "gpu_hours": float(g.get("gpu_hours") or 0.0),
                "wasted_gpu_hours": g.get("wasted_gpu_hours"),
                "idle_gpu_hours": g.get("idle_gpu_hours"),
            }
            for g in gpus
        ]
        return _totals("ranked", ranked)
    per_gpu: dict[str, list[dict[str, Any]]] = {}
    for g in gpus:
        per_gpu.setdefault(str(g.get("trial")), []).append(g)
    from_export = any(any(r.get(c) is not None for c in GPU_COLUMNS) for r in rows)
    if not from_export and not per_gpu:
        return None
    trials: list[dict[str, Any]] = []
    for r in rows:
        devices = per_gpu.get(str(r.get("trial")), [])
        util = r.get("gpu_util_mean") if from_export else _weighted_util(devices)
        mem = r.get("gpu_mem_peak_mib") if from_export else _peak(devices)
        energy = r.get("gpu_energy_wh") if from_export else None
        if util is None and mem is None and energy is None and not devices:
            continue
        n_gpus = len({g.get("gpu") for g in devices}) or 1
        runtime = r.get("runtime_s") or 0.0
        trials.append(
            {
                "trial": r.get("trial"),
                "state": r.get("state"),
                "gpus": n_gpus,
                "util_mean": util,
                "mem_peak_mib": mem,
                "mem_total_mib": _peak(devices, "mem_total"),
                "energy_wh": energy,
                "gpu_hours": n_gpus * float(runtime) / 3600.0,
                "wasted_gpu_hours": None,
                "idle_gpu_hours": None,
            }
        )
    trials.sort(key=lambda t: float(t["util_mean"]) if is_number(t["util_mean"]) else math.inf)
    return _totals("export" if from_export else "gpus", trials) if trials else None


def _totals(source: str, trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The sums over ``trials``; utilisation weighted by GPU-hours (by trial without)."""
    hours = sum(float(t["gpu_hours"]) for t in trials)
    utils = [
        (float(t["util_mean"]), float(t["gpu_hours"])) for t in trials if is_number(t["util_mean"])
    ]
    weight = sum(h for _, h in utils)
    if utils and weight > 0:
        util_mean: float | None = sum(u * h for u, h in utils) / weight
    elif utils:
        util_mean = sum(u for u, _ in utils) / len(utils)
    else:
        util_mean = None

    def total(key: str) -> float | None:
        values = [float(t[key]) for t in trials if is_number(t.get(key))]
        return sum(values) if values else None

    return {
        "source": source,
        "trials": trials,
        "gpu_hours": hours,
        "util_mean": util_mean,
        "energy_wh": total("energy_wh"),
        "wasted_gpu_hours": total("wasted_gpu_hours"),
        "idle_gpu_hours": total("idle_gpu_hours"),
    }


def _weighted_util(devices: list[dict[str, Any]]) -> float | None:
    pairs = [
        (g["util_avg"], g.get("samples") or 1) for g in devices if is_number(g.get("util_avg"))
    ]
    total = sum(n for _, n in pairs)
    return sum(u * n for u, n in pairs) / total if total else None


def _peak(devices: list[dict[str, Any]], key: str = "mem_max") -> int | None:
    values = [g[key] for g in devices if is_number(g.get(key))]
    return max(values) if values else None


def read_diff(path: str | None, limit: int = MAX_DIFF_BYTES) -> tuple[str | None, str | None]:
    """The recorded dirty diff and a note: (text, None), (first ``limit`` bytes, "cut"
    note) or (None, why it is missing). Decoded with replacement: a diff of a binary or
    Latin-1 file still shows."""
    if not path:
        return None, None
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        return None, f"recorded at {path}, not readable here ({exc.strerror or exc})"
    text = data[:limit].decode("utf-8", "replace")
    if len(data) > limit:
        return text, f"the first {limit // 1024} KiB of {path}"
    return text, None


def gather(call: Call, sweep: str, top_k: int = 5) -> ReportData:
    """Ask the daemon (``call(op, **args)``, e.g. ``Client().call``) for a report's data.

    ``export`` comes first: an unknown sweep fails there with the daemon's own message,
    before anything else is asked or written."""
    top_k = max(1, min(top_k, MAX_TOP_K))
    export = call("export", sweep=sweep)
    views = [s for s in call("sweeps") if s.get("name") == sweep]
    data = ReportData(
        sweep=views[0] if views else {"name": sweep},
        columns=list(export.get("columns", [])),
        rows=list(export.get("rows", [])),
        metrics=dict(export.get("metrics", {})),
        swept=list(export.get("swept", [])),
        params=list(export.get("params", [])),
    )
    trials = call("trials", sweep=sweep)
    data.stops = stop_rows(trials)
    data.gpus = list(call("gpus", sweep=sweep))
    metric = data.metric
    if metric is not None:
        data.top = rank(data.rows, metric, data.mode, top_k)
    if data.top and metric is not None:
        first, *rest = data.top
        data.curves = call(
            "metrics",
            trial=first["trial"],
            name=metric,
            points=500,
            overlay=[r["index"] for r in rest],
        )
    if trials:
        code = call("show", trial=trials[0]["name"]).get("code") or {}
        diff, note = read_diff(code.get("git_diff")) if code.get("git_dirty") else (None, None)
        data.code = {
            "git": code.get("git"),
            "git_dirty": code.get("git_dirty"),
            "diff_path": code.get("git_diff"),
            "diff": diff,
            "diff_note": note,
            "python": code.get("python"),
        }
    return data
