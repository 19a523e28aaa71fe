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
    arg_str,
    split_trial,
)
from clusterd.daemon.handlers.views import sweep_view
from clusterd.daemon.store import hosts_over
from clusterd.errors import Conflict, InvalidRequest

__all__ = ["best", "cancel", "export", "gpus", "list_sweeps", "relaunch", "rm"]


def list_sweeps(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"op": "sweeps"}`` -> one entry per sweep with counts per state and best value."""
    with ctx.store.read() as conn:
        counts = ctx.store.sweep_counts(conn)
        bests = ctx.store.best_values(conn)
        failures = ctx.store.host_failures(conn)
        views = []
        for s in ctx.store.list_sweeps(conn):
            view = sweep_view(s, counts.get(s.id, {}), bests.get(s.id))
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

    ``which`` is ``failed`` (failed trials) or ``all`` (every finished trial).
    """
    name = arg_str(args, "sweep")
    which = arg_str(args, "which", "failed")
    states = {
        "failed": ("failed",),
        "all": ("failed", "completed", "cancelled", "stopped"),
    }.get(which)
    if states is None:
        raise InvalidRequest("argument 'which' must be 'failed' or 'all'")
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
    """``{"op": "export", "args": {"sweep": "x"}}`` -> ``{"columns": [...], "rows": [{...}]}``

    One row per trial: state, counts, the metric's last and best values,
    ``stopped_at_step``, runtime, the code it ran, and every parameter as a column.
    """
    name = arg_str(args, "sweep")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        trials = ctx.store.trials(conn, sweep.id)
        runtimes = ctx.store.runtimes(conn, sweep.id)
        code = ctx.store.last_attempt_code(conn, sweep.id)
    metric = sweep.metric_name or "metric"
    fixed = [
        "trial",
        "index",
        "state",
        "attempts",
        "failures",
        "resumes",
        "last_step",
        f"{metric}_last",
        f"{metric}_best",
        "best_step",
        "stopped_at_step",
        "runtime_s",
        "git",
        "git_dirty",
        "reason",
    ]
    param_names: list[str] = []
    for t in trials:
        param_names.extend(k for k in t.params if k not in param_names)
    columns = fixed + [p if p not in fixed else f"param.{p}" for p in param_names]
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
        row = dict(
            zip(
                fixed,
                [
                    f"{name}/{t.index}",
                    t.index,
                    t.state,
                    t.attempts,
                    t.failures,
                    t.resumes,
                    t.last_step,
                    t.last_value,
                    t.best_value,
                    t.best_step,
                    stop.get("step") if t.state == "stopped" else None,
                    round(runtimes.get(t.index, 0.0), 3),
                    commit,
                    dirty,
                    t.reason,
                ],
                strict=True,
            )
        )
        for p in param_names:
            row[p if p not in fixed else f"param.{p}"] = t.params.get(p)
        rows.append(row)
    return {"columns": columns, "rows": rows}


def best(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "best", "args": {"sweep": "x", "n": 5, "all": false}}`` -> ranked trials.

    Ranks completed trials (every trial with a value if ``all``) by their best
    value of the sweep's metric, in the metric's direction.
    """
    name = arg_str(args, "sweep")
    n = arg_int(args, "n", 5, minimum=1)
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        if not sweep.metric_name:
            raise InvalidRequest(f"sweep {name!r} has no [metric]; nothing to rank by")
        trials = ctx.store.trials(conn, sweep.id, None if arg_bool(args, "all") else "completed")
    ranked = sorted(
        (t for t in trials if t.best_value is not None),
        key=lambda t: t.best_value,
        reverse=sweep.metric_mode == "max",
    )[:n]
    return {
        "metric": sweep.metric_name,
        "mode": sweep.metric_mode,
        "trials": [
            {
                "name": f"{name}/{t.index}",
                "index": t.index,
                "state": t.state,
                "best": t.best_value,
                "best_step": t.best_step,
                "last": t.last_value,
                "params": t.params,
            }
            for t in ranked
        ],
    }


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
