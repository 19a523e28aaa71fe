"""Sweep-level ops: sweeps, cancel, relaunch, rm, export, best, gpus (submit: ``submit.py``)."""

from __future__ import annotations

import os
from typing import Any

from clusterd.daemon import gpu_idle, outputs, trash
from clusterd.daemon.handlers.context import (
    Context,
    arg_bool,
    arg_int,
    arg_opt_str,
    arg_str,
    gpu_idle_threshold,
    split_trial,
)
from clusterd.daemon.handlers.views import metric_order, metric_values, sweep_spec, sweep_view
from clusterd.daemon.store import BEST_STATES, hosts_over
from clusterd.errors import Conflict, InvalidRequest

__all__ = [
    "RELAUNCH_STATES",
    "best",
    "cancel",
    "export",
    "gpus",
    "list_sweeps",
    "list_trash",
    "relaunch",
    "restore",
    "rm",
]

#: ``relaunch``'s ``which`` -> the final states whose trials run again
RELAUNCH_STATES: dict[str, tuple[str, ...]] = {
    "failed": ("failed",),  # the default: what crashed
    "cancelled": ("cancelled",),  # resume a cancelled sweep; stopped and completed stay
    "all": ("failed", "completed", "cancelled", "stopped"),  # every finished trial
}


def list_sweeps(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"op": "sweeps"}`` -> one entry per sweep with counts per state and best value.

    ``best`` is over the trials that count for "best" (``store.BEST_STATES``: completed
    ones), as ``best`` ranks them; ``relaunched_at`` and ``finished_since_relaunch`` give
    the pace of a relaunched sweep's trials (its ETA). ``group`` (optional) keeps the
    sweeps whose sweep.toml says ``group = ...``; sweeps in the trash are never listed."""
    group = arg_opt_str(args, "group")
    with ctx.store.read() as conn:
        counts = ctx.store.sweep_counts(conn)
        bests = ctx.store.best_counted_values(conn)
        failures = ctx.store.host_failures(conn)
        idle = gpu_idle.flagged_counts(conn)
        sweeps = [  # the trash (``rm --trash``) is listed by ``trash``, not here
            s
            for s in ctx.store.list_sweeps(conn)
            if s.trashed_at is None and (group is None or s.group == group)
        ]
        marks = ctx.store.relaunch_marks(conn, [s.id for s in sweeps if s.state == "active"])
        views = []
        for s in sweeps:
            view = sweep_view(s, counts.get(s.id, {}), bests.get(s.id), marks.get(s.id))
            threshold = (s.spec.get("retry") or {}).get("exclude_host_after", 3)
            view["excluded_hosts"] = hosts_over(failures.get(s.id, {}), threshold)
            # a sweep whose launches fail (files unwritable, driver refusing): why, and when
            # it is tried again; every other sweep goes on meanwhile
            trouble = ctx.scheduler.troubles.get(s.name)
            view["stuck"] = None if trouble is None else trouble.view()
            view["gpu_idle"] = idle.get(s.id, 0)  # running trials whose GPUs sit idle
            view["group"] = s.group
            views.append(view)
        return views


async def cancel(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "cancel", "args": {"target": "lr-depth"}}`` (or ``"lr-depth/3"``)
    -> ``{"cancelled": 5, "cancelling": 2}`` (pending ones at once, live ones via the driver).
    """
    target = arg_str(args, "target")
    if "/" in target:
        sweep, index = split_trial(target)
        return await ctx.scheduler.cancel(sweep, index)
    return await ctx.scheduler.cancel(target)


