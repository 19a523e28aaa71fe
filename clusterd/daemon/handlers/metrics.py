"""Time series for plots: ``metrics`` (a trial's curve against the sweep) and ``gpu_samples``.

Both answer with bounded, downsampled series: a reply must stay well under the
protocol's 1 MiB line, and a handler runs on the daemon's loop, so the work per
request is capped (at most ``MEDIAN_TRIALS`` trials x ``MAX_POINTS`` steps of
index lookups for the median) however large the sweep is.
"""

from __future__ import annotations

import statistics
from typing import Any

from sqlalchemy import select

from clusterd.daemon.handlers.context import Context, arg_int, arg_opt_str, arg_str, split_trial
from clusterd.daemon.store import G, M, T

__all__ = ["gpu_samples", "metrics"]

#: most points of one series in a reply
MAX_POINTS = 2000
#: the per-step median is taken over at most this many trials (evenly spaced by index)
MEDIAN_TRIALS = 500
#: and at most this many steps (the trial's own steps, downsampled)
MEDIAN_STEPS = 200


def metrics(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """One trial's metric history, the sweep's best trial's history and the per-step median.

    ``{"op": "metrics", "args": {"trial": "x/3", "name": "val_loss", "points": 500}}`` ->
    ``{"trial": "x/3", "name": "val_loss", "mode": "min", "names": ["acc", "val_loss"],
    "points": [[step, value], ...], "best": {"trial": "x/5", "points": [...]} | null,
    "median": [[step, value], ...], "median_over": 37}``

    ``name`` defaults to the sweep's metric (else the first name the trial reported);
    ``points`` (default 500, at most 2000) caps each series, downsampled evenly.
    """
    sweep_name, index = split_trial(arg_str(args, "trial"))
    limit = min(arg_int(args, "points", 500, minimum=2), MAX_POINTS)
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, sweep_name)
        trial = ctx.store.trial(conn, sweep, index)
        names = _metric_names(conn, trial.id)
        name = arg_opt_str(args, "name") or sweep.metric_name or (names[0] if names else None)
        result: dict[str, Any] = {
            "trial": f"{sweep_name}/{index}",
            "name": name,
            "mode": sweep.metric_mode,
            "names": names,
            "points": [],
            "best": None,
            "median": [],
            "median_over": 0,
        }
        if name is None:
            return result
        points = _downsample(_history(conn, trial.id, name), limit)
        result["points"] = points
        result["best"] = _best_curve(conn, sweep, name, limit)
        steps = [s for s, _ in _downsample(points, MEDIAN_STEPS)]
        result["median"], result["median_over"] = _median(conn, sweep.id, name, steps)
    return result


def gpu_samples(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """The latest GPU samples of one attempt of a trial, per GPU, oldest first.

    ``{"op": "gpu_samples", "args": {"trial": "x/3", "attempt": 2, "limit": 120}}`` ->
    ``{"trial": "x/3", "attempt": 2, "gpus": [{"gpu": 0, "t": [...], "util": [...],
    "mem_used": [...], "mem_total": 81920}]}``. ``attempt`` defaults to the latest one
    that has samples; ``limit`` (default 120, at most 2000) caps the samples per GPU.
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
        else:
            attempt = arg_int(args, "attempt", 1, minimum=1)
        rows = []
        if attempt is not None:
            q = (
                select(G.c.gpu, G.c.util, G.c.mem_used, G.c.mem_total, G.c.t)
                .where(G.c.trial_id == trial.id, G.c.attempt == attempt)
                .order_by(G.c.id.desc())
                .limit(limit * 16)
            )
            rows = list(conn.execute(q))
    return {"trial": f"{sweep_name}/{index}", "attempt": attempt, "gpus": _by_gpu(rows, limit)}


def _by_gpu(rows: list[Any], limit: int) -> list[dict[str, Any]]:
    """Newest-first rows -> one oldest-first series per GPU, each at most ``limit`` long."""
    series: dict[int, dict[str, Any]] = {}
    for gpu, util, mem_used, mem_total, t in rows:
        entry = series.setdefault(
            gpu, {"gpu": gpu, "t": [], "util": [], "mem_used": [], "mem_total": mem_total}
        )
        if len(entry["t"]) < limit:
            entry["t"].append(t)
            entry["util"].append(util)
            entry["mem_used"].append(mem_used)
    for entry in series.values():
        for key in ("t", "util", "mem_used"):
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


def _best_curve(conn: Any, sweep: Any, name: str, limit: int) -> dict[str, Any] | None:
    """The history of the trial with the best ``best_value`` (the sweep's own metric only)."""
    if name != sweep.metric_name:
        return None
    order = T.c.best_value.desc() if sweep.metric_mode == "max" else T.c.best_value.asc()
    q = (
        select(T.c.id, T.c.index)
        .where(T.c.sweep_id == sweep.id, T.c.best_value.is_not(None))
        .order_by(order, T.c.index)
        .limit(1)
    )
    row = conn.execute(q).first()
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
