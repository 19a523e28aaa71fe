"""Drivers that break the contract in one way each, for the kit to catch
(``test_kit_catches.py``): the example driver with one method changed."""

from __future__ import annotations

from collections.abc import Sequence

from clusterd_detached import DetachedDriver

from clusterd.drivers.base import JobRef, JobStatus
from clusterd.errors import DriverError
from clusterd.plugins import DriverRegistry, hookimpl


class ChattyDriver(DetachedDriver):
    """Asks ``ps`` once per job."""

    name = "chatty"

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        result: dict[str, JobStatus] = {}
        for job in jobs:
            result.update(super().poll([job]))
        return result


class ForgetfulDriver(DetachedDriver):
    """Never finds a job again after a crash."""

    name = "forgetful"

    def find(self, jobs: Sequence[JobRef]) -> dict[str, str]:
        return {}


class CredulousDriver(DetachedDriver):
    """Takes output it cannot read for "every job is gone"."""

    name = "credulous"

    def poll(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        try:
            return super().poll(jobs)
        except DriverError:
            return {job.token: JobStatus("gone", job.job_id) for job in jobs}


@hookimpl
def clusterd_register_drivers(registry: DriverRegistry) -> None:
    for cls in (ChattyDriver, ForgetfulDriver, CredulousDriver):
        registry.add(cls)
