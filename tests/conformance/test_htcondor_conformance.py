"""The HTCondor driver passes the conformance kit on the stand-in HTCondor
(``tests/standins/htcondor``: real submit-description parsing, real ClassAd constraints,
recorded event-log and ``-json`` formats; Debian has no HTCondor to run).

Its status is the user event log, read every poll; ``condor_q``/``condor_history`` are
the status commands the kit counts (and garbles), asked only to reconcile.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers.base import Driver
from clusterd.drivers.htcondor import HTCondorDriver
from clusterd.testing import DriverConformance, SchedulerSetup
from clusterd.testing.conformance import _failed_polls, _more_failed_polls
from clusterd.testing.harness import Kit
from clusterd.testing.waiting import wait_for
from tests.standins.htcondor.fixture import condor_standins


class TestHTCondorDriver(DriverConformance):
    """Small sweeps polled every 0.25 s on the stand-in pool of this machine (a poll in
    steady state is one read of the event log: cheap enough for that)."""

    driver_name = "htcondor"
    plugins = ("clusterd.drivers.htcondor",)
    status_commands = ("condor_q", "condor_history")
    resources = {"cpus": 1, "memory": "100M"}
    batch_trials = 3
    time_limit = "00:00:03"
    time_limit_timeout = 90.0

    @pytest.fixture
    def scheduler(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[SchedulerSetup]:
        with condor_standins(tmp_path / "condor") as condor:
            # the kit finds the status commands on this process's PATH
            monkeypatch.setenv("PATH", condor.env["PATH"])
            monkeypatch.setenv("CLUSTERD_STANDIN_DIR", condor.env["CLUSTERD_STANDIN_DIR"])
            yield SchedulerSetup(
                sweep_options={"poll_interval": 0.25},
                driver_options={"command_timeout": 60},
                env=condor.env,
            )

    # The two garbage checks garble the status commands' answers. This driver's status is
    # the event log: it asks condor_q/condor_history only for jobs the log cannot speak
    # for. So both checks run here with the log made unreadable (a directory where the
    # file is): every poll then asks condor_q, whose garbage (or cut output) must be a
    # failed poll (DriverError), and the daemon must stay up through it and read the log
    # again once it is back. Garbage in the log itself: test_htcondor_e2e.py.

    def test_garbage_status_output_is_a_driver_error(self, kit: Kit, tmp_path: Path) -> None:
        unreadable = tmp_path / "unreadable-events.log"
        unreadable.mkdir()
        make = kit.in_process_driver

        def driver() -> Driver:
            made = make()
            assert isinstance(made, HTCondorDriver)
            vars(made)["_log_of"] = lambda ref: str(unreadable)  # this driver's log only
            return made

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(kit, "in_process_driver", driver)
            super().test_garbage_status_output_is_a_driver_error(kit, tmp_path)

    def test_daemon_survives_garbage_status_output(self, kit: Kit) -> None:
        assert kit.commands is not None
        kit.start()
        params: dict[str, Any] = {"release": str(kit.work / "release"), "seconds": 600}
        kit.submit(self._sweep(kit, "garbage", "wait", 2, params=params))
        self._wait_running(kit, "garbage", 2)
        (log,) = kit.work.rglob("events.log")
        aside = log.with_name("events.log.aside")
        log.rename(aside)
        log.mkdir()  # unreadable: every poll asks condor_q
        try:
            for mode in ("garbage", "truncated"):
                failed = _failed_polls(kit)
                kit.commands.answer(mode)
                wait_for(partial(_more_failed_polls, kit, failed), 60, f"a poll on {mode}")
                assert kit.daemon.running(), kit.daemon.log_tail()
                states = {t["state"] for t in kit.daemon.trials("garbage")}
                assert states == {"running"}, states
        finally:
            kit.commands.answer("")
            log.rmdir()
            aside.rename(log)
        Path(params["release"]).touch()
        trials = kit.daemon.wait_sweep_done("garbage", self.sweep_timeout)
        assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 2, trials
