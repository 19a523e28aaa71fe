"""``FakeDriver``: a complete driver that runs nothing, for tests (never offered to users).

It is a real driver, registered through the plugin hook like any other, so daemon tests
exercise the same code path as production (httpx ships its mock transport the same way).
It is in no entry-point group: tests register it with
``CLUSTERD_PLUGINS=clusterd.testing.fake_driver`` (a daemon process) or
``build_plugin_manager(["clusterd.testing.fake_driver"])`` (in-process). Each job walks

    queued (``steps_queued`` polls) -> running (``steps_running`` polls) -> gone

advancing one step each time a ``poll`` call includes it. When a job leaves, the
fake writes the ``status.json`` a runner would have written (exit code from the
``exit_code`` option; ``None`` writes nothing, which looks like a job the
scheduler lost), so a sweep on the fake driver completes end to end.

The fake "scheduler" lives on the class, not the instance: a new ``FakeDriver``
(a restarted daemon) still sees the jobs the old one submitted, as a real
scheduler would. Tests read the class-level call records and call ``reset()``.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from clusterd.drivers.base import ClusterInfo, Driver, JobPhase, JobRef, JobRequest, JobStatus
from clusterd.drivers.options import Option, check_options
from clusterd.errors import DriverError
from clusterd.node.atomic import json_bytes, replace_at
from clusterd.node.status import status_path
from clusterd.plugins import DriverRegistry, hookimpl

__all__ = ["CLUSTERD_API", "FakeDriver", "clusterd_register_drivers"]

CLUSTERD_API = ">=1,<2"


def _steps(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _exit_code(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


#: settable per sweep ([drivers.fake]) and for the whole driver (its options)
OPTIONS: tuple[Option, ...] = (
    Option("steps_queued", "int >= 0", _steps, "polls a job stays queued", 1),
    Option("steps_running", "int >= 0", _steps, "polls a job stays running", 1),
    Option("exit_code", "int or null", _exit_code, "status.json's exit code (null: none)", 0),
    Option("fail_submit", "bool", lambda v: isinstance(v, bool), "refuse every submit", False),
)


@dataclass
class _FakeJob:
    """One job in the fake scheduler's memory."""

    job_id: str
    request: JobRequest
    settings: dict[str, Any]
    polls: int = 0
    cancelled: bool = False
    started_at: float | None = None
    finished: bool = False

    def step(self) -> JobPhase:
        """Advance one poll and return the phase the job is now in."""
        self.polls += 1
        queued = self.settings["steps_queued"]
        if self.cancelled or self.polls > queued + self.settings["steps_running"]:
            return "gone"
        if self.polls > queued:
            self.started_at = self.started_at or time.time()
            return "running"
        return "queued"


class FakeDriver(Driver):
    """A driver whose scheduler is a dictionary; see the module docstring."""

    name = "fake"
    poll_interval = 0.05

    # The fake scheduler and the call records, shared by every instance.
    _lock: ClassVar[threading.Lock] = threading.Lock()
    _jobs: ClassVar[dict[str, _FakeJob]] = {}
    _ids: ClassVar[itertools.count[int]] = itertools.count(1)
    submit_calls: ClassVar[int] = 0
    poll_calls: ClassVar[int] = 0
    cancel_calls: ClassVar[int] = 0
    submitted: ClassVar[list[str]] = []  # tokens, in submission order
    cancelled: ClassVar[list[str]] = []  # tokens, in cancellation order

    option_specs: ClassVar[tuple[Option, ...]] = OPTIONS

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.option_specs, self.options, "driver 'fake'", sweep=False)

    @classmethod
    def reset(cls) -> None:
        """Forget every job and call record (tests call it between cases)."""
        with cls._lock:
            cls._jobs.clear()
            cls._ids = itertools.count(1)
            cls.submit_calls = cls.poll_calls = cls.cancel_calls = 0
            cls.submitted.clear()
            cls.cancelled.clear()

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """Queue every job (a token already known keeps its job: submit is idempotent)."""
        settings = [self._settings(job) for job in jobs]
        with self._lock:
            type(self).submit_calls += 1
            if any(s["fail_submit"] for s in settings):
                raise DriverError("fake driver: submission refused (option fail_submit)")
            for job, job_settings in zip(jobs, settings, strict=True):
                if job.token not in self._jobs:
                    job_id = f"fake-{next(self._ids)}"
                    self._jobs[job.token] = _FakeJob(job_id, job, job_settings)
                    self.submitted.append(job.token)
            return {job.token: self._jobs[job.token].job_id for job in jobs}

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """Advance each listed job one step; tokens the fake never saw are gone."""
        with self._lock:
            type(self).poll_calls += 1
            return {ref.token: self._poll_one(ref) for ref in jobs}

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """Mark the jobs cancelled; they report gone (signal TERM) on the next poll."""
        with self._lock:
            type(self).cancel_calls += 1
            for ref in jobs:
                job = self._jobs.get(ref.token)
                if job is not None and not job.cancelled:
                    job.cancelled = True
                    self.cancelled.append(ref.token)

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """The fake scheduler outlives driver instances, so it finds every token it saw."""
        with self._lock:
            known = [ref.token for ref in jobs if ref.token in self._jobs]
            return {token: self._jobs[token].job_id for token in known}

    def describe_cluster(self) -> ClusterInfo:
        with self._lock:
            queue = [
                {"token": token, "job_id": job.job_id, "polls": job.polls}
                for token, job in self._jobs.items()
                if not job.finished
            ]
        return ClusterInfo(driver=self.name, queue=queue, notes=["fake driver: runs nothing"])

    def _settings(self, job: JobRequest) -> dict[str, Any]:
        """Defaults, overridden by the driver's options, overridden by the sweep's."""
        check_options(self.option_specs, job.options, f"[drivers.fake] of {job.sweep}", sweep=True)
        defaults = {spec.name: spec.default for spec in self.option_specs}
        return defaults | self.options | dict(job.options)

    def _poll_one(self, ref: JobRef) -> JobStatus:
        job = self._jobs.get(ref.token)
        if job is None:
            return JobStatus("gone", ref.job_id, reason="unknown to the fake scheduler")
        phase = job.step()
        if phase == "gone":
            reason = _gone_reason(job)
            self._finish(job)
            return JobStatus("gone", job.job_id, reason=reason, scheduler_state="DONE")
        host = socket.gethostname() if phase == "running" else None
        return JobStatus(phase, job.job_id, host=host, scheduler_state=phase.upper())

    def _finish(self, job: _FakeJob) -> None:
        """Write, once, the status.json a runner would have written (none if it never ran)."""
        if job.finished:
            return
        job.finished = True
        exit_code = job.settings["exit_code"]
        if job.started_at is None or (exit_code is None and not job.cancelled):
            return
        status = {
            "exit_code": None if job.cancelled else exit_code,
            "signal": "TERM" if job.cancelled else None,
            "started_at": job.started_at,
            "ended_at": time.time(),
            "host": socket.gethostname(),
            "pid": None,
            "timed_out": False,
            "error": None,
        }
        replace_at(status_path(job.request.attempt_dir), json_bytes(status), fsync=False)


def _gone_reason(job: _FakeJob) -> str | None:
    if not job.cancelled:
        return None
    return "cancelled" if job.started_at is not None else "cancelled before it started"


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Register ``FakeDriver`` (when a test names this module, see the module docstring)."""
    registry.add(FakeDriver)