def relaunch(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "relaunch", "args": {"sweep": "x", "which": "failed"}}`` -> ``{"relaunched": 3}``

    ``which`` (``RELAUNCH_STATES``): ``failed`` (failed trials), ``cancelled`` (cancelled
    trials: resumes a cancelled sweep, stopped and completed trials stay as they are) or
    ``all`` (every finished trial: failed, completed, cancelled and stopped).
    """
    name = arg_str(args, "sweep")
    which = arg_str(args, "which", "failed")
    states = RELAUNCH_STATES.get(which)
    if states is None:
        raise InvalidRequest(
            f"argument 'which' must be one of {', '.join(RELAUNCH_STATES)}, got {which!r}"
        )
    n = ctx.store.relaunch(name, states)
    ctx.scheduler.wake()
    return {"relaunched": n}


def rm(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "rm", "args": {"sweep": "x", "trash": false}}`` -> ``{"removed": "x"}``

    Without ``trash``: removes the sweep from the database; its output dir stays on disk.
    With ``trash``: the sweep is hidden, not removed (``daemon/trash.py``): its rows stay
    (``trash`` lists it, ``restore`` brings it back) and what clusterd created for it
    (its trial dirs, ``repro/``, ``.clusterd/``) moves to
    ``$CLUSTERD_HOME/trash/<name>-<date>/`` (``trashed_to``); anything else in the dir
    stays (``kept``). A sweep already in the trash is deleted for good, rows and files.

    Order with ``trash``: check first (no trial pending, queued or running; the dir's
    marker names this sweep; the dir is not a project root, does not hold the sweep
    file or CLUSTERD_HOME), then mark the row (hidden: nothing launches it any more),
    then move. A failed move puts back what it moved and unmarks the row.
    """
    name = arg_str(args, "sweep")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name, trashed=True)
    if sweep.trashed_at is not None:  # already in the trash: delete it for good
        return trash.delete(ctx.store, name, str(ctx.home))
    if not arg_bool(args, "trash"):
        sweep = ctx.store.delete_sweep(name)
        return {"removed": name, "output_dir": sweep.output_dir}
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        live = ctx.store.live_count(conn, sweep.id)
        indices = [row[0] for row in ctx.store.trial_columns(conn, sweep.id, ["index"])]
    if live:
        raise Conflict(
            f"sweep {name!r} has {live} queued or running trial(s); "
            f"run `clusterctl cancel {name}` first"
        )
    result: dict[str, Any] = {"removed": name, "output_dir": sweep.output_dir}
    if os.path.isdir(sweep.output_dir):
        problem = outputs.trash_problem(
            sweep.output_dir, name, sweep.uid, ctx.store.database_id(), sweep.source, str(ctx.home)
        )
        if problem:
            raise Conflict(problem)
    dest = trash.trash_dir_for(str(ctx.home), name)
    try:
        trash.mark(ctx.store, name, dest)  # hidden from here on: nothing launches it
    except BaseException:
        outputs.remove_if_empty(dest)
        raise
    result["trashed_to"] = dest
    if not os.path.isdir(sweep.output_dir):
        return result
    names = [*outputs.OWN_ENTRIES, *(str(i) for i in indices)]
    try:
        outputs.move_to_trash(sweep.output_dir, names, dest)
    except BaseException:
        trash.unmark(ctx.store, name)
        outputs.remove_if_empty(dest)
        raise
    try:
        os.rmdir(sweep.output_dir)
    except OSError:
        result["kept"] = sorted(os.listdir(sweep.output_dir))[:20]
    return result


def list_trash(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"op": "trash", "args": {"empty": false, "older_than": null}}`` -> the trashed
    sweeps, oldest first: ``[{"name", "trashed_at", "path", "output_dir", "group",
    "trials", "bytes"}]``; with ``empty`` they are deleted for good (those trashed more
    than ``older_than`` seconds ago) and the reply lists what was deleted."""
    older = args.get("older_than")
    if older is not None and (
        isinstance(older, bool) or not isinstance(older, int | float) or older < 0
    ):
        raise InvalidRequest("argument 'older_than' must be a number of seconds >= 0")
    if not arg_bool(args, "empty"):
        return trash.listing(ctx.store)
    before = {e["name"]: e for e in trash.listing(ctx.store)}
    gone = trash.empty(ctx.store, str(ctx.home), None if older is None else float(older))
    return [before[n] for n in gone]


def restore(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "restore", "args": {"sweep": "x"}}`` -> ``{"restored", "output_dir",
    "entries"}``: moves a trashed sweep's files back and shows it again; refused, with
    nothing changed, when its output dir was taken meanwhile."""
    return trash.restore(ctx.store, arg_str(args, "sweep"))


