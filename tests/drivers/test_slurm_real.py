"""The Slurm driver against a real slurmctld + slurmd on localhost.

The session fixture runs ``.ci/slurm-setup.sh`` (idempotent: ~0.1 s when the
cluster is up; it installs Debian's slurm-wlm and starts the daemons otherwise).
A test is skipped only when the packages cannot be installed (the script exits
3: not root, no apt-get, apt-get failed), and says why. Jobs run as root here.

Every wait is on a condition with a deadline (``poll_until``), never a bare
sleep; every test cancels what it submitted, so the one-node cluster is free for
the next.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from clusterd.drivers.base import JobRef, JobRequest, JobStatus
from clusterd.drivers.batch.commands import run_command
from clusterd.drivers.slurm import SlurmDriver
from clusterd.spec.model import Resources
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / ".ci" / "slurm-setup.sh"


class Counting:
    """The driver's command runner, wrapped to count the Slurm commands it runs."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(
        self, argv: Sequence[str], timeout: float, stdin: str | None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return run_command(argv, timeout, stdin)

    def count(self, command: str) -> int:
        return sum(1 for call in self.calls if call[0] == command)


class Harness:
    """Makes attempts under ``tmp_path``, submits them, and cleans up what it submitted."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "runs"
        self.runner = Counting()
        self.driver = SlurmDriver(run=self.runner)
        self.refs: dict[str, JobRef] = {}

    def job(self, index: int, argv: Sequence[str], **changes: Any) -> JobRequest:
        adir = self.root / str(index) / "attempt-1"
        adir.mkdir(parents=True, exist_ok=True)
        fields: dict[str, Any] = {
            "token": f"cd-real-{index}-1-{time.monotonic_ns() % 10**6:06d}",
            "sweep": "real",
            "trial_index": index,
            "attempt": 1,
            "attempt_dir": str(adir),
            "argv": tuple(argv),
            "resources": Resources(cpus=1, memory_mb=100),
        }
        fields.update(changes)
        return JobRequest(**fields)

    def submit(self, jobs: Sequence[JobRequest], driver: SlurmDriver | None = None) -> list[JobRef]:
        ids = (driver or self.driver).submit(jobs)
        assert set(ids) == {job.token for job in jobs}
        refs = [JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs]
        self.refs.update({ref.token: ref for ref in refs})
        return refs

    def wait_for(
        self,
        refs: Sequence[JobRef],
        done: Callable[[dict[str, JobStatus]], bool],
        what: str,
        timeout: float = 60,
    ) -> dict[str, JobStatus]:
        def check() -> dict[str, JobStatus] | None:
            statuses = self.driver.poll(refs)
            return statuses if done(statuses) else None

        return wait_for(check, timeout, what)

    def cleanup(self) -> None:
        if self.refs:
            self.driver.cancel(list(self.refs.values()))


@pytest.fixture
def harness(slurm: None, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path)
    yield h
    h.cleanup()


def all_gone(statuses: dict[str, JobStatus]) -> bool:
    return all(status.phase == "gone" for status in statuses.values())


def tasks_ended(statuses: dict[str, JobStatus]) -> bool:
    """Every job has ended as Slurm sees it (not only as its packed slots' runners do)."""
    return all_gone(statuses) and all(s.scheduler_state for s in statuses.values())


def writer(path: Path, text: str) -> list[str]:
    """argv of a small Python command writing ``text`` and the job's token to ``path``."""
    code = (
        "import os, sys; open(sys.argv[1], 'w').write(sys.argv[2] + '|' + "
        "os.environ['CLUSTERD_JOB_TOKEN'])"
    )
    return [sys.executable, "-c", code, str(path), text]


SLEEP = [sys.executable, "-c", "import time; time.sleep(300)"]


# --------------------------------------------------------------------------- tests


def test_five_jobs_go_out_as_one_array_and_run(harness: Harness) -> None:
    jobs = []
    for i in range(5):
        out = harness.root / str(i) / "attempt-1" / "out.txt"
        jobs.append(harness.job(i, writer(out, f"trial {i}: it's $HOME `id`")))
    refs = harness.submit(jobs)
    assert harness.runner.count("sbatch") == 1
    assert len({ref.job_id.split("_")[0] for ref in refs if ref.job_id}) == 1

    before = harness.runner.count("squeue")
    statuses = harness.wait_for(refs, all_gone, "5 array tasks to finish")
    polls = harness.runner.count("squeue") - before
    assert polls >= 1 and harness.runner.count("sbatch") == 1
    for i, (job, ref) in enumerate(zip(jobs, refs, strict=True)):
        out = Path(job.attempt_dir) / "out.txt"
        assert out.read_text() == f"trial {i}: it's $HOME `id`|{job.token}"
        assert statuses[ref.token].scheduler_state == "COMPLETED"
        assert statuses[ref.token].host
        assert (Path(job.attempt_dir) / "slurm_job_id").read_text().strip() == ref.job_id


def test_cancel_ends_a_sleeping_job_as_cancelled(harness: Harness) -> None:
    (ref,) = harness.submit([harness.job(0, SLEEP)])
    harness.wait_for([ref], lambda s: s[ref.token].phase == "running", "the job to start")
    harness.driver.cancel([ref])

    def cancelled(statuses: dict[str, JobStatus]) -> bool:
        # a task cancelled in its first second can show COMPLETED for a poll before
        # slurmctld's record says CANCELLED (seen under load in CI): wait for the record
        status = statuses[ref.token]
        return status.phase == "gone" and (status.scheduler_state or "").startswith("CANCELLED")

    statuses = harness.wait_for([ref], cancelled, "the cancelled job to end CANCELLED")
    status = statuses[ref.token]
    assert status.reason is not None and status.reason.startswith("CANCELLED")


def test_find_recovers_jobs_from_a_new_driver(harness: Harness) -> None:
    jobs = [harness.job(i, SLEEP) for i in range(2)]
    refs = harness.submit(jobs)
    lost = [JobRef(ref.token, None, ref.attempt_dir) for ref in refs]
    fresh = SlurmDriver(run=Counting())
    assert fresh.find(lost) == {ref.token: ref.job_id for ref in refs}  # from job.json

    # a crash between sbatch and recording its job id: job.json says "submitting"
    for job in jobs:
        path = Path(job.attempt_dir) / "job.json"
        record = json.loads(path.read_text())
        path.write_text(json.dumps({**record, "state": "submitting", "job_id": None}))
    runner = Counting()
    assert SlurmDriver(run=runner).find(lost) == {ref.token: ref.job_id for ref in refs}
    assert runner.count("squeue") == 1  # found by array name and task index

    # offered again after such a crash, the jobs are adopted, not submitted twice
    again = Counting()
    assert SlurmDriver(run=again).submit(jobs) == {ref.token: ref.job_id for ref in refs}
    assert again.count("sbatch") == 0


def test_pending_reason_shows_while_the_node_is_full(harness: Harness) -> None:
    (node,) = harness.driver.describe_cluster().nodes
    big = harness.job(0, SLEEP, resources=Resources(cpus=node["cpus"], memory_mb=100))
    (first,) = harness.submit([big])
    harness.wait_for([first], lambda s: s[first.token].phase == "running", "the big job to run")
    (second,) = harness.submit([harness.job(1, SLEEP)])
    statuses = harness.wait_for(
        [first, second],
        lambda s: s[second.token].phase == "queued" and s[second.token].reason is not None,
        "a pending reason",
    )
    assert statuses[second.token].reason in ("Resources", "Priority")
    assert statuses[first.token].phase == "running"


def test_max_array_size_chunks_the_submission(harness: Harness, tmp_path: Path) -> None:
    driver = SlurmDriver({"max_array_size": 2}, run=harness.runner)
    jobs = [harness.job(i, ["/bin/true"]) for i in range(5)]
    refs = harness.submit(jobs, driver)
    sbatches = [call for call in harness.runner.calls if call[0] == "sbatch"]
    arrays = [next(arg for arg in call if arg.startswith("--array=")) for call in sbatches]
    assert arrays == ["--array=0-1", "--array=0-1", "--array=0-0"]
    assert len({ref.job_id.split("_")[0] for ref in refs if ref.job_id}) == 3
    statuses = harness.wait_for(refs, all_gone, "3 arrays to finish")
    assert {s.scheduler_state for s in statuses.values()} == {"COMPLETED"}


def test_describe_cluster_sees_the_node_and_the_queue(harness: Harness) -> None:
    (ref,) = harness.submit([harness.job(0, SLEEP)])
    info = harness.driver.describe_cluster()
    (partition,) = [p for p in info.partitions if p["name"] == "debug"]
    assert partition["default"] and partition["nodes"] == 1 and partition["cpus"] >= 1
    assert ref.job_id is not None
    array_id = ref.job_id.split("_")[0]
    assert any(entry["job_id"].startswith(array_id) for entry in info.queue)


def launch_json(job: JobRequest, command: list[str], signal_lead: int = 120) -> None:
    """The launch.json the daemon would write for ``job`` (docs/runtime.md)."""
    adir = Path(job.attempt_dir)
    launch = {
        "version": 1,
        "sweep": job.sweep,
        "trial_index": job.trial_index,
        "trial_id": f"{job.sweep}/{job.trial_index}",
        "attempt": job.attempt,
        "trial_dir": str(adir.parent),
        "attempt_dir": str(adir),
        "command": command,
        "params": {},
        "cwd": str(adir),
        "resume": {"exit_code": 3, "signal": "USR1", "signal_lead": signal_lead},
        "time_limit": None,  # Slurm enforces it; only Slurm's signal may arrive
        "kill_grace": 5,
    }
    (adir / "launch.json").write_text(json.dumps(launch))


def runner_job(harness: Harness, index: int, **changes: Any) -> JobRequest:
    """A job whose argv is the clusterd runner of this checkout, as the daemon builds it."""
    adir = harness.root / str(index) / "attempt-1"
    argv = [sys.executable, "-m", "clusterd.runner", str(adir / "launch.json")]
    return harness.job(index, argv, env={"PYTHONPATH": str(REPO)}, **changes)


def read_status(job: JobRequest) -> dict[str, Any] | None:
    path = Path(job.attempt_dir) / "status.json"
    return json.loads(path.read_text()) if path.exists() else None


def test_the_runner_gets_the_resume_signal_from_slurm(harness: Harness) -> None:
    """--time + signal_lead become --signal=B:USR1@lead; the batch shell *is* the runner
    (exec), so it receives USR1, forwards it, and the trial exits for resume.

    Slurm checks --signal about every 30 s, so with a 60 s limit and a 50 s lead the
    signal comes 10 to ~40 s after the start. The trial announces its handler (as
    ``clusterd.trial`` does on import): the runner forwards the resume signal only then.
    """
    trial = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(3))\n"
        "announce = os.path.join(os.environ['CLUSTERD_ATTEMPT_DIR'], 'RESUME_HANDLER')\n"
        "open(announce, 'a').write(f'{os.getpid()}\\n')\n"
        "print('started', flush=True)\n"
        "time.sleep(55)\n"
    )
    resources = Resources(cpus=1, memory_mb=200, time_seconds=60)
    job = runner_job(harness, 0, resources=resources, resume_signal="USR1", resume_lead=50)
    launch_json(job, [sys.executable, "-c", trial], signal_lead=50)
    (ref,) = harness.submit([job])
    sbatch = next(call for call in harness.runner.calls if call[0] == "sbatch")
    assert "--time=00:01:00" in sbatch and "--signal=B:USR1@50" in sbatch
    status = wait_for(lambda: read_status(job), 75, "the runner's status.json")
    assert status["exit_code"] == 3, status
    assert (Path(job.attempt_dir) / "stdout").read_text() == "started\n"
    statuses = harness.wait_for([ref], all_gone, "the job to leave")
    # the runner exits with the command's status: Slurm calls that FAILED
    assert statuses[ref.token].scheduler_state == "FAILED"
    assert (statuses[ref.token].reason or "").startswith("FAILED")


