"""Engine jobs as PBS sees them: state letters, exit statuses, comments, hold types.

* PBS Pro: a plain job Q/H/R, then F (history, ``-x``); a subjob Q/H/R, then X; the array
  parent Q (no subjob started), B (begun), H (all held), F (every subjob done).
* Torque: Q/H/R, then C (completed; Torque keeps them ``keep_completed`` seconds, the
  stand-in for good).
* ``Exit_status``: the script's exit code; killed by a signal 256 + signal (both PBSes,
  e.g. 271 after ``qdel``'s SIGTERM); over ``walltime`` PBS Pro's JOB_EXEC_KILL_WALLTIME
  -29 (OpenPBS ``src/include/job.h``), Torque's JOB_EXEC_OVERLIMIT_WT -11 (Torque
  ``src/include/pbs_job.h``); never run (deleted while queued): none.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from tests.standins.engine import Job

__all__ = [
    "Group",
    "ended",
    "exit_status",
    "hold_types",
    "parent_state",
    "pbs_time",
    "pro_state",
    "torque_state",
]


@dataclass(frozen=True)
class Group:
    """What ``qstat`` lists of one submission: ``kind`` "job" (a plain job), "array" (the
    parent only), "array+subjobs" (``-t``) or "subjob" (the subjobs in ``jobs`` alone)."""

    jobs: Sequence[Job]
    kind: str


SUBMITTED_ON_HOLD = "submitted on hold"  # the engine's reason for ``qsub -h``
WALLTIME_EXIT = {"pbspro": -29, "torque": -11}


def ended(job: Job) -> bool:
    return job.state in ("completed", "removed")


def pro_state(job: Job, subjob: bool) -> str:
    return {"idle": "Q", "held": "H", "running": "R"}.get(job.state, "X" if subjob else "F")


def torque_state(job: Job) -> str:
    return {"idle": "Q", "held": "H", "running": "R"}.get(job.state, "C")


def parent_state(jobs: Sequence[Job]) -> str:
    """A PBS Pro array's own state, from its subjobs'."""
    if all(ended(job) for job in jobs):
        return "F"
    if any(job.state == "running" or ended(job) or job.runs for job in jobs):
        return "B"
    if all(job.state == "held" for job in jobs):
        return "H"
    return "Q"


def exit_status(job: Job, flavor: str) -> int | None:
    """The ``Exit_status`` of an ended job (None while it runs, or if it never ran)."""
    if not ended(job) or job.start_time is None:
        return None
    if job.end_reason == "time limit":
        return WALLTIME_EXIT[flavor]
    if job.exit_code is not None:
        return job.exit_code
    return 256 + (job.term_signal or 15)


def hold_types(job: Job) -> str:
    """``u`` for ``qsub -h``, ``s`` (system) for a hold the server put on it, ``n`` none."""
    if job.state != "held":
        return "n"
    return "u" if job.hold_reason == SUBMITTED_ON_HOLD else "s"


def pbs_time(epoch: float | None) -> str:
    """PBS Pro's ``ctime``-style time (``Mon Mar  4 10:00:00 2024``)."""
    return time.asctime(time.localtime(epoch if epoch is not None else time.time()))
