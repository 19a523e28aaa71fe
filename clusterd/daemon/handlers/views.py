"""Rows -> the JSON shapes clients see (one place, so CLI and TUI agree)."""

from __future__ import annotations

import time
from typing import Any

from clusterd import layout

__all__ = ["attempt_view", "sweep_view", "trial_view"]


def sweep_view(sweep: Any, counts: dict[str, int], best: float | None) -> dict[str, Any]:
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
        "output_dir": sweep.output_dir,
        "created_at": sweep.created_at,
        "updated_at": sweep.updated_at,
    }


def trial_view(sweep: Any, trial: Any) -> dict[str, Any]:
    return {
        "sweep": sweep.name,
        "index": trial.index,
        "name": f"{sweep.name}/{trial.index}",
        "state": trial.state,
        "attempts": trial.attempts,
        "failures": trial.failures,
        "resumes": trial.resumes,
        "last_step": trial.last_step,
        "last_value": trial.last_value,
        "best_value": trial.best_value,
        "best_step": trial.best_step,
        "reason": trial.reason,
        "stop_decision": trial.stop_decision,
        "params": trial.params,
        "updated_at": trial.updated_at,
    }


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
    }