# --------------------------------------------------------------------------- pack


CUDA_AND_EXIT = (
    "import os, sys; print(os.environ.get('CUDA_VISIBLE_DEVICES')); sys.exit(int(sys.argv[1]))"
)


def packed_runner_jobs(harness: Harness, codes: Sequence[int], **res: Any) -> list[JobRequest]:
    """Runner jobs packed two to a task; trial ``i`` prints its CUDA share and exits codes[i]."""
    resources = Resources(cpus=1, memory_mb=100, pack=2, **res)
    jobs = []
    for index, code in enumerate(codes):
        job = runner_job(harness, index, resources=resources)
        launch_json(job, [sys.executable, "-c", CUDA_AND_EXIT, str(code)])
        jobs.append(job)
    return jobs


def test_four_packed_trials_run_as_two_tasks_of_one_array(harness: Harness) -> None:
    jobs = packed_runner_jobs(harness, [0, 5, 0, 3])
    refs = harness.submit(jobs)
    (sbatch,) = [call for call in harness.runner.calls if call[0] == "sbatch"]
    assert "--array=0-1" in sbatch and "--cpus-per-task=2" in sbatch and "--mem=200M" in sbatch
    array_id = (refs[0].job_id or "").split("_")[0]
    assert [ref.job_id for ref in refs] == [f"{array_id}_{t}/{s}" for t in (0, 1) for s in (0, 1)]
    harness.wait_for(refs, all_gone, "2 packed tasks to finish")
    for job, ref, code in zip(jobs, refs, [0, 5, 0, 3], strict=True):
        status = read_status(job)
        assert status is not None and status["exit_code"] == code, (job.token, status)
        adir = Path(job.attempt_dir)
        assert (adir / "slurm_job_id").read_text().strip() == ref.job_id
        assert (adir / "stdout").read_text() == "None\n"  # no GPUs: no CUDA_VISIBLE_DEVICES
        assert json.loads((adir / "job.json").read_text())["slot"] == int(ref.job_id[-1])
    # A slot is gone as soon as its runner wrote status.json, while its task may still be
    # finishing (no scheduler state yet). The task's own final state, once it has one, is
    # its first non-zero runner status.
    ended = harness.wait_for(refs, tasks_ended, "both array tasks to end")
    assert [ended[ref.token].scheduler_state for ref in refs] == ["FAILED"] * 4


