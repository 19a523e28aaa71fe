"""Sweep-level ops: sweeps, cancel, relaunch, rm, export, best, gpus (submit: ``submit.py``)."""

from __future__ import annotations

import os
import time
from typing import Any

from clusterd.daemon import outputs
from clusterd.daemon.handlers.context import (
    Context,
    arg_bool,
    arg_int,
    arg_opt_str,
    arg_str,
    split_trial,
)
from clusterd.daemon.handlers.views import metric_order, metric_values, sweep_spec, sweep_view
from clusterd.daemon.store import BEST_STATES, hosts_over
from clusterd.errors import Conflict, InvalidRequest

__all__ = ["RELAUNCH_STATES", "best", "cancel", "export", "gpus", "list_sweeps", "relaunch", "rm"]

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
    the pace of a relaunched sweep's trials (its ETA)."""
    with ctx.store.read() as conn:
        counts = ctx.store.sweep_counts(conn)
        bests = ctx.store.best_counted_values(conn)
        failures = ctx.store.host_failures(conn)
        sweeps = ctx.store.list_sweeps(conn)
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

    Removes the sweep from the database. Its output dir stays on disk unless ``trash``
    is set, which moves what clusterd created for the sweep (its trial dirs, ``repro/``,
    ``.clusterd/``) to ``$CLUSTERD_HOME/trash/<name>-<date>/`` and the emptied output
    dir with it; anything else in the dir stays.

    Order with ``trash``: check first (no live trial; the dir's marker names this sweep;
    the dir is not a project root, does not hold the sweep file or CLUSTERD_HOME), then
    move, then delete the row. A failed move puts back what it moved and keeps the row;
    a failed delete (a trial went live meanwhile, the database is unreachable) moves the
    files back: the sweep is in the database exactly when its files are in place. A
    daemon killed between the move and the delete leaves the row and the files in the
    trash; `clusterctl rm NAME` then removes the row.
    """
    name = arg_str(args, "sweep")
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
    if not os.path.isdir(sweep.output_dir):
        ctx.store.delete_sweep(name)
        return result
    problem = outputs.trash_problem(
        sweep.output_dir, name, sweep.uid, ctx.store.database_id(), sweep.source, str(ctx.home)
    )
    if problem:
        raise Conflict(problem)
    trash = ctx.home / "trash"
    trash.mkdir(mode=0o700, exist_ok=True)
    dest = outputs.fresh_dir(str(trash / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"))
    names = [*outputs.OWN_ENTRIES, *(str(i) for i in indices)]
    try:
        moved = outputs.move_to_trash(sweep.output_dir, names, dest)
    except BaseException:
        outputs.remove_if_empty(dest)
        raise
    try:
        ctx.store.delete_sweep(name)
    except BaseException:
        outputs.move_back(moved)
        outputs.remove_if_empty(dest)
        raise
    result["trashed_to"] = dest
    try:
        os.rmdir(sweep.output_dir)
    except OSError:
        result["kept"] = sorted(os.listdir(sweep.output_dir))[:20]
    return result


def export(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "export", "args": {"sweep": "x"}}`` -> ``{"columns": [...], "rows": [{...}],
    "metrics": {"val_loss": "min", "val_acc": "max"}, "params": [...], "swept": [...]}``

    One row per trial: state, counts, ``last_step``, for every metric the sweep's trials
    reported ``<metric>_last`` and ``<metric>_best`` (best by the metric's own direction,
    ``metrics`` says which; the ``[metric]`` first), ``best_step`` (of the ``[metric]``),
    ``stopped_at_step``, runtime, the code it ran, then every parameter as a column: the
    swept ones (they vary across the trials) first. A parameter named like another
    column is ``param.<name>``. All metric values come from one query for the sweep.
    """
    name = arg_str(args, "sweep")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        trials = ctx.store.trials(conn, sweep.id)
        runtimes = ctx.store.runtimes(conn, sweep.id)
        code = ctx.store.last_attempt_code(conn, sweep.id)
        summaries = ctx.store.metric_summaries(conn, sweep.id)
    spec = sweep_spec(sweep)
    names = metric_order(
        spec, {n for s in summaries.values() for n in s} | {sweep.metric_name} - {None}
    )
    metric_cols = [f"{m}_{k}" for m in names for k in ("last", "best")]
    head = ["trial", "index", "state", "attempts", "failures", "resumes", "last_step"]
    tail = ["best_step", "stopped_at_step", "runtime_s", "git", "git_dirty", "reason"]
    fixed = head + metric_cols + tail
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
    """``{"op": "gpus", "args": {"sweep": "x"}}`` -> per trial and GPU: samples, mean
    utilisation, peak memory."""
    name = arg_str(args, "sweep")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        rows = ctx.store.gpu_summary(conn, sweep.id)
    return [
        {
            "trial": f"{name}/{r.index}",
            "gpu": r.gpu,
            "samples": r.samples,
            "util_avg": r.util_avg,
            "mem_max": r.mem_max,
            "mem_total": r.mem_total,
        }
        for r in rows
    ]
