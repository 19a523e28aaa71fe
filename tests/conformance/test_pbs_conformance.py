"""The PBS driver passes the conformance kit on the stand-in PBS server, in both dialects.

No PBS server can run here (no Debian or PyPI package has one), so the kit's real daemon
talks to the stand-in ``qsub``/``qstat``/``qdel`` of ``tests/standins/pbs`` (real
processes, recorded real output formats); the kit wraps their ``qstat`` to count it and
to make it answer garbage. Polled every 0.4 s (a stand-in ``qstat`` costs ~0.1 s of CPU,
so a shorter interval would crowd a 2-core CI machine); the stand-in's jobs start at once.

PBS Pro runs every check. Torque runs the checks that go through what differs between the
dialects: reading ``qstat -x`` XML into states and exit codes (the batch check), finding
jobs by name after a crash (``qstat -x`` of every job, the batch name in its
``Variable_List`` string), ``qdel``'s Torque replies (cancel), and refusing garbage and
cut-short XML (the in-process garbage check). The other checks -- one ``qstat`` per
poll, resume, retry, the runner's time limit, the daemon riding out garbage -- run the
same driver and daemon code in both dialects (the dialect only picks the argv and the
reader, both covered above and in ``tests/drivers/pbs/``), so for Torque they are
skipped with that reason, and run with ``CLUSTERD_STRESS=1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import ClassVar

import pytest

from clusterd.testing import DriverConformance, SchedulerSetup
from clusterd.testing.harness import Kit
from tests.standins.pbs.fixture import PLUGIN, pbs_standin

#: seconds between polls in every check's sweeps
POLL_INTERVAL = 0.4
#: CLUSTERD_STRESS=1 runs every check in both dialects
EVERY_CHECK = bool(os.environ.get("CLUSTERD_STRESS"))

_SAME_AS_PBS_PRO = pytest.mark.skipif(
    not EVERY_CHECK,
    reason="same driver and daemon code in both dialects: run for PBS Pro "
    "(TestPbsProConformance); CLUSTERD_STRESS=1 runs it for Torque too",
)


class _PbsConformance(DriverConformance):
    """The kit on one dialect of the stand-in (subclasses name it)."""

    flavor: ClassVar[str]
    driver_name = "pbs"
    status_commands = ("qstat",)
    plugins = (PLUGIN,)
    resources = {"cpus": 1, "memory": "100M"}
    batch_trials = 3
    time_limit = "00:00:02"
    time_limit_timeout = 60.0
    sweep_timeout = 60.0

    @pytest.fixture
    def scheduler(self) -> Iterator[SchedulerSetup]:
        # the stand-in first on this process's PATH: the kit wraps the qstat it finds there
        with pbs_standin(self.flavor) as server, pytest.MonkeyPatch.context() as patch:
            for key, value in server.env.items():
                patch.setenv(key, value)
            yield SchedulerSetup(
                sweep_options={"poll_interval": POLL_INTERVAL},
                env={"CLUSTERD_STANDIN_DIR": str(server.root)},
            )


class TestPbsProConformance(_PbsConformance):
    flavor = "pbspro"


class TestTorqueConformance(_PbsConformance):
    """Torque: the checks where the dialects differ (module docstring)."""

    flavor = "torque"

    @_SAME_AS_PBS_PRO
    def test_one_status_call_per_poll(self, kit: Kit) -> None:
        super().test_one_status_call_per_poll(kit)

    @_SAME_AS_PBS_PRO
    def test_resume_continues_in_a_new_attempt(self, kit: Kit) -> None:
        super().test_resume_continues_in_a_new_attempt(kit)

    @_SAME_AS_PBS_PRO
    def test_retry_runs_a_failing_trial_again(self, kit: Kit) -> None:
        super().test_retry_runs_a_failing_trial_again(kit)

    @_SAME_AS_PBS_PRO
    def test_time_limit_ends_the_trial(self, kit: Kit) -> None:
        super().test_time_limit_ends_the_trial(kit)

    @_SAME_AS_PBS_PRO
    def test_daemon_survives_garbage_status_output(self, kit: Kit) -> None:
        super().test_daemon_survives_garbage_status_output(kit)