def test_cancelling_one_packed_trial_spares_the_other(harness: Harness) -> None:
    jobs = [
        runner_job(harness, i, resources=Resources(cpus=1, memory_mb=100, pack=2)) for i in (0, 1)
    ]
    for job in jobs:
        launch_json(job, SLEEP)
    first, second = harness.submit(jobs)
    harness.wait_for([first, second], lambda s: s[second.token].phase == "running", "the start")
    wait_for(
        lambda: all((Path(j.attempt_dir) / "runner.json").exists() for j in jobs), 20, "runners"
    )
    harness.driver.cancel([first])
    assert harness.runner.count("scancel") == 0
    statuses = harness.wait_for(
        [first, second], lambda s: s[first.token].phase == "gone", "the cancelled slot to end", 20
    )
    assert statuses[second.token].phase == "running"
    status = read_status(jobs[0])
    assert status is not None and status["signal"] == "TERM", status
    assert read_status(jobs[1]) is None

    harness.driver.cancel([second])  # nothing is left to run: the job is scancelled
    assert harness.runner.count("scancel") == 1
    harness.wait_for([second], all_gone, "the packed job to end", 30)
    status = read_status(jobs[1])  # gone once its runner is done, maybe before the job
    assert status is not None and status["signal"] == "TERM", status
    final = harness.wait_for([first, second], all_gone, "both slots to end")
    assert final[first.token].job_id == first.job_id


