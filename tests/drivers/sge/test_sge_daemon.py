"""The daemon on the real single-host Grid Engine (``.ci/sge-setup.sh``, the ``sge`` fixture).

The quickstart runs to the end with its resume; a SIGKILLed daemon finds its jobs again
and submits nothing twice; SGE's ``s_rt`` SIGUSR1 reaches the trial, which resumes; a
job SGE cannot start (``Eqw``) ends its attempt with SGE's reason. The SGE commands are
wrapped by shims on the daemon's PATH that log every call, so the tests count what the
daemon asked. Waits are on conditions, with generous deadlines: the host shares 2 CPUs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, Daemon, process_gone, wait_for
from tests.drivers.sge.conftest import PLUGIN

SHIM = """\
#!/bin/bash
# counting shim: log the call, then run the real command
echo "{name} $*" >>{log}
exec {real} "$@"
"""
COMMANDS = ("qsub", "qstat", "qacct", "qdel", "qconf")

#: attempt 1 holds while the sweep dir has a "hold" file; every run is logged
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

#: attempt 1 waits for the resume signal (or its marker), runs on 2 s, exits for resume
SIGNALLED = """\
import time
from clusterd import trial
if trial.attempt() == 1:
    while not trial.time_to_checkpoint():
        time.sleep(0.1)
    time.sleep(2)
    trial.exit_for_resume()
"""


class Shims:
    """A PATH directory whose SGE commands log each call to ``calls.log``."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "shims"
        self.dir.mkdir()
        self.log = root / "calls.log"
        self.log.touch()
        for name in COMMANDS:
            real = shutil.which(name)
            assert real is not None, f"{name} is not on PATH"
            shim = self.dir / name
            shim.write_text(SHIM.format(name=name, log=self.log, real=real))
            shim.chmod(0o755)

    def calls(self, name: str) -> list[str]:
        """The argument lines of the calls of ``name`` so far."""
        lines = self.log.read_text().splitlines()
        return [line.partition(" ")[2] for line in lines if line.split(" ", 1)[0] == name]


@pytest.fixture
def shims(sge: None, tmp_path: Path) -> Shims:
    return Shims(tmp_path)


@pytest.fixture
def sge_daemon(stopped_daemon: Daemon, shims: Shims) -> Iterator[Daemon]:
    """A daemon with the SGE driver registered, its SGE commands through ``shims``; its
    sweeps are cancelled after."""
    d = stopped_daemon
    d.env["CLUSTERD_PLUGINS"] = f"{d.env['CLUSTERD_PLUGINS']},{PLUGIN}"
    d.env["PATH"] = f"{shims.dir}{os.pathsep}{d.env['PATH']}"
    d.start()
    yield d
    for sweep in d.ctl_json("sweeps"):
        d.ctl("cancel", sweep["name"], check=False)


def quickstart_on_sge(tmp_path: Path) -> Path:
    """The quickstart sweep (4 trials here), driven by Grid Engine, polled every second."""
    example = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", example)
    sweep = (example / "sweep.toml").read_text()
    sweep = sweep.replace('driver = "local"', 'driver = "sge"')
    sweep = sweep.replace(
        'command = "python3 train.py"', f'command = ["{sys.executable}", "train.py"]'
    )
    sweep = sweep.replace("lr = [0.1, 0.01, 0.001]", "lr = [0.1, 0.01]")
    sweep += "\n[resources]\ncpus = 1\n\n[drivers.sge]\npoll_interval = 1\n"
    (example / "sweep.toml").write_text(sweep)
    return example / "sweep.toml"


