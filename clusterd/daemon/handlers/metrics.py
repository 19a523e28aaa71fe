"""Time series for plots: ``metrics`` (a trial's curve against the sweep) and ``gpu_samples``.

Both answer with bounded, downsampled series: a reply must stay well under the
protocol's 1 MiB line, and a handler runs on the daemon's loop, so the work per
request is capped (at most ``MEDIAN_TRIALS`` trials x ``MAX_POINTS`` steps of
index lookups for the median) however large the sweep is.
"""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import func, null, select

from clusterd.daemon.gpustats import GM
from clusterd.daemon.handlers.context import Context, arg_int, arg_opt_str, arg_str, split_trial
from clusterd.daemon.handlers.views import sweep_spec
from clusterd.daemon.store import BEST_STATES, G, M, T
from clusterd.errors import InvalidRequest, NotFound

__all__ = ["gpu_samples", "metrics"]

#: most points of one series in a reply
MAX_POINTS = 2000
#: the per-step median is taken over at most this many trials (evenly spaced by index)
MEDIAN_TRIALS = 500
#: and at most this many steps (the trial's own steps, downsampled)
MEDIAN_STEPS = 200


def metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """One trial's metric history, the sweep's best trial's history and the per-step median.

    ``{"op": "metrics", "args": {"trial": "x/3", "name": "val_loss", "points": 500,
    "overlay": [5, 8]}}`` ->
    ``{"trial": "x/3", "name": "val_loss", "mode": "min", "names": ["acc", "val_loss"],
    "modes": {"acc": "max", "val_loss": "min"}, "points": [[step, value], ...],
    "best": {"trial": "x/5", "points": [...]} | null, "median": [[step, value], ...],
    "median_over": 37, "overlay": [{"trial": "x/5", "points": [...]}, ...]}``

    ``name`` defaults to the sweep's metric (else the first name the trial reported);
    ``mode`` is that metric's own direction and ``modes`` every reported metric's
    (``SweepSpec.metric_mode``: ``[metric]``, ``[metrics.<name>]``, else by its name);
    ``best`` is the trial holding the best value of ``name`` among completed trials (any
    trial while none has completed). ``overlay`` (indices of other trials of the sweep,
    at most ``MAX_OVERLAY``) adds their curves of ``name``. ``points`` (default 500, at
    most 2000) caps each series, downsampled evenly.
    """
    sweep_name, index = split_trial(arg_str(args, "trial"))
    limit = min(arg_int(args, "points", 500, minimum=2), MAX_POINTS)
    overlay = _overlay_arg(args, index)
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, sweep_name)
        spec = sweep_spec(sweep)
        trial = ctx.store.trial(conn, sweep, index)
        names = _metric_names(conn, trial.id)
        name = arg_opt_str(args, "name") or sweep.metric_name or (names[0] if names else None)
        result: dict[str, Any] = {
            "trial": f"{sweep_name}/{index}",
            "name": name,
            "mode": spec.metric_mode(name) if name else None,
            "names": names,
            "modes": {n: spec.metric_mode(n) for n in names},
            "points": [],
            "best": None,
            "median": [],
            "median_over": 0,
            "overlay": [],
        }
        if name is None:
            return result
        points = _downsample(_history(conn, trial.id, name), limit)
        result["points"] = points
        result["best"] = _best_curve(ctx, conn, sweep, name, spec.metric_mode(name), limit)
        steps = [s for s, _ in _downsample(points, MEDIAN_STEPS)]
        result["median"], result["median_over"] = _median(conn, sweep.id, name, steps)
        for other in overlay:
            row = conn.execute(
                select(T.c.id).where(T.c.sweep_id == sweep.id, T.c.index == other)
            ).first()
            if row is None:
                raise NotFound(f"sweep {sweep_name!r} has no trial {other}")
            curve = _downsample(_history(conn, row.id, name), limit)
            result["overlay"].append({"trial": f"{sweep_name}/{other}", "points": curve})
    return result


#: most other trials one ``metrics`` request overlays
MAX_OVERLAY = 8


def _overlay_arg(args: dict[str, Any], index: int) -> list[int]:
    value = args.get("overlay", [])
    if (
        not isinstance(value, list)
        or len(value) > MAX_OVERLAY
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value)
    ):
        raise InvalidRequest(
            f"argument 'overlay' must be a list of at most {MAX_OVERLAY} trial indices"
        )
    return [v for v in dict.fromkeys(value) if v != index]


