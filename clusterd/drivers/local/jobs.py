"""What the local driver remembers of each job: in memory (queued, running, or unsettled:
may have started, not confirmed yet) and in its ``job.json`` (the request itself, so a
restarted daemon's driver can queue it again)."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clusterd.drivers.base import JobRequest
from clusterd.drivers.jobfile import read_job_file
from clusterd.drivers.local.capacity import cpus_of
from clusterd.drivers.local.procs import format_job_id
from clusterd.spec.model import Resources

__all__ = [
    "Queued",
    "Running",
    "Unsettled",
    "Unsure",
    "read_job",
    "request_from_json",
    "request_to_json",
]


class Unsure(Exception):
    """The job may have started and the driver cannot tell now: never "not started"."""


@dataclass
class Queued:
    request: JobRequest
    submitted_at: float

    @property
    def cpus(self) -> int:
        return cpus_of(self.request.resources)

    @property
    def gpus(self) -> int:
        return self.request.resources.gpus


@dataclass
class Running:
    token: str
    pid: int
    starttime: int
    attempt_dir: str
    cpus: int
    gpu_ids: tuple[str, ...]
    kill_timeout: float
    started_at: float
    popen: subprocess.Popen[bytes] | None = None  # None for a job adopted after a restart
    kill_at: float | None = None  # monotonic time of the SIGKILL escalation, once cancelled

    @property
    def job_id(self) -> str:
        return format_job_id(self.pid, self.starttime)


@dataclass
class Unsettled:
    """A job that may have started, whose process the driver could not confirm yet."""

    attempt_dir: str
    cpus: int
    gpu_ids: tuple[str, ...]
    pid: int | None  # what the fork returned, if it got that far
    forked_near: int  # procs.boot_ticks() at the fork: a recycled pid started elsewhen
    why: str


def request_to_json(job: JobRequest) -> dict[str, Any]:
    return {
        "sweep": job.sweep,
        "trial_index": job.trial_index,
        "attempt": job.attempt,
        "argv": list(job.argv),
        "env": dict(job.env),
        "cpus": cpus_of(job.resources),
        "gpus": job.resources.gpus,
        "options": dict(job.options),
    }


def request_from_json(token: str, attempt_dir: str, data: Mapping[str, Any]) -> JobRequest:
    return JobRequest(
        token=token,
        sweep=data["sweep"],
        trial_index=data["trial_index"],
        attempt=data["attempt"],
        attempt_dir=attempt_dir,
        argv=tuple(data["argv"]),
        resources=Resources(cpus=data["cpus"], gpus=data["gpus"]),
        options=data.get("options") or {},
        env=data.get("env") or {},
    )


def read_job(attempt_dir: str, token: str) -> dict[str, Any] | None:
    """``job.json`` of ``token``; out of descriptors raises: "cannot read it now" must
    never pass for "there is none"."""
    return read_job_file(attempt_dir, token, strict=True)
