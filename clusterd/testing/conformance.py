"""The driver conformance suite: subclass ``DriverConformance`` in a test module.

::

    import pytest
    from clusterd.testing import DriverConformance, SchedulerSetup

    class TestMyDriver(DriverConformance):
        driver_name = "mydriver"                 # as registered
        status_commands = ("myq",)               # the commands that report job status
        plugins = ("mypackage.driver",)          # modules to register (CLUSTERD_PLUGINS)

        @pytest.fixture
        def scheduler(self):
            ...                                  # start or find the scheduler
            yield SchedulerSetup(sweep_options={"poll_interval": 1})

Every check runs the real daemon (``clusterd start`` in its own ``CLUSTERD_HOME``) on
small sweeps and looks only at what a user would see -- ``clusterctl`` output, the
attempt directories, the processes on the machine -- plus what the kit's instruments
log (the driver's calls in the daemon, the status commands it ran). A check that cannot
apply to a driver is skipped with the reason, never passed silently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import pytest

from clusterd.drivers.base import JobRef, JobRequest
from clusterd.errors import DriverError
from clusterd.spec.model import Resources
from clusterd.testing.harness import Kit, SchedulerSetup
from clusterd.testing.procs import processes_with
from clusterd.testing.sweeps import runs_of
from clusterd.testing.waiting import wait_for

__all__ = ["CHECKS", "DriverConformance"]

#: every check of the kit, as docs/plugins.md lists them
CHECKS = (
    "test_batch_submit_poll_and_complete",
    "test_one_status_call_per_poll",
    "test_cancel_ends_jobs_and_leaves_no_process",
    "test_recovery_by_token_after_crash_between_submit_and_commit",
    "test_resume_continues_in_a_new_attempt",
    "test_retry_runs_a_failing_trial_again",
    "test_time_limit_ends_the_trial",
    "test_garbage_status_output_is_a_driver_error",
    "test_daemon_survives_garbage_status_output",
)


class DriverConformance:
    """The checks every driver passes; set the class attributes, provide ``scheduler``."""

    #: the driver's ``name``, as registered
    driver_name: ClassVar[str]
    #: the scheduler commands that report job status, as found on PATH (counted, and
    #: made to answer garbage); empty for drivers without commands: those checks skip
    status_commands: ClassVar[tuple[str, ...]] = ()
    #: most status commands one poll may run, whatever the number of jobs (default: each
    #: status command once, e.g. squeue then sacct for the jobs squeue no longer lists)
    max_status_calls_per_poll: ClassVar[int | None] = None
    #: plugin modules to register besides the entry points (``CLUSTERD_PLUGINS``)
    plugins: ClassVar[tuple[str, ...]] = ()
    #: every sweep's ``[resources]`` (small: one test cluster runs them all)
    resources: ClassVar[dict[str, Any]] = {"cpus": 1}
    #: how many trials the batch checks run at once
    batch_trials: ClassVar[int] = 4
    #: ``resources.time`` of the time-limit check, and how long the trial may take to end
    time_limit: ClassVar[str] = "00:00:03"
    time_limit_timeout: ClassVar[float] = 60.0
    #: how long a small sweep may take from submit to its end
    sweep_timeout: ClassVar[float] = 120.0

    # -- fixtures -------------------------------------------------------------------

    @pytest.fixture
    def scheduler(self) -> Iterator[SchedulerSetup]:
        """Start (or find) the scheduler and say how to use it; override it unless the
        driver needs nothing (the local driver)."""
        yield SchedulerSetup()

    @pytest.fixture
    def kit(self, scheduler: SchedulerSetup | dict[str, Any], tmp_path: Path) -> Iterator[Kit]:
        setup = scheduler if isinstance(scheduler, SchedulerSetup) else SchedulerSetup(scheduler)
        kit = Kit(self.driver_name, setup, self.status_commands, self.plugins, tmp_path)
        with pytest.MonkeyPatch.context() as patch:
            for key, value in kit.process_env.items():
                patch.setenv(key, value)
            try:
                yield kit
            finally:
                kit.close()

    # -- helpers --------------------------------------------------------------------

    def _need_status_commands(self) -> None:
        if not self.status_commands:
            pytest.skip(
                f"driver {self.driver_name!r} names no status_commands: it asks no scheduler "
                "command about its jobs, so there is nothing to count or to garble"
            )

    def _sweep(self, kit: Kit, name: str, mode: str, trials: int = 1, **kw: Any) -> Path:
        kw.setdefault("resources", self.resources)
        return kit.sweep(name, mode, trials, **kw)

    def _wait_running(self, kit: Kit, name: str, count: int) -> None:
        def running() -> bool:
            return sum(t["state"] == "running" for t in kit.daemon.trials(name)) >= count

        wait_for(running, self.sweep_timeout, f"{count} trial(s) of {name} to run")

    # -- the checks -----------------------------------------------------------------

    def test_batch_submit_poll_and_complete(self, kit: Kit) -> None:
        """A sweep of several trials runs to completion, each trial exactly once, its
        jobs handed to ``submit`` together and polled together."""
        n = self.batch_trials
        kit.start()
        kit.submit(self._sweep(kit, "batch", "ok", n))
        trials = kit.daemon.wait_sweep_done("batch", self.sweep_timeout)
        assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * n, trials
        assert sorted(runs_of(kit.work, "batch")) == [(x, 1) for x in range(1, n + 1)]
        events = kit.events()
        assert max(map(len, events.submits), default=0) > 1, (
            f"every submit call carried one job: {events.submits}"
        )
        assert not events.submitted_twice()
        assert events.polls and max(p.jobs for p in events.polls) > 1, (
            f"no poll covered several jobs: {[p.jobs for p in events.polls]}"
        )

    def test_one_status_call_per_poll(self, kit: Kit) -> None:
        """However many jobs a poll covers, it runs each status command at most once."""
        self._need_status_commands()
        n = self.batch_trials
        most = self.max_status_calls_per_poll or len(self.status_commands)
        kit.start()
        params = _waiting(kit)
        kit.submit(self._sweep(kit, "count", "wait", n, params=params))
        wait_for(partial(_polls_of_many, kit, 3), self.sweep_timeout, "3 polls of several jobs")
        Path(params["release"]).touch()
        kit.daemon.wait_sweep_done("count", self.sweep_timeout)
        polls = [p for p in kit.events().polls if p.outcome == "ok"]
        many = [p for p in polls if len(p.commands) > most]
        assert not many, f"polls that ran more than {most} status command(s): {many}"

    def test_cancel_ends_jobs_and_leaves_no_process(self, kit: Kit) -> None:
        """Cancelling a sweep ends its jobs -- running and queued -- in the scheduler,
        and no process of any attempt stays behind."""
        kit.start()
        kit.submit(self._sweep(kit, "cancel", "wait", 3, params=_waiting(kit)))
        self._wait_running(kit, "cancel", 1)
        wait_for(lambda: all(r.job_id for r in kit.refs("cancel", 3)), 30, "every job id")
        refs = kit.refs("cancel", 3)
        tokens = [r.token for r in refs]
        wait_for(lambda: processes_with(tokens), 30, "a process of a running attempt")
        kit.daemon.ctl("cancel", "cancel")
        trials = kit.daemon.wait_sweep_done("cancel", self.sweep_timeout)
        assert [t["state"] for t in trials] == ["cancelled"] * 3, trials
        wait_for(lambda: not processes_with(tokens), 60, f"no process carrying {tokens}")
        driver = kit.in_process_driver()
        try:
            statuses = wait_for(lambda: _all_gone(driver.poll(refs)), 60, "the jobs to be gone")
        finally:
            driver.close()
        assert set(statuses) == set(tokens)

    def test_recovery_by_token_after_crash_between_submit_and_commit(self, kit: Kit) -> None:
        """SIGKILLed right after ``submit`` returned -- the jobs are in the scheduler, the
        database never learned their ids -- the restarted daemon finds them by token:
        no job is submitted twice, no trial is lost or run twice."""
        kit.start(crash_after_submit=True)
        kit.submit(self._sweep(kit, "crash", "ok", 2))
        wait_for(lambda: kit.crash_marker.exists() and not kit.daemon.running(), 60, "the kill")
        kit.daemon.start()
        trials = kit.daemon.wait_sweep_done("crash", self.sweep_timeout)
        twice = kit.events().submitted_twice()
        assert not twice, f"submitted twice (did find() find them?): {twice}"
        assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 2, (
            f"the trials did not complete in their first attempt (did find() find them?): {trials}"
        )
        assert sorted(runs_of(kit.work, "crash")) == [(1, 1), (2, 1)]

    def test_resume_continues_in_a_new_attempt(self, kit: Kit) -> None:
        """A trial exiting with the resume code continues in a second attempt, which sees
        the first one's checkpoint."""
        kit.start()
        kit.submit(self._sweep(kit, "resume", "resume", tables={"resume": {"exit_code": 3}}))
        (trial,) = kit.daemon.wait_sweep_done("resume", self.sweep_timeout)
        assert (trial["state"], trial["attempts"], trial["resumes"]) == ("completed", 2, 1)
        outcomes = [a["outcome"] for a in kit.daemon.attempts("resume", 0)]
        assert outcomes == ["resume", "completed"]

    def test_retry_runs_a_failing_trial_again(self, kit: Kit) -> None:
        """``[retry] max_failures = 1``: a trial failing once completes on its second
        attempt; one failing every time ends failed after two."""
        kit.start()
        kit.submit(self._sweep(kit, "retry", "retry", 2, tables={"retry": {"max_failures": 1}}))
        trials = kit.daemon.wait_sweep_done("retry", self.sweep_timeout)
        got = [(t["state"], t["attempts"]) for t in trials]
        assert got == [("completed", 2), ("failed", 2)], trials
        codes = [[a["exit_code"] for a in kit.daemon.attempts("retry", i)] for i in (0, 1)]
        assert codes == [[1, 0], [1, 1]]

    def test_time_limit_ends_the_trial(self, kit: Kit) -> None:
        """A trial running past ``resources.time`` is ended -- by the scheduler where the
        driver says it enforces the limit, by the runner otherwise -- as a timeout."""
        kit.start()
        path = self._sweep(
            kit,
            "limit",
            "wait",
            params=_waiting(kit),
            resources={**self.resources, "time": self.time_limit},
            tables={"retry": {"max_failures": 0}},
        )
        kit.submit(path)
        (trial,) = kit.daemon.wait_sweep_done("limit", self.time_limit_timeout)
        (attempt,) = kit.daemon.attempts("limit", 0)
        assert trial["state"] == "failed", trial
        assert attempt["outcome"] == "timeout", attempt
        token = attempt["token"]
        wait_for(lambda: not processes_with([token]), 30, f"no process carrying {token}")

    def test_garbage_status_output_is_a_driver_error(self, kit: Kit, tmp_path: Path) -> None:
        """A status command answering garbage, or output cut short, makes ``poll`` raise
        ``DriverError`` -- never another exception, never "the job is gone"."""
        self._need_status_commands()
        assert kit.commands is not None
        driver = kit.in_process_driver()
        adir = tmp_path / "direct" / "attempt-1"
        adir.mkdir(parents=True)
        release = tmp_path / "release"
        job = JobRequest(
            token=f"cd-kit-garbage-0-1-{os.getpid()}",
            sweep="kit-garbage",
            trial_index=0,
            attempt=1,
            attempt_dir=str(adir),
            argv=_waiter(release),
            resources=Resources(cpus=1, memory_mb=100),
            options=kit.job_options(driver),
        )
        ref = JobRef(job.token, None, job.attempt_dir)
        try:
            ref = JobRef(job.token, driver.submit([job])[job.token], job.attempt_dir)
            assert driver.poll([ref])[job.token].phase in ("queued", "running")
            for mode in ("garbage", "truncated"):
                kit.commands.answer(mode)
                with pytest.raises(DriverError):
                    driver.poll([ref])
            kit.commands.answer("")
            assert driver.poll([ref])[job.token].phase in ("queued", "running")
        finally:
            kit.commands.answer("")
            release.touch()
            driver.cancel([ref])
            driver.close()

    def test_daemon_survives_garbage_status_output(self, kit: Kit) -> None:
        """While the status commands answer garbage the daemon stays up and keeps the
        trials; once they answer again the sweep completes."""
        self._need_status_commands()
        assert kit.commands is not None
        kit.start()
        params = _waiting(kit)
        kit.submit(self._sweep(kit, "garbage", "wait", 2, params=params))
        self._wait_running(kit, "garbage", 1)
        for mode in ("garbage", "truncated"):
            failed = _failed_polls(kit)
            kit.commands.answer(mode)
            wait_for(partial(_more_failed_polls, kit, failed), 120, f"a poll on {mode} output")
            assert kit.daemon.running(), kit.daemon.log_tail()
            states = {t["state"] for t in kit.daemon.trials("garbage")}
            assert states <= {"queued", "running"}, states
        kit.commands.answer("")
        Path(params["release"]).touch()
        trials = kit.daemon.wait_sweep_done("garbage", self.sweep_timeout + 300)
        assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 2, trials


def _waiting(kit: Kit) -> dict[str, Any]:
    """Params of a "wait" trial: it runs until the kit touches ``release`` (or 10 min)."""
    return {"release": str(kit.work / "release"), "seconds": 600}


def _waiter(release: Path) -> tuple[str, ...]:
    """argv of a job that runs until ``release`` exists (or 10 min)."""
    code = (
        "import os, sys, time\n"
        "end = time.monotonic() + 600\n"
        "while not os.path.exists(sys.argv[1]) and time.monotonic() < end: time.sleep(0.2)\n"
    )
    return (sys.executable, "-c", code, str(release))


def _failed_polls(kit: Kit) -> int:
    return sum(p.outcome == "error" for p in kit.events().polls)


def _polls_of_many(kit: Kit, count: int) -> bool:
    """At least ``count`` polls covered several jobs and returned."""
    return sum(p.jobs >= 2 and p.outcome == "ok" for p in kit.events().polls) >= count


def _more_failed_polls(kit: Kit, before: int) -> bool:
    return _failed_polls(kit) > before


def _all_gone(statuses: dict[str, Any]) -> dict[str, Any] | None:
    return statuses if all(s.phase == "gone" for s in statuses.values()) else None
