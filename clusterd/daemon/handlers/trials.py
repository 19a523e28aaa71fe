"""Trial-level ops: trials, show, logs."""

from __future__ import annotations

import os
from typing import Any

from clusterd.daemon import environment, gpu_idle
from clusterd.daemon.handlers.context import (
    Context,
    arg_bool,
    arg_int,
    arg_opt_str,
    arg_str,
    gpu_idle_threshold,
    split_trial,
)
from clusterd.daemon.handlers.views import (
    attempt_view,
    metric_values,
    sweep_spec,
    trial_view,
    trial_views,
)
from clusterd.daemon.store import TRIAL_STATES
from clusterd.errors import InvalidRequest, NotFound
from clusterd.node import layout
from clusterd.protocol import TRIAL_COLUMNS

__all__ = ["list_trials", "logs", "show"]


def list_trials(ctx: Context, args: dict[str, Any]) -> list[dict[str, Any]]:
    """``{"op": "trials", "args": {"sweep": "x", "state": "failed", "metrics": true}}`` ->
    trial summaries.

    With ``"metrics": true`` (``clusterctl trials`` asks for them) each carries
    ``metrics``: ``{name: {"last", "best", "step", "mode"}}`` for every metric it reported,
    best by the metric's own direction (``views.metric_values``), read in one aggregate
    query for the sweep. That query reads one row per trial and metric (``metric_summaries``,
    kept at ingest: ~0.2 s for 10,000 trials x 5 metrics); it is still asked for, not the
    default, to keep the TUI's live table reply small (it shows only the ``[metric]``).
    """
    name = arg_str(args, "sweep")
    state = arg_opt_str(args, "state")
    if state is not None and state not in TRIAL_STATES:
        raise InvalidRequest(f"unknown state {state!r}; states: {', '.join(TRIAL_STATES)}")
    with_metrics = arg_bool(args, "metrics")
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, name)
        rows = ctx.store.trial_columns(conn, sweep.id, TRIAL_COLUMNS, state)
        pending_reasons = _queue_reasons(ctx, conn, sweep.id)
        idle = {i: since for _, i, since in gpu_idle.flagged_trials(conn, sweep.id)}
        summaries = ctx.store.metric_summaries(conn, sweep.id, state) if with_metrics else {}
        gpu_util = _gpu_util(conn, sweep.id)
    views = trial_views(sweep.name, rows)
    spec = sweep_spec(sweep) if with_metrics else None
    for view in views:
        view["gpu_util"] = gpu_util.get(view["index"])  # mean GPU utilisation (%), or None
        if view["state"] in ("queued", "running") and view["index"] in pending_reasons:
            view["waiting_for"] = pending_reasons[view["index"]]
        if view["index"] in idle:  # its GPUs idle since then ([gpu] idle_warning)
            view["gpu_idle_since"] = idle[view["index"]]
        if spec is not None:
            view["metrics"] = metric_values(
                spec,
                summaries.get(view["index"], {}),
                view["last_value"],
                view["best_value"],
                view["best_step"],
            )
    return views


def _gpu_util(conn: Any, sweep_id: int, trial_id: int | None = None) -> dict[int, float]:
    """``{trial index: mean GPU utilisation}`` over raw samples and rollups (two grouped
    queries for the sweep, or for one of its trials: ``gpustats.trial_util_means``)."""
    from sqlalchemy import select

    from clusterd.daemon.gpustats import trial_util_means
    from clusterd.daemon.store import T

    ids = select(T.c.id).where(T.c.sweep_id == sweep_id)
    means = trial_util_means(conn, ids if trial_id is None else ids.where(T.c.id == trial_id))
    if not means:  # no samples (a CPU sweep): no second query
        return {}
    index = dict(conn.execute(select(T.c.id, T.c.index).where(T.c.sweep_id == sweep_id)).all())
    return {index[i]: round(v, 2) for i, v in means.items() if i in index}


def _gpu_show(
    conn: Any, sweep: Any, trial_id: int, default_threshold: float | None
) -> dict[str, Any]:
    """``show``'s GPU part: ``gpu`` (the trial over every attempt and GPU, or None) and
    ``gpu_list`` (per attempt and GPU), from ``gpustats`` (raw samples and rollups)."""
    from clusterd.daemon import gpustats

    threshold = gpustats.idle_threshold(sweep.spec, default_threshold)
    per = gpustats.attempt_gpu_figures(conn, [trial_id], threshold).get(trial_id, {})
    total = gpustats.GpuFigures()
    for f in per.values():
        total.add(f)
    return {
        "gpu": {**total.view(), "gpus": len(per), "idle_threshold": threshold} if per else None,
        "gpu_list": [
            {"attempt": attempt, "gpu": gpu, **per[(attempt, gpu)].view()}
            for attempt, gpu in sorted(per)
        ],
    }


