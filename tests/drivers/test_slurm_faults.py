"""The daemon on the real local Slurm when things go wrong around it.

Someone ``scancel``s a trial's job, an admin ``scontrol requeue``s one, the daemon is
SIGKILLed while its jobs run, ``squeue`` hangs. The Slurm commands are wrapped by
shims on the daemon's PATH that log every call (and can make ``squeue`` hang), so the
tests count what the daemon asked Slurm. Waits are on conditions, with generous
deadlines: the one-node cluster runs ~2 jobs at once and shares 2 CPUs with others.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Daemon, process_gone, wait_for

#: the trial: appends its attempt number to runs.log in its trial dir (so a duplicate run
#: of one attempt shows), then, in attempt 1, waits while the sweep dir holds a "hold" file
TRIAL = """\
import os, sys, time
from pathlib import Path
attempt = os.environ["CLUSTERD_ATTEMPT"]
with open(Path(os.environ["CLUSTERD_TRIAL_DIR"]) / "runs.log", "a") as log:
    log.write(attempt + "\\n")
hold = Path(sys.argv[1]) / "hold"
while attempt == "1" and hold.exists():
    time.sleep(0.2)
"""

SHIM = """\
#!/bin/bash
# counting shim: log the call, then run the real command (or hang, for squeue)
echo "$(date +%s.%N) {name} $*" >>{log}
if [ "{name}" = squeue ] && [ -e {hang} ]; then
    exec sleep 3600
fi
exec {real} "$@"
"""
TIMEOUT = 6  # CLUSTERD_SLURM_TIMEOUT of the daemon: seconds before a hung command dies
COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo", "sacctmgr")


class Shims:
    """A PATH directory whose Slurm commands log each call to ``calls.log``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "shims"
        self.dir.mkdir()
        self.log = root / "calls.log"
        self.hang = root / "hang"
        self.log.touch()
        for name in COMMANDS:
            real = shutil.which(name)
            assert real is not None, f"{name} is not on PATH"
            shim = self.dir / name
            shim.write_text(SHIM.format(name=name, log=self.log, hang=self.hang, real=real))
            shim.chmod(0o755)

    def calls(self, name: str) -> list[float]:
        """Start times of the calls of ``name`` so far."""
        lines = self.log.read_text().splitlines()
        return [float(line.split()[0]) for line in lines if line.split()[1:2] == [name]]


@pytest.fixture
def shims(slurm: None, tmp_path: Path) -> Shims:
    return Shims(tmp_path)


@pytest.fixture
def slurm_daemon(stopped_daemon: Daemon, shims: Shims) -> Iterator[Daemon]:
    """A daemon whose Slurm commands go through ``shims``; its jobs are cancelled after."""
    d = stopped_daemon
    d.env["PATH"] = f"{shims.dir}{os.pathsep}{d.env['PATH']}"
    d.env["CLUSTERD_SLURM_TIMEOUT"] = str(TIMEOUT)
    d.start()
    yield d
    shims.hang.unlink(missing_ok=True)
    d.ctl("cancel", "faults", check=False)


def sweep(tmp_path: Path, trials: int, *, hold: bool = True) -> Path:
    """A sweep of ``trials`` trials on Slurm, polled every second; attempt 1 holds."""
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "trial.py").write_text(TRIAL)
    if hold:
        (root / "hold").touch()
    (root / "sweep.toml").write_text(
        f'name = "faults"\ncommand = ["{sys.executable}", "trial.py", "{root}"]\n'
        f'driver = "slurm"\nmax_concurrent = {trials}\n'
        f"[params]\ni = {list(range(trials))}\n"
        '[resources]\ncpus = 1\nmemory = "100M"\n'
        "[retry]\nmax_failures = 0\n"
        "[drivers.slurm]\npoll_interval = 1\n"
    )
    return root


def trial(daemon: Daemon, index: int) -> dict[str, Any]:
    return daemon.ctl_json("show", f"faults/{index}")


def job_ids(daemon: Daemon, index: int) -> list[str | None]:
    return [a["job_id"] for a in trial(daemon, index)["attempt_list"]]


def running(daemon: Daemon, count: int) -> list[dict[str, Any]] | None:
    trials = daemon.trials("faults")
    return trials if sum(t["state"] == "running" for t in trials) >= count else None


def runs(daemon: Daemon, index: int) -> list[str]:
    """The attempts that ran trial ``index`` (one line per run of the trial command)."""
    path = Path(trial(daemon, index)["trial_dir"]) / "runs.log"
    return path.read_text().split() if path.exists() else []


