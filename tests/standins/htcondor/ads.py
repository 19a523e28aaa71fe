"""An engine job as HTCondor's job ClassAd: the attributes ``condor_q``/``condor_history``
show and constraints are evaluated against.

The attribute names and codes are HTCondor's (``JobStatus`` 1 idle, 2 running, 3 removed,
4 completed, 5 held; ``HoldReasonCode`` 47 ``JobExecuteExceeded`` with the starter's reason
text "The job exceeded allowed execute duration of HH:MM:SS", from
``src/condor_utils/condor_holdcodes.h`` and ``src/condor_utils/user_job_policy.cpp``).
"""

from __future__ import annotations

import socket
import time
from typing import Any

import classad2

__all__ = [
    "JOB_STATUS",
    "ad",
    "classad",
    "format_time_short",
    "hold_info",
    "matched",
    "matches",
    "requirements_met",
]

JOB_STATUS = {"idle": 1, "running": 2, "removed": 3, "completed": 4, "held": 5}
#: HoldReasonCode values (condor_holdcodes.h)
USER_REQUEST = 1
JOB_EXECUTE_EXCEEDED = 47
#: the engine's reason for a job it held at its time limit (tests/standins/engine.py)
ENGINE_TIME_LIMIT = "time limit"


def format_time_short(seconds: int) -> str:
    """HTCondor's ``format_time_short``: ``H:MM:SS`` ("1:00:00" in the recorded hold
    reason), ``D+HH:MM:SS`` past a day ("3+00:00:00")."""
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}+{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{hours}:{minutes:02d}:{secs:02d}"


def hold_info(job: Any) -> tuple[str, int, int]:
    """(HoldReason, HoldReasonCode, HoldReasonSubCode) of a held engine job: the engine's
    time-limit hold becomes HTCondor's allowed_execute_duration hold."""
    reason = job.hold_reason or ""
    duration = job.attrs.get("AllowedExecuteDuration")
    if reason == ENGINE_TIME_LIMIT and duration is not None:
        text = f"The job exceeded allowed execute duration of {format_time_short(duration)}"
        return text, JOB_EXECUTE_EXCEEDED, 0
    code = job.hold_code if job.hold_code is not None else USER_REQUEST
    return reason, int(code), int(job.attrs.get("HoldReasonSubCode", 0))


def machine_ad() -> classad2.ClassAd:
    """This machine as the one slot ad every job is matched against."""
    host = socket.getfqdn()
    return classad(
        {
            "Machine": host,
            "Name": f"slot1@{host}",
            "OpSys": "LINUX",
            "Arch": "X86_64",
            "Requirements": True,
        }
    )


def requirements_met(attrs: dict[str, Any], starts: int) -> bool:
    """Whether a job with these attributes, started ``starts`` times before, matches this
    machine: its ``Requirements`` evaluated by the ClassAd library, with ``TARGET`` the
    slot (so ``MY.NumJobStarts == 0`` keeps an evicted job from starting again)."""
    expr = attrs.get("Requirements")
    if not expr:
        return True
    job = classad({k: v for k, v in attrs.items() if k != "Requirements"})
    job["NumJobStarts"] = starts
    try:
        job["Requirements"] = classad2.ExprTree(str(expr))
        return bool(machine_ad().matches(job))
    except Exception:  # an expression the library cannot use matches nothing
        return False


def matched(job: Any) -> bool:
    """A job the engine started is running in HTCondor's sense only if it matched; one
    whose requirements fail stays idle (its launcher waits, writing nothing)."""
    return job.state == "running" and requirements_met(job.attrs, job.runs - 1)


def ad(job: Any) -> dict[str, Any]:
    """The job's ad as plain values (``condor_q -json`` order is by name)."""
    out: dict[str, Any] = {
        k: v for k, v in job.attrs.items() if not k.startswith("_") and v is not None
    }
    out.update(
        ClusterId=job.cluster,
        ProcId=job.index,
        GlobalJobId=f"standin#{job.cluster}.{job.index}#{int(job.submit_time)}",
        JobStatus=JOB_STATUS.get(job.state, 1),
        QDate=int(job.submit_time),
        NumJobStarts=job.runs,
        ServerTime=int(time.time()),
        Owner=out.get("Owner", job.owner),
    )
    if job.state == "running" and not matched(job):
        out.update(JobStatus=JOB_STATUS["idle"], NumJobStarts=job.runs - 1)
    elif job.state == "running":
        out["RemoteHost"] = f"slot1@{job.host}"
    if job.start_time is not None:
        out["JobCurrentStartDate"] = int(job.start_time)
    if job.state == "held":
        reason, code, sub = hold_info(job)
        out.update(HoldReason=reason, HoldReasonCode=code, HoldReasonSubCode=sub)
    if job.state == "completed":
        by_signal = job.exit_code is None
        out["ExitBySignal"] = by_signal
        if by_signal:
            out["ExitSignal"] = job.term_signal
        else:
            out["ExitCode"] = job.exit_code
        if job.end_time is not None:
            out["CompletionDate"] = int(job.end_time)
    if job.state == "removed":
        out.update(RemoveReason=f"via condor_rm (by user {job.owner})", CompletionDate=0)
    if job.state == "removed" and job.end_time is not None:
        out["EnteredCurrentStatus"] = int(job.end_time)
    else:
        stamps = [job.end_time, job.start_time, job.submit_time]
        out["EnteredCurrentStatus"] = int(next(t for t in stamps if t is not None))
    return out


def classad(values: dict[str, Any]) -> classad2.ClassAd:
    """``values`` as a real ClassAd (for constraint evaluation)."""
    result = classad2.ClassAd()
    for key, value in values.items():
        result[key] = value
    return result


def matches(constraint: classad2.ExprTree | None, values: dict[str, Any]) -> bool:
    """Whether the constraint is true for the job (undefined and errors are not)."""
    if constraint is None:
        return True
    try:
        return constraint.eval(classad(values)) is True
    except Exception:  # classad2 raises on an evaluation error: the job does not match
        return False