def export(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "export", "args": {"sweep": "x"}}`` -> ``{"columns": [...], "rows": [{...}],
    "metrics": {"val_loss": "min", "val_acc": "max"}, "params": [...], "swept": [...]}``

    One row per trial: state, counts, ``last_step``, for every metric the sweep's trials
    reported ``<metric>_last`` and ``<metric>_best`` (best by the metric's own direction,
    ``metrics`` says which; the ``[metric]`` first), ``best_step`` (of the ``[metric]``),
    ``stopped_at_step``, runtime, the code it ran, when the sweep has GPU samples
    ``gpu_util_mean``, ``gpu_mem_peak_mib``, ``gpu_energy_wh``, then every parameter as
    a column: the swept ones (they vary across the trials) first. A parameter named like another
    column is ``param.<name>``. All metric values come from one query for the sweep.
    """
    name = arg_str(args, "sweep")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        trials = ctx.store.trials(conn, sweep.id)
        runtimes = ctx.store.runtimes(conn, sweep.id)
        code = ctx.store.last_attempt_code(conn, sweep.id)
        summaries = ctx.store.metric_summaries(conn, sweep.id)
        gpu = _gpu_columns(conn, sweep, gpu_idle_threshold(ctx))
    spec = sweep_spec(sweep)
    names = metric_order(
        spec, {n for s in summaries.values() for n in s} | {sweep.metric_name} - {None}
    )
    metric_cols = [f"{m}_{k}" for m in names for k in ("last", "best")]
    head = ["trial", "index", "state", "attempts", "failures", "resumes", "last_step"]
    tail = ["best_step", "stopped_at_step", "runtime_s", "git", "git_dirty", "reason"]
    gpu_cols = list(GPU_EXPORT_COLUMNS) if gpu else []  # only when the sweep has samples
    fixed = head + metric_cols + tail + gpu_cols
    param_names, swept = _param_columns([t.params for t in trials])
    taken = set(fixed)
    pcols = {p: p if p not in taken else f"param.{p}" for p in param_names}
    columns = fixed + [pcols[p] for p in param_names]
    repro_ = sweep.repro or {}
    submitted = (repro_.get("git"), repro_.get("git_dirty"))
    rows = []
    for t in trials:
        stop = t.stop_decision or {}
        # the code its last attempt ran; a trial that never ran (or ran before
        # per-attempt records) shows what the sweep was submitted with
        commit, dirty = code.get(t.index) or (None, None)
        if commit is None:
            commit, dirty = submitted
        values = metric_values(
            spec, summaries.get(t.index, {}), t.last_value, t.best_value, t.best_step
        )
        row: dict[str, Any] = dict(
            zip(
                head,
                [f"{name}/{t.index}", t.index, t.state, t.attempts, t.failures, t.resumes],
                strict=False,
            )
        )
        row["last_step"] = t.last_step
        for m in names:
            entry = values.get(m) or {}
            row[f"{m}_last"] = entry.get("last")
            row[f"{m}_best"] = entry.get("best")
        row.update(
            best_step=t.best_step,
            stopped_at_step=stop.get("step") if t.state == "stopped" else None,
            runtime_s=round(runtimes.get(t.index, 0.0), 3),
            git=commit,
            git_dirty=dirty,
            reason=t.reason,
        )
        for c in gpu_cols:
            row[c] = (gpu.get(t.id) or {}).get(c)
        for p in param_names:
            row[pcols[p]] = t.params.get(p)
        rows.append(row)
    return {
        "columns": columns,
        "rows": rows,
        "metrics": {m: spec.metric_mode(m) for m in names},
        "params": [pcols[p] for p in param_names],
        "swept": [pcols[p] for p in swept],
    }


def _param_columns(params: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Every parameter name, the swept ones (values differ between trials, or some trials
    lack it: a conditional sub-grid) first, each group in first-seen order; and the swept."""
    names: dict[str, None] = {}
    for p in params:
        names.update(dict.fromkeys(p))
    swept = [n for n in names if _varies(params, n)]
    return swept + [n for n in names if n not in swept], swept


def _varies(params: list[dict[str, Any]], name: str) -> bool:
    missing = object()
    first = params[0].get(name, missing) if params else missing
    return any(p.get(name, missing) != first for p in params)