def squeue_state(job_id: str) -> str:
    argv = ["squeue", "--noheader", "--array", "--states=all", f"--jobs={job_id}", "--format=%T"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip()


def test_scancel_from_outside_cancels_the_trial_with_the_reason(
    slurm_daemon: Daemon, tmp_path: Path
) -> None:
    daemon = slurm_daemon
    daemon.ctl("submit", str(sweep(tmp_path, 1) / "sweep.toml"))
    wait_for(lambda: running(daemon, 1), 90, "the trial to run")
    (job_id,) = job_ids(daemon, 0)
    assert job_id
    subprocess.run(["scancel", job_id], check=True, timeout=30)

    (done,) = daemon.wait_sweep_done("faults", timeout=90)
    assert (done["state"], done["attempts"]) == ("cancelled", 1), [
        (a["reason"], a["exit_code"], a.get("signal")) for a in trial(daemon, 0)["attempt_list"]
    ]
    # "by 0" (who cancelled) comes from accounting, which may lag slurmctld by a poll;
    # then squeue's plain CANCELLED is the reason
    reason = re.compile(r"cancelled outside clusterd \(CANCELLED( by 0)?\)")
    shown = daemon.ctl("show", "faults/0").stdout
    assert reason.search(shown), shown
    (attempt,) = trial(daemon, 0)["attempt_list"]
    assert reason.fullmatch(attempt["reason"]), attempt["reason"]


def test_scontrol_requeue_ends_the_attempt_and_submits_a_new_one(
    slurm_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    """Slurm would rerun the job in the same attempt dir after 120 s (BeginTime); the driver
    cancels it instead, and the daemon resumes the trial with attempt 2, which completes."""
    daemon = slurm_daemon
    root = sweep(tmp_path, 1)
    daemon.ctl("submit", str(root / "sweep.toml"))
    wait_for(lambda: running(daemon, 1) and runs(daemon, 0) == ["1"], 90, "attempt 1 to run")
    (job_id,) = job_ids(daemon, 0)
    assert job_id
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=30)

    (done,) = daemon.wait_sweep_done("faults", timeout=120)
    assert (done["state"], done["attempts"], done["resumes"]) == ("completed", 2, 1)
    first, second = trial(daemon, 0)["attempt_list"]
    assert first["job_id"] == job_id and second["job_id"] != job_id
    assert "REQUEUED" in (first["reason"] or ""), first
    assert runs(daemon, 0) == ["1", "2"]  # attempt 1 ran once: never rerun by Slurm
    assert squeue_state(job_id) in ("CANCELLED", "")  # the requeued job was not left to wait
    assert len(shims.calls("sbatch")) == 2


def test_a_killed_daemon_finds_every_job_again_and_submits_nothing_twice(
    slurm_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    daemon = slurm_daemon
    root = sweep(tmp_path, 4)
    daemon.ctl("submit", str(root / "sweep.toml"))
    wait_for(lambda: running(daemon, 2), 120, "two trials to run (the node has room for two)")
    wait_for(lambda: all(t["state"] in ("queued", "running") for t in daemon.trials("faults")),
             60, "every trial to be submitted")  # fmt: skip
    before = {i: job_ids(daemon, i) for i in range(4)}
    sbatches = len(shims.calls("sbatch"))
    assert sbatches == 1  # 4 trials, one array

    pid = daemon.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), 10, "the kill")
    daemon.start()
    (root / "hold").unlink()  # the jobs may finish now, while or after the daemon looks

    trials = daemon.wait_sweep_done("faults", timeout=180)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 4
    assert {i: job_ids(daemon, i) for i in range(4)} == before  # the same jobs, found again
    assert len(shims.calls("sbatch")) == sbatches  # nothing submitted twice
    assert [runs(daemon, i) for i in range(4)] == [["1"]] * 4


def test_a_hung_squeue_times_out_backs_off_and_leaves_the_socket_answering(
    slurm_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    """squeue hangs (the shim sleeps); CLUSTERD_SLURM_TIMEOUT kills it, the daemon backs off
    (2 s doubling, jittered) and answers clusterctl all along."""
    daemon = slurm_daemon
    root = sweep(tmp_path, 1)
    daemon.ctl("submit", str(root / "sweep.toml"))
    wait_for(lambda: running(daemon, 1), 90, "the trial to run")
    healthy = len(shims.calls("squeue"))
    shims.hang.touch()

    hung = wait_for(lambda: shims.calls("squeue")[healthy:], 30, "a squeue to hang")
    started = time.monotonic()
    sweeps = daemon.ctl_json("sweeps")  # while squeue hangs in the daemon's worker thread
    answered = time.monotonic() - started
    assert [s["name"] for s in sweeps] == ["faults"]
    assert time.time() - hung[0] < TIMEOUT, "squeue timed out before clusterctl answered"
    assert answered < 3, f"clusterctl sweeps took {answered:.1f} s while squeue hung"

    def failed_thrice() -> list[float] | None:
        calls = shims.calls("squeue")[healthy:]
        return calls if len(calls) >= 4 else None

    calls = wait_for(failed_thrice, 90, "four hung squeue calls")
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # each gap: the time-out, then a back-off of 1-2, 2-4, 4-8 s (or 2, 4, 8 unjittered)
    assert all(gap >= TIMEOUT + 1 - 0.5 for gap in gaps[:3]), gaps
    assert gaps[2] > gaps[0] + 1, gaps  # it backs off further, not at a fixed rate

    status = daemon.clusterd("status").stdout
    line = next(line for line in status.splitlines() if line.startswith("driver    slurm"))
    assert "last poll " in line and "s ago" in line and "never" not in line, line
    assert f"squeue did not answer within {TIMEOUT} s" in line, line
    assert "backing off" in line, line
    health = daemon.clusterd("status", "--json").stdout
    assert '"failures"' in health

    shims.hang.unlink()
    (root / "hold").unlink()
    (done,) = daemon.wait_sweep_done("faults", timeout=120)
    assert (done["state"], done["attempts"]) == ("completed", 1)
