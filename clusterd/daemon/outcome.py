"""What happens to a trial when one of its attempts ends (a pure function).

Inputs are the runner's ``status.json`` (the truth for the exit code), what the
scheduler said about the job (the truth for a job that never started or was
killed) and the sweep's resume/retry policy. Keeping this pure makes every rule
of DESIGN.md's "States" section testable without a daemon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from clusterd.spec.model import ResumePolicy, RetryPolicy

__all__ = ["Ending", "Verdict", "decide"]

#: scheduler reasons after which a job is resubmitted without counting a failure
PREEMPTION_REASONS = frozenset({"PREEMPTED", "NODE_FAIL", "REQUEUED", "BOOT_FAIL"})


@dataclass(frozen=True)
class Ending:
    """Everything known about an attempt that ended."""

    status: dict[str, Any] | None  # status.json, None if the runner never wrote it
    cancel_requested: bool = False
    stop_requested: bool = False
    stop_reason: str | None = None  # the stop decision's rule and reason, for the trial's note
    checkpointed: bool = False  # a checkpoint event was recorded during this attempt
    scheduler_reason: str | None = None  # e.g. "PREEMPTED"


@dataclass(frozen=True)
class Verdict:
    outcome: str  # completed | failed | resume | cancelled | stopped | lost | timeout
    trial_state: str  # pending (resubmit) or a final state
    reason: str
    failure: bool = False  # counts against retry.max_failures
    resume: bool = False  # counts against resume.max_resumes


def decide(
    ending: Ending,
    resume: ResumePolicy,
    retry: RetryPolicy,
    failures: int,
    resumes: int,
) -> Verdict:
    """Decide the attempt's outcome and the trial's next state."""
    status = ending.status
    if ending.cancel_requested:
        return Verdict("cancelled", "cancelled", "cancelled by the user")
    if ending.stop_requested:
        why = f" ({ending.stop_reason})" if ending.stop_reason else ""
        return Verdict("stopped", "stopped", f"stopped early{why}")
    outside = _cancelled_outside(ending)
    if outside and (status is None or status.get("exit_code") != 0):
        return Verdict("cancelled", "cancelled", f"cancelled outside clusterd ({outside})")
    if status is None:
        return _without_status(ending, resume, retry, failures, resumes)
    code = status.get("exit_code")
    if code == 0:
        return Verdict("completed", "completed", "exit code 0")
    if code is not None and code == resume.exit_code:
        return _resume(f"exited with the resume code {code}", resume, resumes, "resume")
    reason = ending.scheduler_reason
    if reason and reason.upper() in PREEMPTION_REASONS:
        # the scheduler killed it (the runner saw only a SIGTERM): its word decides
        return _resume(f"job ended by the scheduler ({reason})", resume, resumes, "lost")
    # the runner's own deadline, or the scheduler's (Slurm ends the job TIMEOUT itself)
    if status.get("timed_out") or (reason or "").upper().startswith("TIMEOUT"):
        if ending.checkpointed:
            return _resume("time limit reached after a checkpoint", resume, resumes, "timeout")
        return _failure("time limit reached without a checkpoint", retry, failures, "timeout")
    return _failure(_describe_exit(status, reason), retry, failures, "failed")


def _cancelled_outside(ending: Ending) -> str | None:
    """The scheduler's word ("CANCELLED by 1000") if someone cancelled the job behind
    clusterd's back (``scancel``): the trial is cancelled, not retried."""
    reason = ending.scheduler_reason or ""
    return reason if reason.upper().startswith("CANCELLED") else None


def _without_status(
    ending: Ending, resume: ResumePolicy, retry: RetryPolicy, failures: int, resumes: int
) -> Verdict:
    reason = ending.scheduler_reason
    if reason and reason.upper() in PREEMPTION_REASONS:
        return _resume(f"job ended by the scheduler ({reason})", resume, resumes, "lost")
    why = f"job ended ({reason}) " if reason else "job vanished "
    return _failure(why + "without writing status.json", retry, failures, "lost")


def _resume(reason: str, resume: ResumePolicy, resumes: int, outcome: str) -> Verdict:
    if resumes >= resume.max_resumes:
        return Verdict(
            outcome, "failed", f"{reason}, but resume.max_resumes ({resume.max_resumes}) is used up"
        )
    return Verdict(outcome, "pending", f"{reason}; resuming ({resumes + 1})", resume=True)


def _failure(reason: str, retry: RetryPolicy, failures: int, outcome: str) -> Verdict:
    if failures < retry.max_failures:
        return Verdict(
            outcome,
            "pending",
            f"{reason}; retry {failures + 1} of {retry.max_failures}",
            failure=True,
        )
    return Verdict(outcome, "failed", reason, failure=True)


#: scheduler words that add nothing to "killed by signal X" (the job merely ended)
_PLAIN_ENDINGS = ("COMPLETED", "FAILED")


def _describe_exit(status: dict[str, Any], scheduler_reason: str | None = None) -> str:
    """The runner's word; for a kill from outside, the scheduler's reason beside it (an
    HTCondor hold, a Slurm OUT_OF_MEMORY): the signal alone does not say why."""
    if status.get("error"):
        return str(status["error"])
    if status.get("exit_code") is None and status.get("signal"):
        killed = f"killed by signal {status['signal']}"
        why = (scheduler_reason or "").strip()
        if why and not why.upper().startswith(_PLAIN_ENDINGS):
            return f"{killed}; the scheduler says: {why}"
        return killed
    return f"exit code {status.get('exit_code')}"