def test_quickstart_runs_to_the_end_on_sge(
    sge_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    daemon = sge_daemon
    daemon.ctl("submit", str(quickstart_on_sge(tmp_path)))
    trials = daemon.wait_sweep_done("quickstart", timeout=240)
    assert [(t["state"], t["attempts"], t["resumes"]) for t in trials] == [("completed", 2, 1)] * 4
    show = daemon.ctl_json("show", "quickstart/0")
    job_ids = [a["job_id"] for a in show["attempt_list"]]
    assert all(re.fullmatch(r"\d+\.\d+", j or "") for j in job_ids), job_ids  # "57.1"
    assert show["attempt_list"][0]["host"]
    assert show["metrics"]["val_loss"]["step"] == 19
    # max_concurrent = 2: two arrays of 2 for the first attempts, then the resumes
    assert all("-t 1-" in call for call in shims.calls("qsub"))
    assert len(shims.calls("qsub")) < 8  # never one qsub per attempt
    assert all(call.startswith("-xml -u ") for call in shims.calls("qstat"))


def faults_sweep(tmp_path: Path, trials: int, extra: str = "") -> Path:
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "trial.py").write_text(TRIAL)
    (root / "hold").touch()
    (root / "sweep.toml").write_text(
        f'name = "faults"\ncommand = ["{sys.executable}", "trial.py", "{root}"]\n'
        f'driver = "sge"\nmax_concurrent = {trials}\n'
        f"[params]\ni = {list(range(trials))}\n"
        "[resources]\ncpus = 1\n"
        "[retry]\nmax_failures = 0\n"
        f"[drivers.sge]\npoll_interval = 1\n{extra}"
    )
    return root


def job_ids(daemon: Daemon, sweep: str, index: int) -> list[str | None]:
    return [a["job_id"] for a in daemon.ctl_json("show", f"{sweep}/{index}")["attempt_list"]]


def runs(daemon: Daemon, index: int) -> list[str]:
    path = Path(daemon.ctl_json("show", f"faults/{index}")["trial_dir"]) / "runs.log"
    return path.read_text().split() if path.exists() else []


def running(daemon: Daemon, count: int) -> list[dict[str, Any]] | None:
    trials = daemon.trials("faults")
    return trials if sum(t["state"] == "running" for t in trials) >= count else None


def test_a_killed_daemon_finds_every_job_again_and_submits_nothing_twice(
    sge_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    daemon = sge_daemon
    root = faults_sweep(tmp_path, 4)
    daemon.ctl("submit", str(root / "sweep.toml"))
    wait_for(lambda: running(daemon, 2), 120, "two trials to run")
    wait_for(lambda: all(t["state"] in ("queued", "running") for t in daemon.trials("faults")),
             60, "every trial to be submitted")  # fmt: skip
    before = {i: job_ids(daemon, "faults", i) for i in range(4)}
    assert len(shims.calls("qsub")) == 1  # 4 trials, one array

    pid = daemon.pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: process_gone(pid), 10, "the kill")
    daemon.start()
    (root / "hold").unlink()  # the jobs may finish now, while or after the daemon looks

    trials = daemon.wait_sweep_done("faults", timeout=180)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 4
    assert {i: job_ids(daemon, "faults", i) for i in range(4)} == before  # found again
    assert len(shims.calls("qsub")) == 1  # nothing submitted twice
    assert [runs(daemon, i) for i in range(4)] == [["1"]] * 4


