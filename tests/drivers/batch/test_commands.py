"""Scheduler commands: the timeout from the environment, errors that name the command."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

import pytest

from clusterd.drivers.batch.commands import SchedulerCommands, env_timeout, first_line
from clusterd.errors import DriverError


def answering(
    rc: int = 0, out: str = "", err: str = "", raises: BaseException | None = None
) -> SchedulerCommands:
    def run(
        argv: Sequence[str], timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        if raises is not None:
            raise raises
        return subprocess.CompletedProcess(list(argv), rc, out, err)

    return SchedulerCommands(run, 7, "HTCondor", "the schedd")


def test_the_timeout_variable_is_named_after_the_driver() -> None:
    assert env_timeout("htcondor", {"CLUSTERD_HTCONDOR_TIMEOUT": "12"}) == {"command_timeout": 12}
    assert env_timeout("htcondor", {"CLUSTERD_SLURM_TIMEOUT": "12"}) == {}
    with pytest.raises(DriverError, match=r"CLUSTERD_PBS_TIMEOUT='0': expected a number"):
        env_timeout("pbs", {"CLUSTERD_PBS_TIMEOUT": "0"})


@pytest.mark.parametrize(
    ("commands", "message"),
    [
        (answering(raises=FileNotFoundError()), "condor_q not found: run clusterd on a HTCondor"),
        (
            answering(raises=subprocess.TimeoutExpired("condor_q", 7)),
            "condor_q did not answer within 7 s; the schedd may be busy",
        ),
        (answering(raises=PermissionError("denied")), "condor_q could not run: denied"),
        (answering(2, "", "\n  -- Failed to fetch ads\nmore\n"), "condor_q failed: -- Failed"),
        (answering(2), "condor_q failed: exit status 2"),
    ],
)
def test_failures_are_driver_errors_naming_the_command(
    commands: SchedulerCommands, message: str
) -> None:
    with pytest.raises(DriverError, match=message):
        commands.output(["condor_q", "-af", "ClusterId"])


def test_an_unchecked_failure_is_the_callers_to_judge() -> None:
    done = answering(1, "", "busy").checked(["condor_rm", "7"], check=False)
    assert (done.returncode, done.stderr) == (1, "busy")
    assert first_line("\n\n  x \ny") == "x" and first_line("") == ""