# --------------------------------------------------------------------------- limits


def sacctmgr(*args: str) -> None:
    done = subprocess.run(["sacctmgr", "-i", *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"sacctmgr {' '.join(args)}: {done.stdout}{done.stderr}"


@pytest.fixture
def limited_account(slurm: None) -> Iterator[str]:
    """An account with MaxSubmitJobs=4 for root and a QOS ``<account>q`` with
    MaxSubmitJobsPerUser=2, added for the test and removed afterwards (with its jobs)."""
    account = f"cdt{os.getpid()}"
    qos = f"{account}q"
    sacctmgr("add", "qos", qos, "MaxSubmitJobsPerUser=2")
    try:
        sacctmgr("add", "account", account, "Description=clusterd-test", "Organization=clusterd")
        sacctmgr(
            "add", "user", "root", f"account={account}", "MaxSubmitJobs=4",
            f"QOS=normal,{qos}", "DefaultQOS=normal",
        )  # fmt: skip

        def known() -> bool:
            argv = ["scontrol", "show", "assoc_mgr", f"accounts={account}", "flags=assoc"]
            return "MaxSubmitJobs=4" in run_command(argv, 10, None).stdout

        wait_for(known, 20, "slurmctld to learn the new association")
        yield account
    finally:
        subprocess.run(["scancel", f"--account={account}"], capture_output=True, timeout=30)
        argv = ["squeue", "--noheader", f"--account={account}"]
        wait_for(lambda: not run_command(argv, 10, None).stdout.strip(), 30, "jobs to leave")
        sacctmgr("delete", "user", "root", "where", f"account={account}")
        sacctmgr("delete", "account", account)
        sacctmgr("delete", "qos", qos)


def test_submission_stays_under_the_users_limits(harness: Harness, limited_account: str) -> None:
    """MaxSubmitJobs=4 for the account, MaxSubmitJobsPerUser=2 for the QOS: what fits goes
    out (no sbatch is refused), the rest is left out of the answer and fits later."""
    account, qos = limited_account, f"{limited_account}q"
    driver = harness.driver

    def submit(jobs: list[JobRequest]) -> list[JobRef]:
        ids = driver.submit(jobs)
        refs = [
            JobRef(job.token, ids[job.token], job.attempt_dir) for job in jobs if job.token in ids
        ]
        harness.refs.update({ref.token: ref for ref in refs})
        return refs

    plain = submit([harness.job(i, SLEEP, options={"account": account}) for i in range(3)])
    assert len(plain) == 3
    queued = [
        harness.job(10 + i, SLEEP, options={"account": account, "qos": qos}) for i in range(3)
    ]
    (one,) = submit(queued)  # the account has room for one more
    assert one.token == queued[0].token
    assert harness.runner.count("sbatch") == 2
    assert submit(queued[1:]) == []  # full: no sbatch at all
    assert harness.runner.count("sbatch") == 2

    # Slurm itself would refuse one more: the limit is real
    over = ["sbatch", f"--account={account}", "--wrap=true", "--output=/dev/null"]
    refused = run_command(over, 30, None)
    assert refused.returncode != 0 and "AssocMaxSubmitJobLimit" in refused.stderr

    driver.cancel(plain[:1])
    harness.wait_for(plain[:1], all_gone, "a cancelled job to leave")
    (two,) = submit(queued[1:])  # room for one again: the QOS has 1 of 2, the account 3 of 4
    assert two.token == queued[1].token
    assert harness.runner.count("sbatch") == 3
    assert submit(queued[2:]) == []  # the QOS is full now (2 of 2)
