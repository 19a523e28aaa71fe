"""Rows -> the JSON shapes clients see (one place, so CLI and TUI agree)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from clusterd.node import layout
from clusterd.protocol import TRIAL_COLUMNS
from clusterd.spec.model import Metric, SweepSpec

__all__ = [
    "attempt_view",
    "metric_order",
    "metric_values",
    "sweep_spec",
    "sweep_view",
    "trial_view",
    "trial_views",
]

#: (last value, its step, lowest, highest) of one metric of one trial (``Store.metric_summaries``)
Summary = tuple[float, int, float, float]


def sweep_spec(sweep: Any) -> SweepSpec:
    """The sweep's stored spec: where each metric's direction is decided
    (``SweepSpec.metric_mode``: ``[metric]``, ``[metrics.<name>] mode``, else by name).

    A record this release cannot rebuild (written by an older one, or cut short) still
    shows: the sweep row's own metric and mode decide, the other metrics go by name."""
    try:
        return SweepSpec.from_dict(sweep.spec)
    except (KeyError, TypeError, ValueError, AttributeError):
        name = getattr(sweep, "metric_name", None)
        high = getattr(sweep, "metric_mode", None) == "max"
        mode: Literal["min", "max"] = "max" if high else "min"
        return SweepSpec(
            name=sweep.name,
            command=(),
            source="<db>",
            output_dir=str(getattr(sweep, "output_dir", "") or ""),
            metric=Metric(name, mode) if name else None,
        )


def metric_order(spec: SweepSpec, names: Iterable[str]) -> list[str]:
    """The sweep's ``[metric]`` (reported or not) first, then the others by name: every
    view's column order."""
    primary = spec.metric.name if spec.metric else None
    rest = sorted(n for n in set(names) if n != primary)
    return [primary, *rest] if primary else rest


def metric_values(
    spec: SweepSpec,
    summary: dict[str, Summary],
    last_value: float | None = None,
    best_value: float | None = None,
    best_step: int | None = None,
) -> dict[str, dict[str, Any]]:
    """``{name: {"last", "best", "step", "mode"}}`` for every metric a trial reported,
    the ``[metric]`` first and with ``best_step`` too.

    ``best`` is the lowest or highest value by the metric's own direction; ``step`` is
    the step of ``last``. The sweep's ``[metric]`` takes the trial row's own values
    (``last_value``/``best_value``: those count only the attempts a resumed trial built
    on, as ``best`` and early stopping do); the other metrics count every value stored.
    """
    primary = spec.metric.name if spec.metric else None
    out: dict[str, dict[str, Any]] = {}
    for name in metric_order(spec, summary):
        if name not in summary:  # the [metric], not reported yet
            continue
        last, step, lo, hi = summary[name]
        mode = spec.metric_mode(name)
        entry: dict[str, Any] = {
            "last": last,
            "best": hi if mode == "max" else lo,
            "step": step,
            "mode": mode,
        }
        if name == primary:  # only the [metric]'s entry has best_step
            entry["best_step"] = None
            if best_value is not None:
                entry["last"], entry["best"] = last_value, best_value
                entry["best_step"] = best_step
        out[name] = entry
    return out


def sweep_view(
    sweep: Any,
    counts: dict[str, int],
    best: float | None,
    relaunched: tuple[float, int] | None = None,
) -> dict[str, Any]:
    """One sweep; ``relaunched`` is (when it was last relaunched, trials finished since),
    so that the ETA counts only the pace of the relaunched trials."""
    total = sum(counts.values())
    finished = sum(counts.get(s, 0) for s in ("completed", "failed", "cancelled", "stopped"))
    search = sweep.spec.get("search") or {}
    method = search.get("method", "grid")
    # an adaptive method proposes trials as results arrive: `samples` is the plan
    planned = total if method in ("grid", "random") else max(total, search.get("samples") or 0)
    return {
        "name": sweep.name,
        "driver": sweep.driver,
        "state": sweep.state,
        "trials": total,
        "planned": planned,
        "search": method,
        "early_stopping": (sweep.spec.get("early_stopping") or {}).get("rule", "none"),
        "counts": counts,
        "finished": finished,
        "metric": sweep.metric_name,
        "mode": sweep.metric_mode,
        "best": best,
        "relaunched_at": relaunched[0] if relaunched else None,
        "finished_since_relaunch": relaunched[1] if relaunched else None,
        "output_dir": sweep.output_dir,
        "created_at": sweep.created_at,
        "updated_at": sweep.updated_at,
    }


def trial_views(sweep_name: str, rows: Iterable[Sequence[Any]]) -> list[dict[str, Any]]:
    """Views of trials from rows of ``protocol.TRIAL_COLUMNS`` (plain tuples: a 10,000-trial
    ``trials`` reply is built in ~50 ms this way, ~110 ms through whole ORM rows)."""
    views = []
    for row in rows:
        view = {"sweep": sweep_name, "index": row[0], "name": f"{sweep_name}/{row[0]}"}
        view.update(zip(TRIAL_COLUMNS[1:], row[1:], strict=True))
        views.append(view)
    return views


def trial_view(sweep: Any, trial: Any) -> dict[str, Any]:
    """The view of one whole trials row."""
    return trial_views(sweep.name, [tuple(getattr(trial, c) for c in TRIAL_COLUMNS)])[0]


def attempt_view(sweep: Any, index: int, attempt: Any) -> dict[str, Any]:
    started, ended = attempt.started_at, attempt.ended_at
    runtime = None
    if started:
        runtime = (ended or time.time()) - started
    return {
        "number": attempt.number,
        "state": attempt.state,
        "outcome": attempt.outcome,
        "exit_code": attempt.exit_code,
        "signal": attempt.signal,
        "job_id": attempt.job_id,
        "host": attempt.host,
        "reason": attempt.reason,
        "token": attempt.token,
        "submitted_at": attempt.submitted_at,
        "started_at": started,
        "ended_at": ended,
        "runtime": runtime,
        "dir": layout.attempt_dir(sweep.output_dir, index, attempt.number),
        # the code it ran, recorded at launch (None before per-attempt records)
        "code": {
            "git": attempt.code_commit,
            "git_dirty": attempt.code_dirty,
            "git_diff": attempt.code_diff,
        },
    }
