"""The SGE driver passes the conformance kit on the real single-host Grid Engine of this
machine (started by .ci/sge-setup.sh through the ``sge`` fixture; skipped, saying why,
only where Grid Engine cannot be installed)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clusterd.testing import DriverConformance, SchedulerSetup
from tests.drivers.sge.conftest import PLUGIN, sge

__all__ = ["sge"]  # the session fixture, used by ``scheduler``


class TestSgeDriver(DriverConformance):
    """Small sweeps polled every second; the runner ends a trial at its time limit."""

    driver_name = "sge"
    plugins = (PLUGIN,)
    status_commands = ("qstat", "qacct")
    resources = {"cpus": 1}
    batch_trials = 3
    time_limit = "00:00:05"
    time_limit_timeout = 90.0

    @pytest.fixture
    def scheduler(self, sge: None) -> Iterator[SchedulerSetup]:
        # command_timeout through the per-user config file, as a user would set it
        yield SchedulerSetup(
            sweep_options={"poll_interval": 1}, driver_options={"command_timeout": 60}
        )
