"""The rules that move a trial on when an attempt ends (DESIGN.md "States")."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clusterd.daemon.outcome import Ending, decide
from clusterd.spec.model import ResumePolicy, RetryPolicy

RESUME = ResumePolicy(exit_code=3, max_resumes=2)
RETRY = RetryPolicy(max_failures=1)


def status(code: int | None, **extra: object) -> dict:
    return {"exit_code": code, **extra}


def test_success_completes() -> None:
    v = decide(Ending(status(0)), RESUME, RETRY, 0, 0)
    assert (v.outcome, v.trial_state, v.failure, v.resume) == ("completed", "completed", 0, 0)


def test_resume_code_goes_back_to_pending_until_max_resumes() -> None:
    v = decide(Ending(status(3)), RESUME, RETRY, 0, 0)
    assert (v.trial_state, v.resume, v.failure) == ("pending", True, False)
    v = decide(Ending(status(3)), RESUME, RETRY, 0, 2)
    assert v.trial_state == "failed"
    assert "max_resumes (2) is used up" in v.reason


def test_failure_is_retried_then_fails() -> None:
    v = decide(Ending(status(1)), RESUME, RETRY, 0, 0)
    assert (v.trial_state, v.failure) == ("pending", True)
    assert v.reason == "exit code 1; retry 1 of 1"
    v = decide(Ending(status(1)), RESUME, RETRY, 1, 0)
    assert (v.trial_state, v.reason) == ("failed", "exit code 1")


def test_timeout_resumes_only_after_a_checkpoint() -> None:
    timed_out = status(None, signal="TERM", timed_out=True)
    assert decide(Ending(timed_out, checkpointed=True), RESUME, RETRY, 0, 0).trial_state == (
        "pending"
    )
    v = decide(Ending(timed_out), RESUME, RetryPolicy(0), 0, 0)
    assert (v.trial_state, v.reason) == ("failed", "time limit reached without a checkpoint")


def test_a_job_the_scheduler_ended_at_its_time_limit_is_a_timeout() -> None:
    """Slurm enforces ``--time`` itself: the runner only sees a TERM, sacct says TIMEOUT."""
    killed = status(None, signal="TERM")
    v = decide(Ending(killed, scheduler_reason="TIMEOUT"), RESUME, RetryPolicy(0), 0, 0)
    assert (v.outcome, v.trial_state) == ("timeout", "failed")
    assert v.reason == "time limit reached without a checkpoint"
    v = decide(Ending(killed, checkpointed=True, scheduler_reason="TIMEOUT"), RESUME, RETRY, 0, 0)
    assert (v.outcome, v.trial_state) == ("timeout", "pending")


def test_preemption_without_status_resumes_without_a_failure() -> None:
    v = decide(Ending(None, scheduler_reason="PREEMPTED"), RESUME, RetryPolicy(0), 0, 0)
    assert (v.trial_state, v.failure, v.resume) == ("pending", False, True)


def test_vanished_job_is_a_failure_with_a_reason() -> None:
    v = decide(Ending(None), RESUME, RetryPolicy(0), 0, 0)
    assert (v.outcome, v.trial_state) == ("lost", "failed")
    assert v.reason == "job vanished without writing status.json"


@given(
    code=st.one_of(st.none(), st.integers(0, 255)),
    cancel=st.booleans(),
    stop=st.booleans(),
    failures=st.integers(0, 5),
    resumes=st.integers(0, 5),
    max_failures=st.integers(0, 3),
    timed_out=st.booleans(),
    checkpointed=st.booleans(),
)
def test_verdicts_respect_the_budgets(
    code: int | None,
    cancel: bool,
    stop: bool,
    failures: int,
    resumes: int,
    max_failures: int,
    timed_out: bool,
    checkpointed: bool,
) -> None:
    ending = Ending(
        status(code, timed_out=timed_out),
        cancel_requested=cancel,
        stop_requested=stop,
        checkpointed=checkpointed,
    )
    v = decide(ending, RESUME, RetryPolicy(max_failures), failures, resumes)
    assert v.trial_state in {"pending", "completed", "failed", "cancelled", "stopped"}
    if cancel:
        assert v.trial_state == "cancelled"  # the user's word beats everything
    if v.trial_state == "pending":
        assert v.failure != v.resume  # exactly one budget pays for a resubmission
        assert not v.failure or failures < max_failures
        assert not v.resume or resumes < RESUME.max_resumes
    if code == 0 and not (cancel or stop):
        assert v.trial_state == "completed"


def test_a_job_cancelled_outside_clusterd_cancels_the_trial_with_the_reason() -> None:
    killed = status(None, signal="TERM")  # the runner saw scancel's SIGTERM
    v = decide(Ending(killed, scheduler_reason="CANCELLED by 1000"), RESUME, RETRY, 0, 0)
    assert (v.outcome, v.trial_state, v.failure) == ("cancelled", "cancelled", False)
    assert v.reason == "cancelled outside clusterd (CANCELLED by 1000)"
    done = decide(Ending(status(0), scheduler_reason="CANCELLED by 1000"), RESUME, RETRY, 0, 0)
    assert done.trial_state == "completed"  # it had finished: the exit code says so


def test_preemption_after_the_runner_saw_sigterm_resumes_without_a_failure() -> None:
    killed = status(None, signal="TERM")
    for reason in ("PREEMPTED", "REQUEUED", "NODE_FAIL"):
        v = decide(Ending(killed, scheduler_reason=reason), RESUME, RetryPolicy(0), 0, 0)
        assert (v.trial_state, v.failure, v.resume) == ("pending", False, True), reason


def test_a_kill_from_outside_says_what_the_scheduler_said() -> None:
    """An HTCondor hold kills the runner with TERM: the hold's reason is the news."""
    held = "HELD (memory usage exceeded request_memory; code 34 subcode 0)"
    v = decide(Ending(status(None, signal="TERM"), scheduler_reason=held), RESUME, RETRY, 1, 0)
    assert (v.outcome, v.trial_state) == ("failed", "failed")
    assert v.reason == f"killed by signal TERM; the scheduler says: {held}"
    # a scheduler that merely says the job ended adds nothing
    plain = Ending(status(None, signal="KILL"), scheduler_reason="FAILED")
    assert decide(plain, RESUME, RETRY, 1, 0).reason == "killed by signal KILL"
    # the runner's own exit code is never overruled by the scheduler's words
    coded = Ending(status(1), scheduler_reason=held)
    assert decide(coded, RESUME, RETRY, 1, 0).reason == "exit code 1"
