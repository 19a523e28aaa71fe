"""Requeued jobs, hung commands and the command time-out, without a Slurm.

``squeue_requeued.txt`` and ``sacct_requeued.txt`` were recorded from slurm-wlm 22.05.8 by
``fixtures/slurm/record_requeue.sh`` (``scontrol requeue`` and ``scontrol requeuehold`` of
two running array tasks). The real-Slurm counterparts are in test_slurm_faults.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterd.drivers.base import JobRef
from clusterd.drivers.batch.commands import run_command
from clusterd.drivers.slurm import SlurmDriver, parse_sacct, parse_squeue, render_batch_script
from clusterd.errors import DriverError
from clusterd.node.names import REQUEUED as REQUEUED_FILE
from clusterd.spec.model import Resources
from tests.drivers.test_slurm_parse import Replay, make_job, recorded, run_task

SQUEUE = recorded("squeue_requeued.txt")  # 2249_0: BeginTime; 2249_1: requeued held


def started_ref(tmp_path: Path, index: int, job_id: str, *, started: bool = True) -> JobRef:
    adir = tmp_path / str(index)
    adir.mkdir()
    if started:  # the batch script writes it as the attempt starts
        (adir / "slurm_job_id").write_text(f"{job_id}\n")
    return JobRef(f"t{index}", job_id, str(adir))


def test_recorded_requeue_states_parse() -> None:
    jobs = parse_squeue(SQUEUE)
    assert [(j.state, j.reason) for j in jobs.values()] == [
        ("PENDING", "BeginTime"),
        ("PENDING", "job requeued in held state"),
    ]
    assert {j.state for j in parse_sacct(recorded("sacct_requeued.txt")).values()} == {"REQUEUED"}


def test_a_requeued_attempt_ends_and_its_job_is_cancelled(tmp_path: Path) -> None:
    """Both requeued tasks had started: one scancel for both, each attempt ends REQUEUED
    (the daemon resumes the trial with a new attempt) and is marked so for later polls."""
    refs = [started_ref(tmp_path, 0, "2249_0"), started_ref(tmp_path, 1, "2249_1")]
    replay = Replay(squeue=SQUEUE)
    statuses = SlurmDriver(run=replay).poll(refs)
    assert [s.phase for s in statuses.values()] == ["gone", "gone"]
    assert {s.scheduler_state for s in statuses.values()} == {"REQUEUED"}
    assert replay.calls[-1] == ["scancel", "2249_0", "2249_1"]
    assert all((Path(ref.attempt_dir) / REQUEUED_FILE).exists() for ref in refs)

    # the next poll: squeue says CANCELLED (by clusterd); the mark says why, no sacct needed
    cancelled = SQUEUE.replace("PENDING", "CANCELLED")
    again = Replay(squeue=cancelled)
    statuses = SlurmDriver(run=again).poll(refs)
    assert {s.scheduler_state for s in statuses.values()} == {"REQUEUED"}
    assert again.count("sacct") == 0 and again.count("scancel") == 0


def test_a_job_waiting_for_its_begin_time_that_never_started_stays_queued(tmp_path: Path) -> None:
    ref = started_ref(tmp_path, 0, "2249_0", started=False)
    replay = Replay(squeue=SQUEUE)
    status = SlurmDriver(run=replay).poll([ref])[ref.token]
    assert (status.phase, status.reason) == ("queued", "BeginTime")
    assert replay.count("scancel") == 0


def test_a_restarted_batch_script_does_not_run_the_attempt_again(tmp_path: Path) -> None:
    """Requeued while no daemon polled, the job runs its script again: it must not rerun
    the attempt, only mark it requeued (the driver then ends it)."""
    job = make_job(tmp_path, 0, argv=("touch", "ran"))
    script = render_batch_script("cd.sw.x", [job])
    path = tmp_path / "array.sh"
    path.write_text(script)
    env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_JOB_ID": "7"}
    done = subprocess.run(
        ["bash", str(path)], env={**env, "SLURM_RESTART_COUNT": "1"}, timeout=30, check=False
    )
    adir = Path(job.attempt_dir)
    assert done.returncode == 0
    assert (adir / REQUEUED_FILE).read_text() == "1\n"
    assert not (adir / "ran").exists() and not (adir / "slurm_job_id").exists()

    assert run_task(script, 0, tmp_path).returncode == 0  # a first run does run it
    assert (adir / "ran").exists()


def test_a_restarted_packed_script_marks_every_slot(tmp_path: Path) -> None:
    jobs = [
        make_job(tmp_path, i, argv=("touch", "ran"), resources=Resources(cpus=1, pack=2))
        for i in range(2)
    ]
    path = tmp_path / "array.sh"
    path.write_text(render_batch_script("cd.sw.x", jobs, pack=2))
    env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0", "SLURM_RESTART_COUNT": "2"}
    done = subprocess.run(["bash", str(path)], env=env, timeout=30, check=False)
    assert done.returncode == 0
    for job in jobs:
        assert (Path(job.attempt_dir) / REQUEUED_FILE).read_text() == "2\n"
        assert not (Path(job.attempt_dir) / "ran").exists()


def test_a_hung_wrapper_and_its_children_are_killed_at_the_time_out() -> None:
    """Login nodes wrap Slurm commands in scripts: a child holding the output pipe must not
    keep the time-out from firing."""
    argv = ["bash", "-c", "sleep 60 & sleep 60; echo never"]
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        run_command(argv, 0.5)
    assert time.monotonic() - started < 5


def test_run_command_passes_stdin_and_output() -> None:
    code = "import sys; print(sys.stdin.read().upper()); sys.exit(3)"
    done = run_command([sys.executable, "-c", code], 30, "it's")
    assert (done.returncode, done.stdout) == (3, "IT'S\n")


def test_the_time_out_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    replay = Replay(squeue=lambda argv: subprocess.TimeoutExpired(argv, 4))
    monkeypatch.setenv("CLUSTERD_SLURM_TIMEOUT", "4")
    with pytest.raises(DriverError, match="squeue did not answer within 4 s"):
        SlurmDriver(run=replay).poll([JobRef("t", "1_0", "/nonexistent")])
    assert SlurmDriver({"command_timeout": 2}).commands.timeout == 2  # explicit options win


@pytest.mark.parametrize("value", ["", "soon", "0", "-1", "nan", "inf"])
def test_a_bad_time_out_in_the_environment_is_named(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CLUSTERD_SLURM_TIMEOUT", value)
    with pytest.raises(DriverError, match=r"CLUSTERD_SLURM_TIMEOUT=.*expected a number of seconds"):
        SlurmDriver()