def best(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "best", "args": {"sweep": "x", "n": 5, "all": false, "by": "val_acc"}}``
    -> ``{"metric": "val_acc", "mode": "max", "metrics": {name: mode}, "trials": [...]}``.

    Ranks the trials that count for "best" (``store.BEST_STATES``: completed ones; every
    trial with a value if ``all``) by their best value of ``by`` (default: the sweep's
    ``[metric]``) in that metric's own direction. Each ranked trial carries every
    metric's last and best (``metrics``), ``best_step`` (where it had its best ``by``)
    and its ``params``. Ranking by ``[metric]`` reads the trials' own best values; by
    another metric, one aggregate of that metric; the ranked trials' other metrics, one
    more query.
    """
    name = arg_str(args, "sweep")
    n = arg_int(args, "n", 5, minimum=1)
    by = arg_opt_str(args, "by")
    everything = arg_bool(args, "all")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        if not by and not sweep.metric_name:
            raise InvalidRequest(
                f"sweep {name!r} has no [metric]; name one to rank by with --by METRIC"
            )
        spec = sweep_spec(sweep)
        metric = by or sweep.metric_name
        mode = spec.metric_mode(metric)
        trials = [
            t for t in ctx.store.trials(conn, sweep.id) if everything or t.state in BEST_STATES
        ]
        if metric == sweep.metric_name:
            scored = [(t.best_value, t) for t in trials if t.best_value is not None]
        else:
            known = ctx.store.metric_names(conn, sweep.id)
            if metric not in known:
                shown = ", ".join(known) if known else "none yet"
                raise InvalidRequest(f"sweep {name!r} has no metric {by!r} (reported: {shown})")
            of_by = ctx.store.metric_summaries(conn, sweep.id, name=metric)
            scored = []
            for t in trials:
                summary = of_by.get(t.index, {}).get(metric)
                if summary is not None:
                    scored.append((summary[3] if mode == "max" else summary[2], t))
        scored.sort(key=lambda e: (-e[0] if mode == "max" else e[0], e[1].index))
        ranked = scored[:n]
        summaries = ctx.store.metric_summaries(conn, sweep.id, indices=[t.index for _, t in ranked])
        if metric == sweep.metric_name:
            steps = {t.index: t.best_step for _, t in ranked}
        else:  # where each ranked trial had its best: one query
            rows = ctx.store.metric_values_of(conn, [t.id for _, t in ranked], metric)
            at: dict[tuple[int, float], int] = {}
            for trial_id, step, value in rows:
                at.setdefault((trial_id, value), step)
            steps = {t.index: at.get((t.id, value)) for value, t in ranked}
    entries = [
        (
            value,
            t,
            metric_values(
                spec, summaries.get(t.index, {}), t.last_value, t.best_value, t.best_step
            ),
        )
        for value, t in ranked
    ]
    return {
        "metric": metric,
        "mode": mode,
        "metrics": {m: spec.metric_mode(m) for m in metric_order(spec, _names(entries))},
        "trials": [
            {
                "name": f"{name}/{t.index}",
                "index": t.index,
                "state": t.state,
                "best": value,
                "best_step": steps.get(t.index),
                "last": (values.get(metric) or {}).get("last"),
                "metrics": values,
                "params": t.params,
            }
            for value, t, values in entries
        ],
    }


def _names(entries: list[Any]) -> set[str]:
    return {m for _, _, values in entries for m in values}


def gpus(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"op": "gpus", "args": {"sweep": "x", "order": "waste"}}`` -> one entry per trial
    with GPU samples, ranked: ``waste`` (default) puts the most wasted GPU-hours first
    (``gpu_hours x (1 - util_mean / 100)``, then idle time), ``util`` the highest mean
    utilisation first. Each entry: ``trial``, ``state``, ``gpus``, ``samples``,
    ``util_mean``/``util_peak`` (%), ``mem_peak_mib``, ``own_mem_peak_mib``,
    ``power_mean_w``, ``energy_wh``, ``gpu_hours``, ``busy_gpu_hours`` (util x time),
    ``wasted_gpu_hours``, ``idle_seconds`` (GPU-seconds of minutes wholly under the
    sweep's idle threshold), ``per_gpu``; ``util_avg``/``mem_max``/``mem_total`` as
    before. Raw samples and per-minute rollups are read together (``gpustats``)."""
    from clusterd.daemon import gpustats

    name = arg_str(args, "sweep")
    order = arg_opt_str(args, "order") or "waste"
    if order not in gpustats.ORDERS:
        raise InvalidRequest(
            f"argument 'order' must be one of {', '.join(gpustats.ORDERS)}, got {order!r}"
        )
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        threshold = gpustats.idle_threshold(sweep.spec, gpu_idle_threshold(ctx))
        rows = gpustats.ranking(conn, sweep.id, threshold, order)
    for row in rows:
        row["trial"] = f"{name}/{row['index']}"
        row["idle_threshold"] = threshold
    return rows


#: the GPU columns of ``export`` (and so of ``clusterd.client.results()``), per trial over
#: all its attempts and GPUs: mean utilisation (%), peak memory (MiB), energy (Wh)
GPU_EXPORT_COLUMNS = ("gpu_util_mean", "gpu_mem_peak_mib", "gpu_energy_wh")


def _gpu_columns(
    conn: Any, sweep: Any, default_threshold: float | None
) -> dict[int, dict[str, Any]]:
    """``{trial id: {column: value}}`` of the trials with GPU samples (one query)."""
    from sqlalchemy import select

    from clusterd.daemon import gpustats
    from clusterd.daemon.store import T

    ids = select(T.c.id).where(T.c.sweep_id == sweep.id)
    figures = gpustats.trial_gpu_figures(
        conn, ids, gpustats.idle_threshold(sweep.spec, default_threshold)
    )
    out = {}
    for trial_id, f in figures.items():
        util, energy = f["gpu_util_mean"], f["gpu_energy_wh"]
        out[trial_id] = {
            "gpu_util_mean": None if util is None else round(util, 2),
            "gpu_mem_peak_mib": f["gpu_mem_peak_mib"],
            "gpu_energy_wh": None if energy is None else round(energy, 4),
        }
    return out
