"""The Slurm driver passes the conformance kit on the real one-node Slurm of this machine
(started by .ci/slurm-setup.sh through the ``slurm`` fixture; skipped, saying why, only
where Slurm cannot be installed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clusterd.testing import DriverConformance, SchedulerSetup
from tests.drivers.conftest import slurm

__all__ = ["slurm"]  # the session fixture, used by ``scheduler``


class TestSlurmDriver(DriverConformance):
    """Small sweeps polled every second; Slurm's time limits are whole minutes."""

    driver_name = "slurm"
    status_commands = ("squeue", "sacct")
    resources = {"cpus": 1, "memory": "100M"}
    batch_trials = 3
    time_limit = "00:01:00"
    time_limit_timeout = 240.0

    @pytest.fixture
    def scheduler(self, slurm: None) -> Iterator[SchedulerSetup]:
        # command_timeout through the per-user config file, as a user would set it
        yield SchedulerSetup(
            sweep_options={"poll_interval": 1}, driver_options={"command_timeout": 60}
        )
