"""An example third-party clusterd driver: each attempt a detached process on this machine.

Small on purpose (docs/plugins.md walks through it), yet complete: it passes the
conformance kit (``tests/test_conformance.py``). What it shows:

* ``submit`` writes a write-ahead ``job.json`` per attempt, starts the runner in its own
  session with ``CLUSTERD_JOB_TOKEN`` in its environment, and records the job id;
* ``poll`` asks one status command (``ps``) about every job at once, and turns output it
  cannot read into a ``DriverError`` (the daemon then asks again later);
* ``cancel`` signals each job's whole process group; ``find`` reads ``job.json`` back.

No queue and no capacity: every job starts at once (use the built-in ``local`` driver
for real work on one machine). ``resources.time`` is left to the runner
(``enforces_time_limit`` is False).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clusterd.drivers.base import Driver, JobRef, JobRequest, JobStatus
from clusterd.drivers.jobfile import JOB_FILE, read_job_file, write_json_atomic
from clusterd.drivers.options import Option, check_options, positive_number
from clusterd.errors import DriverError
from clusterd.plugins import DriverRegistry, hookimpl

#: the plugin API versions this plugin works with (clusterd.plugins.API_VERSION)
CLUSTERD_API = ">=1.0,<2"

#: process states ``ps`` prints for a process that no longer runs
_ENDED = ("Z", "X")


class DetachedDriver(Driver):
    """Attempts as detached sessions; a job id is the session leader's pid."""

    name = "detached"
    poll_interval = 2.0
    option_specs = (
        Option(
            "ps_timeout",
            "a number of seconds > 0",
            positive_number,
            "seconds one ps call may take",
            default=10,
            sweep=False,
        ),
    )

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.option_specs, self.options, "detached driver options", sweep=False)
        self._timeout = float(self.options.get("ps_timeout", 10))
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # reaped by poll

    def submit(self, jobs: Sequence[JobRequest]) -> dict[str, str]:
        """Start every job; a job that cannot start is left out (it is offered again)."""
        started: dict[str, str] = {}
        for job in jobs:
            try:
                started[job.token] = self._start(job)
            except OSError as exc:
                if not started and job is jobs[-1]:
                    raise DriverError(f"cannot start {job.argv[0]}: {exc}") from exc
        return started

    def _start(self, job: JobRequest) -> str:
        record = Path(job.attempt_dir) / JOB_FILE
        write_json_atomic(record, {"token": job.token, "state": "starting"})
        env = {**os.environ, **job.env, "CLUSTERD_JOB_TOKEN": job.token}
        with open(Path(job.attempt_dir) / "driver.log", "ab") as log:
            proc = subprocess.Popen(  # argv as given, never through a shell
                job.argv,
                cwd=job.attempt_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        write_json_atomic(record, {"token": job.token, "state": "running", "job_id": str(proc.pid)})
        return str(proc.pid)

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """One ``ps`` call for every job: running while its session leader runs."""
        for pid, proc in list(self._children.items()):
            if proc.poll() is not None:  # reap our own children, or they stay zombies
                del self._children[pid]
        states = parse_ps(self._ps())
        result: dict[str, JobStatus] = {}
        for job in jobs:
            state = states.get(int(job.job_id)) if job.job_id else None
            if state is None or state.startswith(_ENDED):
                result[job.token] = JobStatus("gone", job.job_id, scheduler_state=state)
            else:
                result[job.token] = JobStatus("running", job.job_id, scheduler_state=state)
        return result

    def _ps(self) -> str:
        try:
            done = subprocess.run(
                ["ps", "-e", "-o", "pid=,stat="],
                capture_output=True,
                text=True,
                timeout=self._timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DriverError(f"ps failed: {exc}") from exc
        if done.returncode != 0:
            raise DriverError(f"ps exited {done.returncode}: {done.stderr.strip()[:200]}")
        return done.stdout

    def cancel(self, jobs: Sequence[JobRef]) -> None:
        """SIGTERM each job's process group (the runner forwards it, then kills late ones)."""
        for job in jobs:
            if job.job_id:
                with contextlib.suppress(ProcessLookupError):  # already gone: no error
                    os.killpg(int(job.job_id), signal.SIGTERM)

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        """Job ids from job.json, for attempts submitted before the daemon crashed."""
        found: dict[str, str] = {}
        for job in jobs:
            record = read_job_file(job.attempt_dir, job.token)
            if record is not None and record.get("job_id"):
                found[job.token] = str(record["job_id"])
        return found


def parse_ps(text: str) -> dict[int, str]:
    """``{pid: state}`` from ``ps -o pid=,stat=``; a line that is not that is a DriverError
    (truncated or garbled output must never read as "the job is gone")."""
    states: dict[int, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1][0].isalpha():
            raise DriverError(f"cannot read ps line {line[:80]!r}")
        states[int(fields[0])] = fields[1]
    if not text.endswith("\n"):
        raise DriverError("ps output ends in the middle of a line (truncated)")
    return states


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    """Hand the driver class to clusterd (listed in pyproject's ``clusterd`` entry points)."""
    registry.add(DetachedDriver)
