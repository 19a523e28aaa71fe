"""An attempt's start and end, from the runner's own clock (docs/runtime.md).

The scheduler only sees a job's state when it polls: "running" can first be seen
seconds (Slurm: a whole poll interval) after the runner started, so an attempt's
runtime counted from that poll reads "ran 0s" for a 28 s attempt. The runner writes
its start time in ``runner.json`` as it starts the command and both times in
``status.json`` at the end; the scheduler's times are only the fallback.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from clusterd.node import names

__all__ = ["ended_times", "runner_started_at"]


def _time(value: Any) -> float | None:
    if type(value) in (int, float) and math.isfinite(value) and value > 0:
        return float(value)
    return None


def runner_started_at(attempt_dir: str) -> float | None:
    """``started_at`` of the attempt's ``runner.json``; None if absent or unusable."""
    try:
        with open(os.path.join(attempt_dir, names.RUNNER_JSON), "rb") as fh:
            data = json.loads(fh.read(1 << 16))
    except (OSError, ValueError):
        return None
    return _time(data.get("started_at")) if isinstance(data, dict) else None


def ended_times(
    status: dict[str, Any] | None, attempt_dir: str, seen_running_at: float | None, now: float
) -> tuple[float | None, float]:
    """(started_at, ended_at) of an ended attempt: status.json's pair when it has both
    (one clock, so the runtime is right even if the node's clock is off), else the
    runner's start and the daemon's now, else what the scheduler saw."""
    status = status or {}
    started, ended = _time(status.get("started_at")), _time(status.get("ended_at"))
    if started is not None and ended is not None and ended >= started:
        return started, ended
    started = started or runner_started_at(attempt_dir) or seen_running_at
    return started, ended or now