def _queue_reasons(ctx: Context, conn: Any, sweep_id: int) -> dict[int, str]:
    return {
        a.index: a.reason
        for a in ctx.store.live_attempts(conn, sweep_id)
        if a.state in ("queued", "running") and a.reason
    }


def show(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "show", "args": {"trial": "x/3"}}`` -> params, attempts, checkpoints,
    metrics, errors and the transition log of one trial; ``gpu`` and ``gpu_list`` its GPU
    use (``_gpu_show``: mean/peak utilisation, peak and own peak memory, energy).

    ``metrics`` is what ``trials`` gives: ``{name: {"last", "step", "best", "mode"}}`` for
    every metric the trial reported (``step``: the last value's; ``best`` by the metric's
    own direction, ``mode``; the ``[metric]``'s also ``best_step``)."""
    sweep_name, index = split_trial(arg_str(args, "trial"))
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, sweep_name)
        trial = ctx.store.trial(conn, sweep, index)
        view = trial_view(sweep, trial)
        view["trial_dir"] = layout.trial_dir(sweep.output_dir, index)
        view["metric"] = sweep.metric_name
        idle = gpu_idle.flagged_trials(conn, sweep.id, index)
        if idle:  # as in ``trials``: its GPUs idle since then ([gpu] idle_warning)
            view["gpu_idle_since"] = idle[0][2]
        view["mode"] = sweep.metric_mode
        view["attempt_list"] = [
            attempt_view(sweep, index, a) for a in ctx.store.attempts(conn, trial.id)
        ]
        view["checkpoints"] = [
            {"attempt": c.attempt, "step": c.step, "path": c.path, "t": c._mapping["t"]}
            for c in ctx.store.checkpoints(conn, trial.id)
        ]
        view["gpu_util"] = _gpu_util(conn, sweep.id, trial.id).get(index)  # as ``trials``
        view.update(_gpu_show(conn, sweep, trial.id, gpu_idle_threshold(ctx)))
        summary = ctx.store.metric_summaries(conn, sweep.id, index=index).get(index, {})
        view["metrics"] = metric_values(
            sweep_spec(sweep), summary, trial.last_value, trial.best_value, trial.best_step
        )
        view["errors"] = [
            {"attempt": e.attempt, "message": e.message, "t": e._mapping["t"]}
            for e in ctx.store.trial_errors(conn, trial.id)
        ]
        view["transitions"] = [
            {
                "from": x.from_state,
                "to": x.to_state,
                "reason": x.reason,
                "attempt": x.attempt,
                "t": x._mapping["t"],  # Row.t is the tuple view
            }
            for x in ctx.store.transitions(conn, trial.id)
        ]
        view["environment"] = environment.show_view(sweep.repro)
        view["code"] = {
            k: v
            for k, v in (sweep.repro or {}).items()
            if k in ("git", "git_dirty", "git_diff", "python", "pip_freeze")
        }
    return view


def logs(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "logs", "args": {"trial": "x/3", "stderr": false, "attempt": 2}}``
    -> ``{"path": ".../attempt-2/stdout", "attempt": 2, "live": true}``; the client reads the file.
    """
    sweep_name, index = split_trial(arg_str(args, "trial"))
    stream = "stderr" if arg_bool(args, "stderr") else "stdout"
    with ctx.store.read() as conn:
        sweep = ctx.store.require_sweep(conn, sweep_name)
        trial = ctx.store.trial(conn, sweep, index)
        attempts = ctx.store.attempts(conn, trial.id)
    if not attempts:
        raise NotFound(f"trial {sweep_name}/{index} has not started yet (state {trial.state})")
    number = arg_int(args, "attempt", attempts[-1].number, minimum=1)
    chosen = next((a for a in attempts if a.number == number), None)
    if chosen is None:
        raise NotFound(f"trial {sweep_name}/{index} has no attempt {number} (1..{len(attempts)})")
    path = os.path.join(layout.attempt_dir(sweep.output_dir, index, number), stream)
    return {"path": path, "attempt": number, "live": chosen.state != "ended", "state": trial.state}


async def stop(ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
    """``{"op": "stop", "args": {"trial": "x/3"}}`` -> ``{"trial": "x/3", "stopping": true,
    "grace": 30.0}``: stop a trial early by hand. Its ``should_stop()`` turns true now, the
    attempt is terminated after the sweep's grace period, and the trial ends ``stopped``.
    """
    sweep, index = split_trial(arg_str(args, "trial"))
    return await ctx.scheduler.stop_trial(sweep, index)
