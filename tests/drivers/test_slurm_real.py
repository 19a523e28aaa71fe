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
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from clusterd.drivers.base import JobRef, JobRequest, JobStatus
from clusterd.drivers.slurm import SlurmDriver, run_command
from clusterd.spec.model import Resources

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / ".ci" / "slurm-setup.sh"
T = TypeVar("T")


def poll_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Call ``check`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


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

    def poll_until(
        self,
        refs: Sequence[JobRef],
        done: Callable[[dict[str, JobStatus]], bool],
        what: str,
        timeout: float = 60,
    ) -> dict[str, JobStatus]:
        def check() -> dict[str, JobStatus] | None:
            statuses = self.driver.poll(refs)
            return statuses if done(statuses) else None

        return poll_until(check, timeout, what)

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
    statuses = harness.poll_until(refs, all_gone, "5 array tasks to finish")
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
    harness.poll_until([ref], lambda s: s[ref.token].phase == "running", "the job to start")
    harness.driver.cancel([ref])
    statuses = harness.poll_until([ref], all_gone, "the cancelled job to end")
    status = statuses[ref.token]
    assert status.scheduler_state == "CANCELLED"
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
    harness.poll_until([first], lambda s: s[first.token].phase == "running", "the big job to run")
    (second,) = harness.submit([harness.job(1, SLEEP)])
    statuses = harness.poll_until(
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
    statuses = harness.poll_until(refs, all_gone, "3 arrays to finish")
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
    signal comes 10 to ~40 s after the start.
    """
    trial = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(3))\n"
        "print('started', flush=True)\n"
        "time.sleep(55)\n"
    )
    job = runner_job(harness, 0, resources=Resources(cpus=1, memory_mb=200, time_seconds=60))
    launch_json(job, [sys.executable, "-c", trial], signal_lead=50)
    (ref,) = harness.submit([job])
    sbatch = next(call for call in harness.runner.calls if call[0] == "sbatch")
    assert "--time=00:01:00" in sbatch and "--signal=B:USR1@50" in sbatch
    status = poll_until(lambda: read_status(job), 75, "the runner's status.json")
    assert status["exit_code"] == 3, status
    assert (Path(job.attempt_dir) / "stdout").read_text() == "started\n"
    statuses = harness.poll_until([ref], all_gone, "the job to leave")
    # the runner exits with the command's status: Slurm calls that FAILED
    assert statuses[ref.token].scheduler_state == "FAILED"
    assert (statuses[ref.token].reason or "").startswith("FAILED")