def gpu_samples(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The latest GPU samples of one attempt of a trial, per GPU, oldest first.

    ``{"op": "gpu_samples", "args": {"trial": "x/3", "attempt": 2, "limit": 120}}`` ->
    ``{"trial": "x/3", "attempt": 2, "resolution": "raw", "gpus": [{"gpu": 0, "t": [...],
    "util": [...], "mem_used": [...], "power_w": [...], "temp_c": [...], "own_mem": [...],
    "mem_total": 81920}]}``. ``attempt`` defaults to the latest one that has samples;
    ``limit`` (default 120, at most 2000) caps the samples per GPU. An attempt whose
    samples were all rolled up (docs/gpu.md, "Storage and retention") answers with its
    minutes instead: ``resolution`` "minute", ``t`` the minute's start, ``util`` its
    mean, ``mem_used`` and ``own_mem`` its peaks, ``power_w`` its mean, ``temp_c`` null.
    """
    sweep_name, index = split_trial(arg_str(args, "trial"))
    limit = min(arg_int(args, "limit", 120, minimum=1), MAX_POINTS)
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, sweep_name)
        trial = ctx.store.trial(conn, sweep, index)
        attempt = args.get("attempt")
        if attempt is None:
            attempt = conn.execute(
                select(G.c.attempt).where(G.c.trial_id == trial.id).order_by(G.c.id.desc())
            ).scalar()
            if attempt is None:
                attempt = conn.execute(
                    select(func.max(GM.c.attempt)).where(GM.c.trial_id == trial.id)
                ).scalar()
        else:
            attempt = arg_int(args, "attempt", 1, minimum=1)
        rows: list[Any] = []
        resolution = "raw"
        if attempt is not None:
            q = (
                select(G.c.gpu, G.c.util, G.c.mem_used, G.c.mem_total, G.c.t, *_EXTRA)
                .where(G.c.trial_id == trial.id, G.c.attempt == attempt)
                .order_by(G.c.id.desc())
                .limit(limit * 16)
            )
            rows = list(conn.execute(q))
            if not rows:
                resolution = "minute"
                rows = list(conn.execute(_minutes_query(trial.id, attempt, limit * 16)))
    return {
        "trial": f"{sweep_name}/{index}",
        "attempt": attempt,
        "resolution": resolution,
        "gpus": _by_gpu(rows, limit),
    }


#: the readings beyond utilisation and memory, in ``gpu_samples`` replies
_EXTRA = (G.c.power_w, G.c.temp_c, G.c.own_mem)
_SERIES = ("t", "util", "mem_used", "power_w", "temp_c", "own_mem")


def _minutes_query(trial_id: int, attempt: int, limit: int) -> Any:
    """An attempt's rolled-up minutes in ``gpu_samples``' row shape, newest first."""
    return (
        select(
            GM.c.gpu,
            GM.c.util_mean,
            GM.c.mem_max,
            GM.c.mem_total,
            (GM.c.minute * 60.0).label("t"),
            GM.c.power_mean,
            null().label("temp_c"),
            GM.c.own_mem_max,
        )
        .where(GM.c.trial_id == trial_id, GM.c.attempt == attempt)
        .order_by(GM.c.minute.desc(), GM.c.gpu)
        .limit(limit)
    )


def _by_gpu(rows: list[Any], limit: int) -> list[dict[str, Any]]:
    """Newest-first rows -> one oldest-first series per GPU, each at most ``limit`` long."""
    series: dict[int, dict[str, Any]] = {}
    for gpu, util, mem_used, mem_total, t, power_w, temp_c, own_mem in rows:
        entry = series.setdefault(
            gpu, {"gpu": gpu, **{k: [] for k in _SERIES}, "mem_total": mem_total}
        )
        if len(entry["t"]) < limit:
            for key, value in zip(
                _SERIES, (t, util, mem_used, power_w, temp_c, own_mem), strict=True
            ):
                entry[key].append(value)
    for entry in series.values():
        for key in _SERIES:
            entry[key].reverse()
    return [series[g] for g in sorted(series)]


def _metric_names(conn: Any, trial_id: int) -> list[str]:
    q = select(M.c.name).where(M.c.trial_id == trial_id).distinct().order_by(M.c.name)
    return list(conn.execute(q).scalars())


def _history(conn: Any, trial_id: int, name: str) -> list[list[float]]:
    """``[[step, value], ...]`` by step; a step reported twice (a resumed attempt) keeps
    the later value."""
    by_step: dict[int, float] = {}
    q = select(M.c.step, M.c.value).where(M.c.trial_id == trial_id, M.c.name == name)
    for step, value in conn.execute(q.order_by(M.c.id)):
        by_step[step] = value
    return [[s, by_step[s]] for s in sorted(by_step)]


def _downsample(points: list[Any], limit: int) -> list[Any]:
    """At most ``limit`` evenly spaced points, always keeping the first and the last."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _best_curve(
    ctx: Context, conn: Any, sweep: Any, name: str, mode: str, limit: int
) -> dict[str, Any] | None:
    """The history of the trial with the best value of ``name`` in ``mode``'s direction:
    among the trials that count for "best" (``BEST_STATES``), any trial while none does."""
    row = ctx.store.best_metric_trial(conn, sweep.id, name, mode, sorted(BEST_STATES))
    if row is None:
        row = ctx.store.best_metric_trial(conn, sweep.id, name, mode)
    if row is None:
        return None
    points = _downsample(_history(conn, row.id, name), limit)
    return {"trial": f"{sweep.name}/{row.index}", "points": points}


def _median(conn: Any, sweep_id: int, name: str, steps: list[int]) -> tuple[list[list[float]], int]:
    """The median over (a sample of) the sweep's trials at each of ``steps``."""
    if not steps:
        return [], 0
    ids = list(
        conn.execute(
            select(T.c.id)
            .where(T.c.sweep_id == sweep_id, T.c.last_step.is_not(None))
            .order_by(T.c.index)
        ).scalars()
    )
    ids = _downsample(ids, MEDIAN_TRIALS)
    values: dict[int, dict[int, float]] = {}
    q = select(M.c.trial_id, M.c.step, M.c.value).where(
        M.c.trial_id.in_(ids), M.c.name == name, M.c.step.in_(steps)
    )
    for trial_id, step, value in conn.execute(q.order_by(M.c.id)):
        values.setdefault(step, {})[trial_id] = value
    median = [[s, statistics.median(values[s].values())] for s in steps if values.get(s)]
    return median, len(ids)