def test_the_s_rt_signal_reaches_the_trial_which_resumes(
    sge_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    """resume.signal USR1 with a time limit: qsub gets ``s_rt`` = time - lead, SGE sends
    SIGUSR1 then, the runner (the job's process) turns it into the trial's checkpoint
    request, and the trial resumes in a second attempt."""
    daemon = sge_daemon
    (tmp_path / "trial.py").write_text(SIGNALLED)
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(
        f'name = "srt"\ncommand = ["{sys.executable}", "trial.py"]\ndriver = "sge"\n'
        '[params]\nx = [1]\n[resources]\ncpus = 1\ntime = "00:00:30"\n'
        '[resume]\nsignal = "USR1"\nsignal_lead = 24\nexit_code = 3\n'
        "[drivers.sge]\npoll_interval = 1\n"
    )
    daemon.ctl("submit", str(sweep))
    (trial,) = daemon.wait_sweep_done("srt", timeout=180)
    assert (trial["state"], trial["attempts"], trial["resumes"]) == ("completed", 2, 1), trial
    first = daemon.ctl_json("show", "srt/0")["attempt_list"][0]
    assert "-l s_rt=0:00:06" in shims.calls("qsub")[0]
    assert "-l h_rt=0:01:30" in shims.calls("qsub")[0]  # the runner's limit comes first
    runner_log = (Path(first["dir"]) / "runner.log").read_text()
    assert re.search(r"received (SIG)?USR1", runner_log), runner_log
    assert (Path(first["dir"]) / "CHECKPOINT_REQUESTED").exists()


@pytest.mark.skipif(
    not os.environ.get("CLUSTERD_STRESS"),
    reason="~65 s (the daemon's 60 s status grace for a job gone without status.json); "
    "CLUSTERD_STRESS=1 runs it; test_sge_argv.py replays the same Eqw path",
)
def test_a_job_sge_cannot_start_fails_its_attempt_with_sges_reason(
    sge_daemon: Daemon, shims: Shims, tmp_path: Path
) -> None:
    """``extra`` puts the job's output where nobody can write: SGE puts the job in error
    state (Eqw), where it would wait for an admin forever; the driver deletes it and the
    attempt fails with SGE's own words."""
    daemon = sge_daemon
    extra = 'extra = ["-o", "/nonexistent/clusterd-test/out"]\n'
    root = faults_sweep(tmp_path, 1, extra)
    (root / "hold").unlink()
    daemon.ctl("submit", str(root / "sweep.toml"))
    (trial,) = daemon.wait_sweep_done("faults", timeout=120)
    (attempt,) = daemon.ctl_json("show", "faults/0")["attempt_list"]
    assert trial["state"] == "failed", trial
    assert "can't open output file" in (attempt["reason"] or ""), attempt
    assert "Eqw" in (attempt["reason"] or ""), attempt
    number = (attempt["job_id"] or "").split(".")[0]
    assert any(call.split() == [number] for call in shims.calls("qdel")), shims.calls("qdel")
    assert runs(daemon, 0) == []


def test_describe_cluster_shows_the_queue_and_its_slots(sge: None) -> None:
    from clusterd.drivers.sge import SgeDriver

    info = SgeDriver().describe_cluster()
    (queue,) = [p for p in info.partitions if p["name"] == "all.q"]
    assert queue["total"] == (os.cpu_count() or 1) + 2  # .ci/sge-setup.sh: nproc + 2 slots
    assert SgeDriver().scheduler_max_tasks() == 75000  # max_aj_tasks


def test_find_looks_in_qacct_for_arrays_that_left_the_queue(sge: None, tmp_path: Path) -> None:
    """A crash between qsub and the record of the id, and the jobs ended before the
    daemon came back: ``find`` has only the batch name, and qacct knows it."""
    from clusterd.drivers.base import JobRef, JobRequest
    from clusterd.drivers.jobfile import JOB_FILE, read_job_file, write_json_atomic
    from clusterd.drivers.sge import SgeDriver
    from clusterd.spec.model import Resources

    driver = SgeDriver()
    jobs = []
    for i in range(2):
        adir = tmp_path / f"{i}" / "attempt-1"
        adir.mkdir(parents=True)
        jobs.append(
            JobRequest(f"cd-find-{i}-1-abcdef", "find", i, 1, str(adir), ("true",), Resources())
        )
    ids = driver.submit(jobs)
    refs = [JobRef(job.token, None, job.attempt_dir) for job in jobs]
    for ref in refs:  # as if the daemon died before qsub answered: no job id recorded
        record = read_job_file(ref.attempt_dir, ref.token) or {}
        write_json_atomic(Path(ref.attempt_dir) / JOB_FILE, {**record, "job_id": None})
    number = ids[jobs[0].token].split(".")[0]
    wait_for(lambda: number not in driver.queue_arrays().values(), 60, "the array to end")
    found = wait_for(lambda: driver.find(refs) or None, 30, "qacct to record the array")
    assert found == ids
